// Decompresses a gzip body (base64 in `gzip`) with Node's zlib; prints {"text": ...}.
import { readFileSync } from 'node:fs'
import { gunzipSync } from 'node:zlib'

const input = JSON.parse(readFileSync(process.argv[2], 'utf8'))
const text = gunzipSync(Buffer.from(input.gzip, 'base64')).toString('utf8')
console.log(JSON.stringify({ text }))
