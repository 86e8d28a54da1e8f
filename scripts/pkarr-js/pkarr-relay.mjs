// npm pkarr's relay server (lib/relay.js, pkarr's design/relays.md) on a DHT swarm, for tests/test_relays.py
// (through tests/support/relays.py). Runs until killed.
//
//   node pkarr-relay.mjs --bootstrap HOST:PORT --state DIR [--bind ADDR] [--skip ADDR]
//
// It listens on 127.0.0.1 only, on a port the system picks, and prints one JSON line,
// {"ok": true, "port": N}, once it listens; then the server's own log lines follow.
// Its DHT node is bound and filtered as pkarr-op.mjs's are (--bind, --skip).

import Server from 'pkarr/lib/relay.js'

import { openDht } from './common.mjs'

function parseArgs (argv) {
  const options = { skip: [] }
  for (let i = 0; i < argv.length; i += 2) {
    const name = argv[i].replace(/^--/, '')
    const value = argv[i + 1]
    if (value === undefined) throw new Error(`--${name} needs a value`)
    if (name === 'skip') options.skip.push(value)
    else options[name] = value
  }
  if (!options.bootstrap) throw new Error('--bootstrap HOST:PORT is required')
  return options
}

async function main () {
  const options = parseArgs(process.argv.slice(2))
  const server = new Server({ dht: openDht(options) })
  // Server.listen would listen on every interface; the tests stay on loopback.
  await new Promise((resolve) => server._server.listen(0, '127.0.0.1', resolve))
  process.stdout.write(JSON.stringify({ ok: true, port: server.port }) + '\n')
}

main().catch((error) => {
  process.stdout.write(JSON.stringify({ ok: false, error: String(error && error.message ? error.message : error) }) + '\n')
  process.exit(1)
})
