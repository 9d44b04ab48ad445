// Builds a repository with the reference implementation (@atproto/repo) and writes it as a CAR,
// as another PDS's getRepo would serve it: for tests of importRepo.
//
// Usage: node repo-car.mjs input.json
// Input:  {"did": "did:...", "keyHex": "<secp256k1 private key>", "posts": ["rkey", ...],
//          "blobCid": "<raw CID>" (optional: the first post embeds this image blob),
//          "legacyBlobCid": "<raw CID>" (optional: the last post embeds it in the legacy
//          {cid, mimeType} form that records written before 2023 carry)}
// Output: {"car": "<base64>", "root": "<commit CID>", "rev": "<commit rev>"}
// The CAR holds every block the store saw, unreachable ones included.
import { readFileSync } from 'node:fs'
import { Secp256k1Keypair } from '@atproto/crypto'
import { MemoryBlockstore, Repo, WriteOpAction, blocksToCarFile } from '@atproto/repo'
import { parseCid } from '@atproto/lex-data'

const input = JSON.parse(readFileSync(process.argv[2] ?? 0, 'utf8'))
const keypair = await Secp256k1Keypair.import(input.keyHex)
const storage = new MemoryBlockstore()
const writes = input.posts.map((rkey, i) => {
  const record = {
    $type: 'app.bsky.feed.post',
    text: `post ${rkey}`,
    createdAt: new Date(Date.UTC(2026, 0, 1, 0, 0, i)).toISOString(),
  }
  if (i === 0 && input.blobCid) {
    record.embed = {
      $type: 'app.bsky.embed.images',
      images: [{ alt: '', image: { $type: 'blob', ref: parseCid(input.blobCid), mimeType: 'image/png', size: 4 } }],
    }
  }
  if (i === input.posts.length - 1 && input.legacyBlobCid) {
    record.embed = {
      $type: 'app.bsky.embed.images',
      images: [{ alt: '', image: { cid: input.legacyBlobCid, mimeType: 'image/png' } }],
    }
  }
  return { action: WriteOpAction.Create, collection: 'app.bsky.feed.post', rkey, record }
})
const repo = await Repo.create(storage, input.did, keypair, writes)
const car = await blocksToCarFile(repo.cid, storage.blocks)
process.stdout.write(
  JSON.stringify({ car: Buffer.from(car).toString('base64'), root: repo.cid.toString(), rev: repo.commit.rev }) + '\n',
)
