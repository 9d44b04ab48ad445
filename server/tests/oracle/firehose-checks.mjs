// The checks an independent firehose consumer makes on our subscribeRepos
// frames, shared by firehose-verify.mjs (frames given in a file) and
// firehose-consume.mjs (frames read from a live WebSocket). Decoding and
// verification use the reference npm libraries only, never our decoder.
//
// For every #commit: the body validates against the lexicon (@atproto/api),
// the CAR's root is the commit, the commit's signature verifies against the
// account's did:key, @atproto/sync's parseCommitAuthenticated verifies every
// op against the blocks (inclusion for creates and updates, absence for
// deletes), inverting the ops over the new tree using only the provided
// blocks (@atproto/repo's MST) gives back prevData, and prevData and since
// equal the previous commit's data and rev. A #sync (repository creation or
// reactivation) must be at the chain's current data when that is known, and
// restarts the chain at its commit.
import { inspect } from 'node:util'
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

/** A failed check on one frame (index among the frames checked). */
export class CheckFailure extends Error {
  constructor(index, message) {
    super(`frame ${index}: ${message}`)
    this.name = 'CheckFailure'
  }
}

/** Why a check threw: library errors keep their class name (e.g. MissingBlockError). */
export const describe = (e) =>
  e instanceof CheckFailure ? e.message : `${e?.constructor?.name ?? 'Error'}: ${inspect(e)}`

/**
 * A stateful checker of one stream of frames.
 *
 * `prev` is the chain state before the first frame:
 *   null               the stream starts at the repository's beginning: the
 *                      first commit (if no #sync precedes it) has since null;
 *   {data, rev}        a previous session's last commit (data as a CID
 *                      string): the first commit must continue it;
 *   undefined          unknown (a live-only subscription): the first commit's
 *                      link to its predecessor cannot be checked, the rest can.
 * `lastSeq` is the seq the stream must grow from (0 when unknown).
 */
export function createChecker({ didKey, prev, lastSeq = 0 }) {
  // parseCommitAuthenticated resolves the account key through an IdResolver:
  // this one knows the single account's key.
  const idResolver = { did: { resolveAtprotoKey: async () => didKey } }
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
    lastSeq,
  }
  // {data: CID string, rev} of the latest commit, null at genesis, undefined when unknown.
  let chain = prev === undefined ? undefined : prev === null ? null : { data: String(prev.data), rev: prev.rev }

  /** Checks one frame; returns what it was ({type, seq?, name?}); throws CheckFailure. */
  async function check(bytes) {
    const i = counts.frames++
    const fail = (msg) => {
      throw new CheckFailure(i, msg)
    }
    const ensure = (cond, msg) => {
      if (!cond) fail(msg)
    }
    const validate = (fn, value) => {
      const res = fn(value)
      if (!res.success) fail(`lexicon: ${res.error?.message ?? res.error}`)
    }

    const frame = Frame.fromBytes(bytes)
    if (frame.isError()) {
      counts.errors.push(frame.body.error)
      return { type: 'error', name: frame.body.error }
    }
    ensure(frame.isMessage(), 'neither message nor error')
    const t = frame.header.t
    const evt = { ...frame.body, $type: `com.atproto.sync.subscribeRepos${t}` }
    if (t === '#info') {
      validate(Lex.validateInfo, evt)
      counts.infos++
      return { type: t, name: evt.name }
    }
    ensure(Number.isInteger(evt.seq) && evt.seq > counts.lastSeq, `seq ${evt.seq} does not grow (last ${counts.lastSeq})`)
    counts.lastSeq = evt.seq
    if (t === '#commit') {
      validate(Lex.validateCommit, evt)
      ensure(evt.tooBig === false && evt.rebase === false, 'tooBig/rebase not false')
      ensure(evt.blobs.length === 0, 'blobs not empty')
      const car = await readCarWithRoot(evt.blocks)
      ensure(car.root.equals(evt.commit), 'CAR root is not the commit')
      const commit = cborToLex(car.blocks.get(car.root))
      ensure(commit.did === evt.repo && commit.rev === evt.rev, 'commit did/rev mismatch')
      ensure(await verifyCommitSig(commit, didKey), 'bad commit signature')
      if (chain === null) {
        ensure(evt.since === null, 'first commit: since not null')
      } else if (chain !== undefined) {
        ensure(evt.since === chain.rev, `since ${evt.since} != previous rev ${chain.rev}`)
        ensure(evt.rev > chain.rev, 'rev does not grow')
        ensure(evt.prevData && evt.prevData.toString() === chain.data, `prevData ${evt.prevData} != previous commit data ${chain.data}`)
      }
      // Every op proven against the blocks by the reference consumer.
      const verified = await parseCommitAuthenticated(idResolver, evt)
      ensure(verified.length === evt.ops.length, `${verified.length} of ${evt.ops.length} ops verified`)
      for (const [j, op] of evt.ops.entries()) {
        ensure((op.action === 'create') === (op.prev === undefined), `op ${j}: prev presence`)
        ensure((op.action === 'delete') === (op.cid === null), `op ${j}: cid nullness`)
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
        ensure(root.equals(evt.prevData), `inverted root ${root} != prevData ${evt.prevData}`)
        counts.inverted++
      }
      chain = { data: commit.data.toString(), rev: commit.rev }
      counts.commits++
      counts.ops += evt.ops.length
    } else if (t === '#sync') {
      validate(Lex.validateSync, evt)
      const parsed = await parseSync(evt)
      const commit = cborToLex(parsed.blocks.get(parsed.cid))
      ensure(parsed.blocks.size === 1, 'sync CAR holds more than the commit')
      ensure(commit.did === evt.did && commit.rev === evt.rev, 'sync did/rev mismatch')
      ensure(await verifyCommitSig(commit, didKey), 'bad sync commit signature')
      // At genesis (repository creation) or from an unknown state the sync starts the chain.
      if (chain) ensure(commit.data.toString() === chain.data, 'sync is not at the latest commit')
      chain = { data: commit.data.toString(), rev: commit.rev }
      counts.syncs++
    } else if (t === '#identity') {
      validate(Lex.validateIdentity, evt)
      counts.identities++
    } else if (t === '#account') {
      validate(Lex.validateAccount, evt)
      ensure(evt.active === (evt.status === undefined), 'active/status mismatch')
      counts.accounts++
    } else {
      fail(`unknown type ${t}`)
    }
    return { type: t, seq: evt.seq }
  }

  return {
    check,
    counts,
    /** The chain state after the frames checked so far (for a later session's `prev`). */
    last: () => chain ?? null,
  }
}
