// MST oracle: replays (key -> CID) operations on the reference implementation
// (@atproto/repo) and prints the root CID at each checkpoint.
//
// Usage: node mst-oracle.mjs <input.json>
// Input:  {"ops": [["a", key, cid] | ["d", key], ...], "checkpoints": [n, ...]}
//         (a checkpoint n is the state after the first n ops)
// Output: JSON array of root CID strings, one per checkpoint.
import { readFileSync } from 'node:fs'
import { MST, MemoryBlockstore } from '@atproto/repo'
import { parseCid } from '@atproto/lex-data'

const input = JSON.parse(readFileSync(process.argv[2], 'utf8'))
const checkpoints = new Set(input.checkpoints)
const roots = []
const storage = new MemoryBlockstore()
let mst = await MST.create(storage)
if (checkpoints.has(0)) roots.push((await mst.getPointer()).toString())
for (let i = 0; i < input.ops.length; i++) {
  const [op, key, cid] = input.ops[i]
  if (op === 'a') {
    const value = parseCid(cid)
    // add() refuses existing keys; an overwrite is an update.
    mst = (await mst.get(key)) ? await mst.update(key, value) : await mst.add(key, value)
  } else {
    mst = await mst.delete(key)
    // Quirk of the reference: an MST object emptied by deletes remembers its
    // old layer, and a later add then builds a root with no keys and only a
    // subtree. Its PDS never sees this (it reloads the tree from storage for
    // each commit, and a loaded empty tree has layer 0), so model that.
    if ((await mst.getEntries()).length === 0) mst = await MST.create(storage)
  }
  if (checkpoints.has(i + 1)) roots.push((await mst.getPointer()).toString())
}
process.stdout.write(JSON.stringify(roots) + '\n')
