// Independent firehose consumer over recorded frames: decodes our frames with
// the reference npm libraries (not our decoder) and verifies them the way a
// sync v1.1 relay does (the checks are in firehose-checks.mjs).
//
// Usage: node firehose-verify.mjs <input.json>
// Input:  {"didKey": "did:key:...", "frames": [base64 frame, ...]}
// Output: JSON counts {frames, commits, ops, actions, inverted, syncs,
//         identities, accounts, infos, errors: [name, ...], lastSeq}. Exits
//         non-zero on the first failed check, with the reason on stderr.
import { readFileSync } from 'node:fs'
import { createChecker, describe } from './firehose-checks.mjs'

const input = JSON.parse(readFileSync(process.argv[2], 'utf8'))
// The frames start at the beginning of the log: the first commit has no predecessor.
const checker = createChecker({ didKey: input.didKey, prev: null })
try {
  for (const b64 of input.frames) await checker.check(Buffer.from(b64, 'base64'))
} catch (e) {
  process.stderr.write(`${describe(e)}\n`)
  process.exit(1)
}
process.stdout.write(JSON.stringify(checker.counts))
