// A WebAuthn authenticator played in Node (no browser), for each algorithm a passkey may use
// (ES256, EdDSA, RS256): it registers a credential on the PDS's registration page, then approves
// pushed authorization requests with it on the sign-in page, as a browser's
// navigator.credentials would, byte for byte (attestation "none", user presence and
// verification, a signature counter).
//
// Input (a JSON file, argv[2]): { base, origin, alg, registerPath, authorizePaths: [3 paths] }.
// The three requests: the first is approved with counter 1; the second gets an assertion that
// repeats counter 1 (a cloned authenticator: refused) and then one with counter 2 (approved);
// the third gets an assertion signed by another key (refused).
// Output: { registered, credentialId, first, replayStatus, second, forgedStatus }.
import { readFileSync } from 'node:fs'
import { createHash, generateKeyPairSync, randomBytes, sign } from 'node:crypto'

const input = JSON.parse(readFileSync(process.argv[2], 'utf8'))
const { base, origin, alg } = input
const b64 = (b) => Buffer.from(b).toString('base64url')
const sha256 = (b) => createHash('sha256').update(b).digest()

// Just enough CBOR: unsigned and negative integers, byte and text strings, maps.
function cbor(v) {
  const head = (major, n) => {
    if (n < 24) return Buffer.from([(major << 5) | n])
    if (n < 256) return Buffer.from([(major << 5) | 24, n])
    if (n < 65536) return Buffer.from([(major << 5) | 25, n >> 8, n & 255])
    throw new Error('too long')
  }
  if (typeof v === 'number') return v >= 0 ? head(0, v) : head(1, -1 - v)
  if (typeof v === 'string') return Buffer.concat([head(3, Buffer.byteLength(v)), Buffer.from(v)])
  if (v instanceof Uint8Array) return Buffer.concat([head(2, v.length), Buffer.from(v)])
  if (v instanceof Map) {
    return Buffer.concat([head(5, v.size), ...[...v].flatMap(([k, x]) => [cbor(k), cbor(x)])])
  }
  throw new Error(`cannot encode ${v}`)
}

function makeKey() {
  if (alg === 'ES256') {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
    const j = publicKey.export({ format: 'jwk' })
    const cose = new Map([[1, 2], [3, -7], [-1, 1], [-2, Buffer.from(j.x, 'base64url')], [-3, Buffer.from(j.y, 'base64url')]])
    return { cose, sign: (data) => sign('sha256', data, { key: privateKey, dsaEncoding: 'der' }) }
  }
  if (alg === 'EdDSA') {
    const { privateKey, publicKey } = generateKeyPairSync('ed25519')
    const j = publicKey.export({ format: 'jwk' })
    const cose = new Map([[1, 1], [3, -8], [-1, 6], [-2, Buffer.from(j.x, 'base64url')]])
    return { cose, sign: (data) => sign(null, data, privateKey) }
  }
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 })
  const j = publicKey.export({ format: 'jwk' })
  const cose = new Map([[1, 3], [3, -257], [-1, Buffer.from(j.n, 'base64url')], [-2, Buffer.from(j.e, 'base64url')]])
  return { cose, sign: (data) => sign('sha256', data, privateKey) }
}

const field = (html, name) => html.match(new RegExp(`name="${name}" value="([^"]*)"`))?.[1]?.replaceAll('&amp;', '&')
const options = (html) => JSON.parse(html.match(/<script type="application\/json" id="passkey-options">(.*?)<\/script>/s)[1])
const form = (o) => new URLSearchParams(o).toString()

// Registration.
const page = await fetch(base + input.registerPath)
const html = await page.text()
if (page.status !== 200) throw new Error(`register page: ${page.status} ${html}`)
const reg = options(html)
const key = makeKey()
const credentialId = randomBytes(16)
const rpIdHash = sha256(reg.rpId)
const counter = (n) => Buffer.from([n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255])
const authData = Buffer.concat([
  rpIdHash, Buffer.from([0x45]), counter(0), Buffer.alloc(16),
  Buffer.from([0, credentialId.length]), credentialId, cbor(key.cose),
])
const attestationObject = cbor(new Map([['fmt', 'none'], ['attStmt', new Map()], ['authData', authData]]))
const createData = JSON.stringify({ type: 'webauthn.create', challenge: reg.challenge, origin, crossOrigin: false })
const registered = await fetch(base + '/passkey/register', {
  method: 'POST',
  headers: { 'content-type': 'application/x-www-form-urlencoded' },
  body: form({
    token: field(html, 'token'),
    credential: JSON.stringify({ id: b64(credentialId), clientDataJSON: b64(createData), attestationObject: b64(attestationObject) }),
  }),
})
const out = { registered: registered.status, credentialId: b64(credentialId), registeredText: await registered.text() }
if (registered.status !== 200) {
  console.log(JSON.stringify(out))
  process.exit(0)
}

// Sign-ins on the authorize page.
async function approve(path, count, signer = key.sign) {
  const page = await fetch(base + path)
  const html = await page.text()
  const cookie = page.headers.get('set-cookie').split(';')[0]
  const o = options(html)
  const assertionData = Buffer.concat([sha256(o.rpId), Buffer.from([0x05]), counter(count)])
  const clientData = JSON.stringify({ type: 'webauthn.get', challenge: o.challenge, origin, crossOrigin: false })
  const signature = signer(Buffer.concat([assertionData, sha256(clientData)]))
  const res = await fetch(base + '/oauth/authorize', {
    method: 'POST',
    redirect: 'manual',
    headers: { 'content-type': 'application/x-www-form-urlencoded', cookie, origin },
    body: form({
      request_uri: field(html, 'request_uri'),
      client_id: field(html, 'client_id'),
      csrf_token: field(html, 'csrf_token'),
      password: '',
      webauthn: JSON.stringify({ id: b64(credentialId), clientDataJSON: b64(clientData), authenticatorData: b64(assertionData), signature: b64(signature) }),
      action: 'allow',
    }),
  })
  return { status: res.status, location: res.headers.get('location'), text: res.status === 303 ? '' : await res.text() }
}
const [p1, p2, p3] = input.authorizePaths
out.first = await approve(p1, 1)
out.replayStatus = (await approve(p2, 1)).status
out.second = await approve(p2, 2)
const other = makeKey()
out.forgedStatus = (await approve(p3, 3, other.sign)).status
console.log(JSON.stringify(out))
