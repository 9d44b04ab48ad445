// The whole OAuth flow with the npm client real apps use (@atproto/oauth-client-node), against
// a running PDS: PAR -> the sign-in page, submitted as a plain form -> token -> DPoP-bound XRPC
// calls (getSession, createRecord, getRecord, uploadBlob, a proxied AppView read) -> refresh ->
// a replayed refresh token (revokes the session) -> a second sign-in -> sign-out -> 401.
//
// Input (a JSON file, argv[2]): { base, origin, handle, did, password }. `origin` is the PDS's
// public URL (what DPoP proofs name); requests to it are sent to `base` (the test server's
// socket), and any other destination is refused: nothing leaves the machine.
// Prints a JSON report of what it saw; the Rust test asserts on it.

import { readFileSync } from 'node:fs'
import {
  NodeOAuthClient,
  buildAtprotoLoopbackClientMetadata,
} from '@atproto/oauth-client-node'
import { Agent } from '@atproto/api'

const input = JSON.parse(readFileSync(process.argv[2], 'utf8'))
const { base, origin, handle, did, password } = input

const exchanges = []
const toSocket = (url) =>
  url.startsWith(origin) ? base + url.slice(origin.length) : url

async function localFetch(resource, init) {
  const req = new Request(resource, init)
  const url = toSocket(req.url)
  if (!url.startsWith(base)) throw new Error(`refused to fetch ${req.url}`)
  const body =
    req.method === 'GET' || req.method === 'HEAD'
      ? undefined
      : await req.arrayBuffer()
  const res = await fetch(url, {
    method: req.method,
    headers: req.headers,
    body,
    redirect: 'manual',
  })
  exchanges.push({
    method: req.method,
    path: new URL(url).pathname,
    status: res.status,
    dpop: req.headers.has('dpop'),
    nonce: res.headers.has('dpop-nonce'),
    wwwAuthenticate: res.headers.get('www-authenticate'),
  })
  return res
}

function memoryStore() {
  const m = new Map()
  return {
    get: async (k) => m.get(k),
    set: async (k, v) => void m.set(k, v),
    del: async (k) => void m.delete(k),
  }
}

const client = new NodeOAuthClient({
  clientMetadata: buildAtprotoLoopbackClientMetadata({
    scope: 'atproto transition:generic',
    redirect_uris: ['http://127.0.0.1/callback'],
  }),
  allowHttp: true,
  fetch: localFetch,
  handleResolver: { resolve: async () => did },
  stateStore: memoryStore(),
  sessionStore: memoryStore(),
  requestLock: (_name, fn) => fn(),
})

const unescapeHtml = (s) =>
  s
    .replaceAll('&quot;', '"')
    .replaceAll('&#39;', "'")
    .replaceAll('&lt;', '<')
    .replaceAll('&gt;', '>')
    .replaceAll('&amp;', '&')

// What a browser does on the sign-in page: open it, fill the password, press Allow.
async function signIn(state) {
  const url = await client.authorize(handle, { state })
  // A link-preview bot first: the page must change nothing.
  for (let i = 0; i < 2; i++) {
    const bot = await fetch(toSocket(url.href), {
      headers: { 'user-agent': 'Slackbot-LinkExpanding 1.0' },
    })
    if (bot.status !== 200) throw new Error(`bot view: ${bot.status}`)
  }
  const page = await fetch(toSocket(url.href), {
    headers: {
      accept: 'text/html',
      'sec-fetch-mode': 'navigate',
      'sec-fetch-dest': 'document',
      'sec-fetch-site': 'cross-site',
    },
  })
  const html = await page.text()
  if (page.status !== 200) throw new Error(`page: ${page.status} ${html}`)
  const cookie = page.headers.get('set-cookie').split(';')[0]
  const field = (name) => {
    const m = html.match(new RegExp(`name="${name}" value="([^"]*)"`))
    if (!m) throw new Error(`no ${name} field`)
    return unescapeHtml(m[1])
  }
  const form = new URLSearchParams({
    request_uri: field('request_uri'),
    client_id: field('client_id'),
    csrf_token: field('csrf_token'),
    webauthn: '',
    password,
    action: 'allow',
  })
  const post = await fetch(base + '/oauth/authorize', {
    method: 'POST',
    body: form,
    headers: {
      cookie,
      origin,
      'sec-fetch-site': 'same-origin',
      'content-type': 'application/x-www-form-urlencoded',
    },
    redirect: 'manual',
  })
  const location = post.headers.get('location')
  if (post.status !== 303 || !location)
    throw new Error(`decision: ${post.status} ${await post.text()}`)
  const { session, state: returned } = await client.callback(
    new URL(location).searchParams,
  )
  return {
    session,
    returned,
    location,
    csp: page.headers.get('content-security-policy'),
  }
}

const report = {}
const first = await signIn('first-state')
const session = first.session
report.location = first.location
report.stateReturned = first.returned
report.csp = first.csp
report.sub = session.did
const info = await session.getTokenInfo(false)
report.scope = info.scope
report.aud = info.aud

const agent = new Agent(session)
const me = await agent.com.atproto.server.getSession()
report.getSession = { did: me.data.did, handle: me.data.handle, email: me.data.email ?? null }
const created = await agent.com.atproto.repo.createRecord({
  repo: did,
  collection: 'app.bsky.feed.post',
  record: {
    $type: 'app.bsky.feed.post',
    text: 'written with an OAuth token',
    createdAt: new Date().toISOString(),
  },
})
report.created = created.data.uri
const read = await agent.com.atproto.repo.getRecord({
  repo: did,
  collection: 'app.bsky.feed.post',
  rkey: created.data.uri.split('/').pop(),
})
report.readText = read.data.value.text
const png = Uint8Array.from(
  Buffer.from(
    'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==',
    'base64',
  ),
)
const blob = await agent.com.atproto.repo.uploadBlob(png, { encoding: 'image/png' })
report.blobSize = blob.data.blob.size
const profile = await agent.app.bsky.actor.getProfile({ actor: did })
report.proxiedHandle = profile.data.handle

// Refresh: new tokens; the old access token dies at once.
const before = await session.getTokenSet(false)
await session.getTokenInfo(true)
const after = await session.getTokenSet(false)
report.refreshed = before.access_token !== after.access_token &&
  before.refresh_token !== after.refresh_token
const oldAccess = await session.dpopFetch(`${origin}/xrpc/com.atproto.server.getSession`, {
  headers: { authorization: `DPoP ${before.access_token}` },
})
report.oldAccessStatus = oldAccess.status
report.oldAccessChallenge = oldAccess.headers.get('www-authenticate')
const current = await session.dpopFetch(`${origin}/xrpc/com.atproto.server.getSession`, {
  headers: { authorization: `DPoP ${after.access_token}` },
})
report.currentAccessStatus = current.status

// A replayed refresh token: refused, and the whole session is revoked.
try {
  await session.server.request('token', {
    grant_type: 'refresh_token',
    refresh_token: before.refresh_token,
  })
  report.replay = 'accepted'
} catch (e) {
  report.replay = e.error ?? String(e)
}
const afterReplay = await session.dpopFetch(`${origin}/xrpc/com.atproto.server.getSession`, {
  headers: { authorization: `DPoP ${after.access_token}` },
})
report.afterReplayStatus = afterReplay.status

// A second sign-in, then sign-out: the token is refused right after.
const second = await signIn('second-state')
const secondTokens = await second.session.getTokenSet(false)
const agent2 = new Agent(second.session)
report.secondSession = (await agent2.com.atproto.server.getSession()).data.did
await second.session.signOut()
const afterSignOut = await second.session.dpopFetch(
  `${origin}/xrpc/com.atproto.server.getSession`,
  { headers: { authorization: `DPoP ${secondTokens.access_token}` } },
)
report.afterSignOutStatus = afterSignOut.status

report.exchanges = exchanges
console.log(JSON.stringify(report))
