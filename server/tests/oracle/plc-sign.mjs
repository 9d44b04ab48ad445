// Signs a PLC operation with @did-plc/lib's own code, so a test can compare its own PLC
// encoding, signature, CID and DID derivation against the reference implementation's.
//
// Usage: node plc-sign.mjs [input.json]   (without a file argument, reads stdin)
// Input:  {"op": <unsigned op: plc_operation or plc_tombstone, no "sig">,
//          "keyHex": "<secp256k1 private key, 64 hex digits>"}
// Output: {"signed": <op with "sig" (base64url, compact 64-byte, low-S)>,
//          "cid": "<CIDv1 dag-cbor sha256 of the signed op>",
//          "didKey": "did:key:z..." (the key's public did:key),
//          "did": "did:plc:..." (only for a genesis op, prev === null)}
// Signatures are deterministic (RFC 6979 in @noble/secp256k1 1.7), so they must be
// byte-equal to any other RFC 6979 low-S signer's.
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { addSignature, didForCreateOp, getLastOpWithCid } from '@did-plc/lib'

// The keypair class of the @atproto/crypto that @did-plc/lib itself depends on (0.1.0).
const requireFromLib = createRequire(createRequire(import.meta.url).resolve('@did-plc/lib'))
const { Secp256k1Keypair } = requireFromLib('@atproto/crypto')

const input = JSON.parse(readFileSync(process.argv[2] ?? 0, 'utf8'))
const key = await Secp256k1Keypair.import(input.keyHex)
// signOperation(op, key) is addSignature for plc_operation; addSignature also takes tombstones.
const signed = await addSignature(input.op, key)
// The library's cidForCbor (from its @atproto/common), reached through an exported helper.
const { cid } = await getLastOpWithCid([signed])
const out = { signed, cid: cid.toString(), didKey: key.did() }
if (input.op.prev === null) out.did = await didForCreateOp(signed)
process.stdout.write(JSON.stringify(out) + '\n')
