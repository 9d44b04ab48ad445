// Independent live firehose consumer: subscribes to a subscribeRepos URL over
// WebSocket (Node's own WebSocket), and checks every binary frame as it
// arrives with the reference npm libraries (firehose-checks.mjs; never our
// decoder) until a stop condition holds.
//
// Usage: node firehose-consume.mjs [input.json] [--url=ws://...] [--until-seq=N]
//          [--frames=K] [--until-error] [--idle-ms=MS] [--timeout-ms=MS]
// Input (flags override it):
//   url         ws://HOST/xrpc/com.atproto.sync.subscribeRepos[?cursor=N]
//   didKey      the account's did:key (commit and sync signatures)
//   prev        chain state before the first frame: null = the stream starts at
//               the repository's creation; {data, rev} = the previous session's
//               `last` (a reconnect continues its chain); absent = unknown
//   lastSeq     seqs must grow past this (a reconnect's cursor); default 0
//   stop        {untilSeq, frames, untilError, idleMs, timeoutMs}: stop once a
//               frame with seq >= untilSeq was checked, after `frames` frames,
//               at an error frame (then wait up to closeWaitMs, default 5000,
//               for the server to close),
//               after idleMs without a frame; timeoutMs bounds the whole run
//               (default 60000). The server closing the socket always stops.
//   keepFrames  also output the frames (base64)
// Prints "open" on stderr once the socket is open (callers sync on it), and on
// stdout one JSON object: {opened, stopReason, closed: {code, reason, byServer}
// | null, seqs, kinds, errors, infos, counts, verified, failure, last, frames?}.
// verified is false with the reason in failure when a check failed. Exits 0
// whenever it printed the JSON.
import { readFileSync } from 'node:fs'
import { createChecker, describe } from './firehose-checks.mjs'

const input = {}
const flags = {}
for (const arg of process.argv.slice(2)) {
  const m = /^--([a-z-]+)(?:=(.*))?$/.exec(arg)
  if (m) flags[m[1]] = m[2] ?? true
  else Object.assign(input, JSON.parse(readFileSync(arg, 'utf8')))
}
const stop = { timeoutMs: 60000, ...(input.stop ?? {}) }
if (flags.url) input.url = flags.url
if (flags['did-key']) input.didKey = flags['did-key']
if (flags['until-seq']) stop.untilSeq = Number(flags['until-seq'])
if (flags.frames) stop.frames = Number(flags.frames)
if (flags['until-error']) stop.untilError = true
if (flags['idle-ms']) stop.idleMs = Number(flags['idle-ms'])
if (flags['timeout-ms']) stop.timeoutMs = Number(flags['timeout-ms'])
if (!input.url || !input.didKey) {
  process.stderr.write('usage: firehose-consume.mjs [input.json] --url=ws://... --did-key=did:key:... [stop flags]\n')
  process.exit(2)
}

const checker = createChecker({ didKey: input.didKey, prev: input.prev, lastSeq: input.lastSeq ?? 0 })
const out = {
  url: input.url,
  opened: false,
  stopReason: null,
  closed: null,
  seqs: [],
  kinds: [],
  errors: [],
  infos: [],
  counts: checker.counts,
  verified: true,
  failure: null,
  last: null,
}
if (input.keepFrames) out.frames = []

let finished = false
let resolveDone
const done = new Promise((r) => (resolveDone = r))
const ws = new WebSocket(input.url)
ws.binaryType = 'arraybuffer'
let idleTimer = null
let closingOurselves = false
const finish = (reason) => {
  if (finished) return
  finished = true
  out.stopReason = reason
  clearTimeout(idleTimer)
  clearTimeout(overall)
  if (ws.readyState === WebSocket.OPEN || ws.readyState === WebSocket.CONNECTING) {
    closingOurselves = true
    ws.close(1000)
  }
  resolveDone()
}
const overall = setTimeout(() => finish('timeout'), stop.timeoutMs)
const armIdle = () => {
  if (!stop.idleMs) return
  clearTimeout(idleTimer)
  idleTimer = setTimeout(() => finish('idle'), stop.idleMs)
}

// Frames are checked one at a time, in arrival order: the chain is sequential.
let queue = Promise.resolve()
const onFrame = async (bytes) => {
  if (finished) return
  if (input.keepFrames) out.frames.push(Buffer.from(bytes).toString('base64'))
  let seen
  try {
    seen = await checker.check(bytes)
  } catch (e) {
    out.verified = false
    out.failure = describe(e)
    return finish('failed')
  }
  out.kinds.push(seen.type)
  if (seen.seq !== undefined) out.seqs.push(seen.seq)
  if (seen.type === 'error') out.errors.push(seen.name)
  if (seen.type === '#info') out.infos.push(seen.name)
  out.last = checker.last()
  if (seen.type === 'error' && stop.untilError) {
    // The server must close after an error frame: give it a moment to do so.
    out.stopReason = 'error'
    clearTimeout(idleTimer)
    setTimeout(() => finish('error'), stop.closeWaitMs ?? 5000)
    return
  }
  if (stop.untilSeq !== undefined && seen.seq !== undefined && seen.seq >= stop.untilSeq) return finish('seq')
  if (stop.frames !== undefined && checker.counts.frames >= stop.frames) return finish('frames')
}

ws.addEventListener('open', () => {
  out.opened = true
  process.stderr.write('open\n')
  armIdle()
})
ws.addEventListener('message', (ev) => {
  armIdle()
  if (typeof ev.data === 'string') {
    out.verified = false
    out.failure = `text frame: ${ev.data.slice(0, 200)}`
    return finish('failed')
  }
  const bytes = new Uint8Array(ev.data)
  queue = queue.then(() => onFrame(bytes))
})
ws.addEventListener('close', (ev) => {
  out.closed = { code: ev.code, reason: ev.reason, byServer: !closingOurselves }
  // Frames already received are still checked before the result is printed.
  queue.then(() => finish(out.stopReason ?? (out.opened ? 'closed' : 'connect-failed')))
})
// A refused upgrade fires only 'error' (no 'close'); otherwise let 'close' report first.
ws.addEventListener('error', () => {
  setTimeout(() => queue.then(() => finish(out.stopReason ?? (out.opened ? 'socket-error' : 'connect-failed'))), 200)
})

await done
await queue
process.stdout.write(JSON.stringify(out))
process.exit(0)
