// Independent check of a did:plc identity held by a PLC directory, with @did-plc/lib only.
//
// Usage: node plc-verify.mjs [input.json]   (without a file argument, reads stdin)
// Input:  {"plcUrl": "http://127.0.0.1:N", "did": "did:plc:..."}
// Output: {"ok": true, "ops": <non-nullified ops>, "data": <GET /<did>/data>,
//          "doc": <GET /<did>>}   (data and doc are null for a tombstoned DID)
//      or {"ok": false, "error": "..."}. Exits 0 whenever it printed the JSON.
// Checks, on GET /<did>/log/audit: every entry is for this DID and its cid is the CID of its
// operation; replaying the entries in order through assureValidNextOp (genesis hash gives the
// DID, null prev, prev chain, signatures by a rotation key of the op before, forks only by a
// higher-priority key within 72 hours) gives the log's nullified flags; validateOperationLog on
// the non-nullified ops gives the document data, which /data and the DID document must equal.
// One check beyond this (old, 0.0.4) library, as the live directory does: every sig is unpadded
// base64url of a compact 64-byte signature (the library also accepts DER; it rejects high-S).
import { readFileSync } from 'node:fs'
import { isDeepStrictEqual, inspect } from 'node:util'
import * as plc from '@did-plc/lib'

const input = JSON.parse(readFileSync(process.argv[2] ?? 0, 'utf8'))
const base = input.plcUrl.replace(/\/$/, '')
const url = (path) => `${base}/${encodeURIComponent(input.did)}${path}`

/** GET as JSON; null on 404 when allowed (a tombstoned DID's /data and document). */
const get = async (path, allow404 = false) => {
  const res = await fetch(url(path))
  if (allow404 && res.status === 404) return null
  if (!res.ok) throw new Error(`GET ${path || '/'}: ${res.status} ${await res.text()}`)
  return res.json()
}

const check = async () => {
  const did = input.did
  const audit = await get('/log/audit')
  if (!Array.isArray(audit) || audit.length === 0) throw new Error('empty audit log')
  let live = [] // the non-nullified history so far, as assureValidNextOp wants it
  const nullified = new Set()
  for (const [i, entry] of audit.entries()) {
    if (entry.did !== did) throw new Error(`entry ${i}: did ${entry.did}`)
    const sig = entry.operation?.sig
    if (!/^[A-Za-z0-9_-]{86}$/.test(sig ?? '')) throw new Error(`entry ${i}: sig not compact base64url: ${sig}`)
    const { cid } = await plc.getLastOpWithCid([entry.operation])
    if (cid.toString() !== entry.cid) throw new Error(`entry ${i}: cid ${entry.cid}, computed ${cid}`)
    const next = await plc.assureValidNextOp(did, live, entry.operation)
    for (const c of next.nullified) nullified.add(c.toString())
    live = live.filter((op) => !nullified.has(op.cid.toString()))
    live.push({ did, operation: entry.operation, cid, nullified: false, createdAt: new Date(entry.createdAt) })
  }
  for (const [i, entry] of audit.entries()) {
    if (entry.nullified !== nullified.has(entry.cid)) {
      throw new Error(`entry ${i}: nullified ${entry.nullified}, replay says ${!entry.nullified}`)
    }
  }
  const ops = live.map((op) => op.operation)
  const data = await plc.validateOperationLog(did, ops)
  const served = await get('/data', true)
  if (!isDeepStrictEqual(served, data)) throw new Error(`/data ${JSON.stringify(served)}, log gives ${JSON.stringify(data)}`)
  const doc = await get('', true)
  const expected = data && plc.formatDidDoc(data)
  if (!isDeepStrictEqual(doc, expected)) throw new Error(`document ${JSON.stringify(doc)}, log gives ${JSON.stringify(expected)}`)
  return { ok: true, ops: ops.length, data: served, doc }
}

let out
try {
  out = await check()
} catch (e) {
  // Library errors keep their class name (e.g. InvalidSignatureError, GenesisHashError).
  const cause = e?.cause ? ` (${e.cause.message ?? e.cause})` : '' // fetch's ECONNREFUSED etc.
  out = { ok: false, error: `${e?.constructor?.name ?? 'Error'}: ${e?.message ?? inspect(e)}${cause}` }
}
process.stdout.write(JSON.stringify(out) + '\n')
