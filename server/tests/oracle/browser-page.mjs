// Loads a page in headless Chromium (Debian's, driven by playwright-core) with JavaScript off, at
// a phone's and a desktop's width, and reports what a reader gets: the text, the HTML, the
// widest layout box against the viewport, and full-page screenshots.
// Input (a JSON file named by the first argument): {"url", "outDir", "name"}.
// Output (stdout, JSON): {"views": [{"label", "width", "scrollWidth", "status", "contentType",
// "text", "html", "screenshot"}]}.
import { readFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const input = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const executablePath = process.env.PDS_CHROMIUM || '/usr/bin/chromium';
// Without the background-networking flags Chromium keeps trying hosts this closed network
// refuses; --no-sandbox because tests may run as root.
const browser = await chromium.launch({
  executablePath,
  args: [
    '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
  ],
});
const views = [];
try {
  mkdirSync(input.outDir, { recursive: true });
  for (const [label, width, height] of [['phone', 375, 812], ['desktop', 1280, 900]]) {
    const context = await browser.newContext({
      javaScriptEnabled: false,
      viewport: { width, height },
    });
    const page = await context.newPage();
    const response = await page.goto(input.url, { waitUntil: 'load' });
    // Scripts are off for the page; these reads run in the driver's own world.
    const scrollWidth = await page.evaluate(() => Math.max(
      document.documentElement.scrollWidth,
      document.body.scrollWidth,
      ...Array.from(document.querySelectorAll('body *'), (e) => Math.ceil(e.getBoundingClientRect().right)),
    ));
    const text = await page.evaluate(() => document.body.innerText);
    const html = await page.content();
    const screenshot = join(input.outDir, `${input.name}-${label}.png`);
    await page.screenshot({ path: screenshot, fullPage: true });
    views.push({
      label, width, scrollWidth, text, html, screenshot,
      status: response.status(),
      contentType: response.headers()['content-type'] ?? null,
    });
    await context.close();
  }
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify({ views }));
