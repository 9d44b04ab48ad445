// Independent firehose consumer: decodes our frames with the reference npm
// libraries (not our decoder) and verifies them the way a sync v1.1 relay does.
//
// Usage: node firehose-verify.mjs <input.json>
// Input:  {"didKey": "did:key:...", "frames": [base64 frame, ...]}
// Output: JSON counts {frames, commits, ops, syncs, identities, accounts,
//         infos, errors: [name, ...], lastSeq}. Exits non-zero on the first
//         failed check, with the reason on stderr.
//
// For every #commit: the body validates against the lexicon (@atproto/api),
// the CAR's root is the commit, the commit's signature verifies against the
// account's did:key, @atproto/sync's parseCommitAuthenticated verifies every
// op against the blocks (inclusion for creates and updates, absence for
// deletes), inverting the ops over the new tree using only the provided
// blocks (@atproto/repo's MST) gives back prevData, and prevData and since
// equal the previous commit's data and rev.
import { readFileSync } from 'node:fs'
import { ComAtprotoSyncSubscribeRepos as Lex } from '@atproto/api'
import {
  MST,
  MemoryBlockstore,
  readCarWithRoot,
  verifyCommitSig,
  cborToLex,
} from '@atproto/repo'
import { parseCommitAuthenticated, parseSync } from '@atproto/sync'
import { Frame } from '@atproto/xrpc-server'

const input = JSON.parse(readFileSync(process.argv[2], 'utf8'))
const didKey = input.didKey
// parseCommitAuthenticated resolves the account key through an IdResolver:
// this one knows the single account's key.
const idResolver = { did: { resolveAtprotoKey: async () => didKey } }

const fail = (i, msg) => {
  process.stderr.write(`frame ${i}: ${msg}\n`)
  process.exit(1)
}
const check = (i, cond, msg) => {
  if (!cond) fail(i, msg)
}
const validate = (i, fn, value) => {
  const res = fn(value)
  if (!res.success) fail(i, `lexicon: ${res.error?.message ?? res.error}`)
}

const counts = {
  frames: 0,
  commits: 0,
  ops: 0,
  actions: { create: 0, update: 0, delete: 0 },
  inverted: 0,
  syncs: 0,
  identities: 0,
  accounts: 0,
  infos: 0,
  errors: [],
  lastSeq: 0,
}
let prev = null // {data, rev} of the previous commit

for (const [i, b64] of input.frames.entries()) {
  counts.frames++
  const frame = Frame.fromBytes(Buffer.from(b64, 'base64'))
  if (frame.isError()) {
    counts.errors.push(frame.body.error)
    continue
  }
  check(i, frame.isMessage(), 'neither message nor error')
  const t = frame.header.t
  const evt = { ...frame.body, $type: `com.atproto.sync.subscribeRepos${t}` }
  if (t === '#info') {
    validate(i, Lex.validateInfo, evt)
    counts.infos++
    continue
  }
  check(i, Number.isInteger(evt.seq) && evt.seq > counts.lastSeq, `seq ${evt.seq} does not grow`)
  counts.lastSeq = evt.seq
  if (t === '#commit') {
    validate(i, Lex.validateCommit, evt)
    check(i, evt.tooBig === false && evt.rebase === false, 'tooBig/rebase not false')
    check(i, evt.blobs.length === 0, 'blobs not empty')
    const car = await readCarWithRoot(evt.blocks)
    check(i, car.root.equals(evt.commit), 'CAR root is not the commit')
    const commit = cborToLex(car.blocks.get(car.root))
    check(i, commit.did === evt.repo && commit.rev === evt.rev, 'commit did/rev mismatch')
    check(i, await verifyCommitSig(commit, didKey), 'bad commit signature')
    if (prev === null) {
      check(i, evt.since === null, 'first commit: since not null')
    } else {
      check(i, evt.since === prev.rev, `since ${evt.since} != previous rev ${prev.rev}`)
      check(i, evt.rev > prev.rev, 'rev does not grow')
      check(i, evt.prevData && evt.prevData.equals(prev.data), 'prevData != previous commit data')
    }
    // Every op proven against the blocks by the reference consumer.
    const verified = await parseCommitAuthenticated(idResolver, evt)
    check(i, verified.length === evt.ops.length, `${verified.length} of ${evt.ops.length} ops verified`)
    for (const [j, op] of evt.ops.entries()) {
      check(i, (op.action === 'create') === (op.prev === undefined), `op ${j}: prev presence`)
      check(i, (op.action === 'delete') === (op.cid === null), `op ${j}: cid nullness`)
      counts.actions[op.action]++
    }
    // Inversion with only the provided blocks.
    if (evt.prevData) {
      const storage = new MemoryBlockstore(car.blocks)
      let mst = MST.load(storage, commit.data)
      for (const op of [...evt.ops].reverse()) {
        if (op.action === 'create') mst = await mst.delete(op.path)
        else if (op.action === 'update') mst = await mst.update(op.path, op.prev)
        else mst = await mst.add(op.path, op.prev)
      }
      const root = await mst.getPointer()
      check(i, root.equals(evt.prevData), `inverted root ${root} != prevData ${evt.prevData}`)
      counts.inverted++
    }
    prev = { data: commit.data, rev: commit.rev }
    counts.commits++
    counts.ops += evt.ops.length
  } else if (t === '#sync') {
    validate(i, Lex.validateSync, evt)
    const parsed = await parseSync(evt)
    const commit = cborToLex(parsed.blocks.get(parsed.cid))
    check(i, parsed.blocks.size === 1, 'sync CAR holds more than the commit')
    check(i, commit.did === evt.did && commit.rev === evt.rev, 'sync did/rev mismatch')
    check(i, await verifyCommitSig(commit, didKey), 'bad sync commit signature')
    check(i, prev && commit.data.equals(prev.data), 'sync is not at the latest commit')
    counts.syncs++
  } else if (t === '#identity') {
    validate(i, Lex.validateIdentity, evt)
    counts.identities++
  } else if (t === '#account') {
    validate(i, Lex.validateAccount, evt)
    check(i, evt.active === (evt.status === undefined), 'active/status mismatch')
    counts.accounts++
  } else {
    fail(i, `unknown type ${t}`)
  }
}
process.stdout.write(JSON.stringify(counts))
