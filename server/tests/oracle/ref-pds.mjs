// The reference PDS (@atproto/pds, as its dev-env runs it) on loopback: the other end of an
// account migration in the end-to-end tests. Its did:plc operations go to the given PLC
// directory (plc-directory.mjs); nothing else is reached over the network.
//
// Usage: node ref-pds.mjs INPUT   (INPUT: a JSON file, or the JSON itself; stdin must be a
// pipe the caller keeps open). Input: {"plcUrl": "http://127.0.0.1:N"}.
// Listens on 127.0.0.1 only, on a free port, and once listening prints exactly one line on
// stdout: {"port": N, "url": "http://localhost:N", "did": "did:web:localhost%3AN",
// "adminPassword": "...", "dataDir": "..."}. Exits when its stdin closes, or on SIGTERM/SIGINT,
// and removes its data directory (SQLite databases, actor stores, blobs) on exit.
//
// - Handles: under ".test" (the reference's default for hostname "localhost"), e.g. alice.test.
// - createAccount needs an email (and no invite); mail goes nowhere (nodemailer jsonTransport).
// - Email tokens (requestPlcOperationSignature's, purpose "plc_operation") are in plaintext in
//   <dataDir>/account.sqlite: SELECT token FROM email_token WHERE did = ? AND purpose = ?.
// - The AppView is a dummy (as dev-env's): app.bsky.actor.{get,put}Preferences are served
//   locally only when one is configured; other app.bsky calls fail to proxy.
// - A DID already here, even deactivated, cannot be created again ("Repo already exists")
//   until com.atproto.admin.deleteAccount (Basic admin:<adminPassword>) removes it.
// - activateAccount requires this server's rotation key (getRecommendedDidCredentials) in the
//   DID's PLC rotation keys ("Server rotation key not included in PLC DID data").
// - Logging is off unless LOG_ENABLED=true; then it goes to stderr (LOG_DESTINATION).
import { randomBytes } from 'node:crypto'
import fs from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'

const arg = process.argv[2] ?? ''
const input = JSON.parse(arg.trimStart().startsWith('{') ? arg : fs.readFileSync(arg, 'utf8'))

// Read by @atproto/common when it is first imported, so set before the dynamic import.
process.env.LOG_DESTINATION ??= '/dev/stderr'
const { PDS } = await import('@atproto/pds')

// Its DID resolver refuses IP-literal hosts ("Invalid hostname", a 500 on every service-auth
// request): name the (127.0.0.1-only) directory by "localhost" instead.
const plcUrl = new URL(input.plcUrl)
if (plcUrl.hostname === '127.0.0.1') plcUrl.hostname = 'localhost'

const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ref-pds-'))
process.on('exit', () => fs.rmSync(dataDir, { recursive: true, force: true }))

let pds
let stopping = false
const stop = () => {
  if (stopping) return
  stopping = true
  if (!pds?.server) process.exit(0) // still starting
  setTimeout(() => process.exit(0), 3000).unref()
  pds.server.closeAllConnections() // else it waits a second for idle keep-alive clients
  pds.destroy().finally(() => process.exit(0))
}
process.on('SIGTERM', stop)
process.on('SIGINT', stop)

// A free loopback port: the config needs it before the server exists (public URL, DID).
const port = await new Promise((resolve, reject) => {
  const probe = net.createServer().once('error', reject)
  probe.listen(0, '127.0.0.1', () => {
    const { port } = probe.address()
    probe.close(() => resolve(port))
  })
})
const did = `did:web:localhost%3A${port}`
const adminPassword = randomBytes(16).toString('hex')

try {
  pds = await PDS.fromEnv({
    devMode: true, // plain http, no SSRF protection (the PLC directory is on loopback)
    port,
    hostname: 'localhost', // public URL http://localhost:<port>; handles under .test
    serviceDid: did, // the default, "did:web:localhost", would name no port
    dataDirectory: dataDir,
    blobstoreDiskLocation: path.join(dataDir, 'blobs'),
    blobstoreDiskTmpLocation: path.join(dataDir, 'blobs-tmp'),
    didPlcUrl: plcUrl.href.replace(/\/$/, ''),
    // Per-run secrets; a random 32-byte scalar is a valid secp256k1 key (but for ~2^-128).
    plcRotationKeyK256PrivateKeyHex: randomBytes(32).toString('hex'),
    jwtSecret: randomBytes(32).toString('hex'),
    adminPassword,
    inviteRequired: false,
    rateLimitsEnabled: false,
    crawlers: [],
    bskyAppViewUrl: 'http://127.0.0.1:1', // never reached by the preference calls
    bskyAppViewDid: 'did:example:appview',
  })
  // start() listens on every interface (app.listen(port)): bind loopback instead.
  const listen = pds.app.listen
  pds.app.listen = (p, ...rest) => listen.call(pds.app, p, '127.0.0.1', ...rest)
  await pds.start()
} catch (err) {
  console.error(err)
  process.exit(1)
}
const url = `http://localhost:${port}`
process.stdout.write(JSON.stringify({ port, url, did, adminPassword, dataDir }) + '\n')

// Read (and discard) stdin from now on, so that 'end' (the caller is gone) stops the server.
process.stdin.on('end', stop)
process.stdin.on('close', stop)
process.stdin.on('error', stop)
process.stdin.resume()
