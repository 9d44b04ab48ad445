// Independent check of com.atproto.sync outputs with the reference npm library
// (@atproto/repo), not our decoder.
//
// Usage: node sync-verify.mjs <input.json>
// Input:  {"did", "didKey", "repoCar": base64 getRepo CAR,
//          "proofs": [{"car": base64 getRecord CAR, "collection", "rkey", "cid": string|null}]}
// Output: JSON {commit, rev, records: {"collection/rkey": cid}, proofs: n}.
// verifyRepoCar checks every block's CID, walks the whole MST to every record
// and verifies the commit signature against didKey; verifyProofs checks each
// getRecord CAR proves presence (with that CID) or absence. Exits non-zero
// with the reason on stderr on any failure.
import { readFileSync } from 'node:fs'
import { verifyRepoCar, verifyProofs } from '@atproto/repo'
import { CID } from 'multiformats/cid'

const input = JSON.parse(readFileSync(process.argv[2], 'utf8'))
const bytes = (b64) => new Uint8Array(Buffer.from(b64, 'base64'))

try {
  const repo = await verifyRepoCar(bytes(input.repoCar), input.did, input.didKey)
  const records = {}
  for (const c of repo.creates) {
    records[`${c.collection}/${c.rkey}`] = c.cid.toString()
  }
  let proofs = 0
  for (const p of input.proofs ?? []) {
    const claim = {
      collection: p.collection,
      rkey: p.rkey,
      cid: p.cid === null ? null : CID.parse(p.cid),
    }
    const res = await verifyProofs(bytes(p.car), [claim], input.did, input.didKey)
    if (res.verified.length !== 1 || res.unverified.length !== 0) {
      throw new Error(`proof of ${p.collection}/${p.rkey} (${p.cid}) did not verify`)
    }
    proofs++
  }
  process.stdout.write(
    JSON.stringify({
      commit: repo.commit.cid?.toString?.() ?? null,
      rev: repo.commit.rev,
      records,
      proofs,
    }),
  )
} catch (e) {
  process.stderr.write(`${e?.stack ?? e}\n`)
  process.exit(1)
}
