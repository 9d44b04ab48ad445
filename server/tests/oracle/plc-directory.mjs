// A real PLC directory (@did-plc/server, the reference implementation) with an in-memory
// database, for tests that register and update did:plc identities without the network.
//
// Usage: node plc-directory.mjs   (stdin must be a pipe the caller keeps open)
// Listens on 127.0.0.1 only, on a free port, and once listening prints exactly one line
// on stdout: {"port": N}. Exits when its stdin closes (the caller dropped it or died),
// or on SIGTERM/SIGINT. Request logging is off unless LOG_ENABLED=true (pino, to stdout).
import { PlcServer, Database } from '@did-plc/server'

// The mock database validates every op with @did-plc/lib exactly as the Postgres one does.
const plc = PlcServer.create({ db: Database.mock() })
// Not plc.start(): that listens on every interface. Bind loopback ourselves.
const server = plc.app.listen(0, '127.0.0.1')
await new Promise((resolve, reject) => {
  server.once('listening', resolve)
  server.once('error', reject)
})
process.stdout.write(JSON.stringify({ port: server.address().port }) + '\n')

let stopping = false
const stop = () => {
  if (stopping) return
  stopping = true
  server.closeAllConnections()
  server.close(() => process.exit(0))
  setTimeout(() => process.exit(0), 1000).unref()
}
process.stdin.on('end', stop)
process.stdin.on('close', stop)
process.stdin.on('error', stop)
process.stdin.resume() // read (and discard) stdin so 'end' fires when it closes
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
