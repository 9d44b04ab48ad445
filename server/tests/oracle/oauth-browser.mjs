// The OAuth sign-in page in headless Chromium (Debian's, driven by playwright-core), as its
// owner sees it: on a phone in light mode a wrong password first, then on a desktop in dark
// mode the right one and Allow, which sends the browser back to the app with a code.
//
// The page lives at the PDS's public origin (http://localhost); the browser's requests to it are
// carried to the test server's socket (`base`) by request interception, so cookies, Origin and
// the CSP apply to the real origin. The app's redirect (http://127.0.0.1/callback) is observed.
//
// Input (a JSON file, argv[2]): {"url", "base", "origin", "password", "outDir"}.
// Output (stdout, JSON): {"views": [{label, status, scrollWidth, width, text, screenshot,
// afterWrong?}], "callback": "<the app's redirect URL>"}.
import { readFileSync, mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { chromium } from 'playwright-core'

const input = JSON.parse(readFileSync(process.argv[2], 'utf8'))
const executablePath = process.env.PDS_CHROMIUM || '/usr/bin/chromium'
const browser = await chromium.launch({
  executablePath,
  args: [
    '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
  ],
})

const out = { views: [], callback: null }
try {
  mkdirSync(input.outDir, { recursive: true })
  const views = [
    ['phone-light', 375, 812, 'light', 'wrong-password-1'],
    ['desktop-dark', 1280, 900, 'dark', input.password],
  ]
  for (const [label, width, height, colorScheme, password] of views) {
    const context = await browser.newContext({ viewport: { width, height }, colorScheme })
    await context.route(`${input.origin}/**`, async (route) => {
      const url = input.base + route.request().url().slice(input.origin.length)
      // The browser's own headers (its cookies for the public origin, Origin, Sec-Fetch-*),
      // not those of the socket's address.
      const headers = await route.request().allHeaders()
      const response = await route.fetch({ url, headers, maxRedirects: 0 })
      await route.fulfill({ response })
    })
    // The browser follows the 303 itself (routes do not see redirects): the app's callback is
    // seen as the request it makes; nothing listens there.
    context.on('request', (request) => {
      if (request.url().startsWith('http://127.0.0.1/callback')) out.callback = request.url()
    })
    const page = await context.newPage()
    const response = await page.goto(input.url, { waitUntil: 'load' })
    const view = { label, width, status: response.status() }
    view.scrollWidth = await page.evaluate(() => Math.max(
      document.documentElement.scrollWidth,
      ...Array.from(document.querySelectorAll('body *'), (e) => Math.ceil(e.getBoundingClientRect().right)),
    ))
    view.text = await page.evaluate(() => document.body.innerText)
    view.background = await page.evaluate(() => getComputedStyle(document.body).backgroundColor)
    view.screenshot = join(input.outDir, `oauth-signin-${label}.png`)
    await page.screenshot({ path: view.screenshot, fullPage: true })
    await page.fill('input[name=password]', password)
    await Promise.all([
      page.waitForLoadState('load'),
      page.click('button[value=allow]'),
    ])
    await page.waitForTimeout(300)
    view.finalUrl = page.url()
    view.finalText = await page.evaluate(() => document.body.innerText)
    if (password !== input.password) {
      view.afterWrong = await page.evaluate(() => document.body.innerText)
      view.afterWrongShot = join(input.outDir, `oauth-signin-${label}-wrong.png`)
      await page.screenshot({ path: view.afterWrongShot, fullPage: true })
    }
    out.views.push(view)
    await context.close()
  }
} finally {
  await browser.close()
}
process.stdout.write(JSON.stringify(out))
