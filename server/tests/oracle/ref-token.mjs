// Reads the PLC operation token the reference PDS (ref-pds.mjs) stored for a DID: that server
// mails it, and its dev mode mails nowhere; it keeps the token in plaintext in its account
// database.
//
// Usage: node ref-token.mjs input.json   Input: {"dataDir": "...", "did": "did:plc:..."}
// Output: {"token": "XXXXX-XXXXX"} (null when there is none)
import { readFileSync } from 'node:fs'
import path from 'node:path'
import Database from 'better-sqlite3'

const input = JSON.parse(readFileSync(process.argv[2] ?? 0, 'utf8'))
const db = new Database(path.join(input.dataDir, 'account.sqlite'), { readonly: true })
const row = db
  .prepare("SELECT token FROM email_token WHERE did = ? AND purpose = 'plc_operation'")
  .get(input.did)
db.close()
process.stdout.write(JSON.stringify({ token: row?.token ?? null }) + '\n')
