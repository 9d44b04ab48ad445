// Passkeys in headless Chromium with its virtual authenticator (DevTools protocol
// WebAuthn.addVirtualAuthenticator: CTAP2, user verification, presence simulated): the owner
// opens the registration link and creates a passkey, then approves a pushed authorization
// request with it on the sign-in page, through the pages' own script. The page origin is the
// PDS's public one (http://localhost, a secure context and a valid RP ID); requests to it are
// carried to the test server's socket.
//
// Input (a JSON file, argv[2]): {"base", "origin", "registerUrl", "authorizeUrl", "outDir"}.
// Output: {"registered": text, "callback": the app's redirect URL, "credentials": count,
// "problems": script errors seen}.
import { readFileSync, mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { chromium } from 'playwright-core'

const input = JSON.parse(readFileSync(process.argv[2], 'utf8'))
const browser = await chromium.launch({
  executablePath: process.env.PDS_CHROMIUM || '/usr/bin/chromium',
  args: [
    '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
  ],
})
const out = { callback: null }
try {
  mkdirSync(input.outDir, { recursive: true })
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } })
  await context.route(`${input.origin}/**`, async (route) => {
    const url = input.base + route.request().url().slice(input.origin.length)
    const headers = await route.request().allHeaders()
    const response = await route.fetch({ url, headers, maxRedirects: 0 })
    await route.fulfill({ response })
  })
  context.on('request', (request) => {
    if (request.url().startsWith('http://127.0.0.1/callback')) out.callback = request.url()
  })
  const page = await context.newPage()
  const problems = []
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`))
  page.on('console', (m) => { if (m.type() === 'error') problems.push(`console: ${m.text()}`) })
  out.problems = problems
  const cdp = await context.newCDPSession(page)
  await cdp.send('WebAuthn.enable')
  const { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
    options: {
      protocol: 'ctap2', transport: 'internal', hasResidentKey: true,
      hasUserVerification: true, isUserVerified: true, automaticPresenceSimulation: true,
    },
  })
  await page.goto(input.registerUrl, { waitUntil: 'load' })
  await page.screenshot({ path: join(input.outDir, 'passkey-register.png'), fullPage: true })
  await Promise.all([page.waitForURL(/\/passkey\/register$/), page.click('#passkey')])
  out.registered = await page.evaluate(() => document.body.innerText)
  await page.goto(input.authorizeUrl, { waitUntil: 'load' })
  await page.screenshot({ path: join(input.outDir, 'passkey-sign-in.png'), fullPage: true })
  await page.click('#passkey')
  for (let i = 0; i < 50 && !out.callback; i++) await page.waitForTimeout(100)
  out.credentials = (await cdp.send('WebAuthn.getCredentials', { authenticatorId })).credentials.length
} finally {
  await browser.close()
}
process.stdout.write(JSON.stringify(out))
