// Mints a service-auth JWT with the reference implementation (@atproto/xrpc-server's
// createServiceJwt over @atproto/crypto), as another PDS's getServiceAuth would: for tests of
// what this PDS accepts from tokens it did not make.
//
// Usage: node service-jwt.mjs input.json
// Input:  {"keyHex": "<secp256k1 private key>", "iss": "did:...", "aud": "did:...",
//          "lxm": "nsid" (or null), "exp": <unix seconds> (optional)}
// Output: {"token": "<jwt>"}
import { readFileSync } from 'node:fs'
import { Secp256k1Keypair } from '@atproto/crypto'
import { createServiceJwt } from '@atproto/xrpc-server'

const input = JSON.parse(readFileSync(process.argv[2] ?? 0, 'utf8'))
const keypair = await Secp256k1Keypair.import(input.keyHex)
const token = await createServiceJwt({
  iss: input.iss,
  aud: input.aud,
  lxm: input.lxm ?? null,
  exp: input.exp,
  keypair,
})
process.stdout.write(JSON.stringify({ token }) + '\n')
