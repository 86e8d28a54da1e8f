// One npm `pkarr` DHT operation per process, for tests/test_pkarr_interop.py (through
// tests/support/pkarr_js.py) and scripts/bench. scripts/test installs pkarr here with `npm ci`.
//
//   node pkarr-op.mjs publish --bootstrap HOST:PORT --seed HEX --txt-file PATH [options]
//   node pkarr-op.mjs resolve --bootstrap HOST:PORT --key Z32 [--full] [options]
//   node pkarr-op.mjs encode  --seed HEX --txt-file PATH     (DNS bytes only, no network)
//
// options: --bind ADDR (local address of this node), --skip ADDR (never query
// nodes at ADDR), --state DIR (where pkarr keeps its routing table).
//
// It does what pkarr's own Pkarr.publish / Pkarr.resolve do (a SignedPacket
// put or got through pkarr's DHT class over bittorrent-dht), but with a
// bootstrap list and a state directory of our choosing: those two functions
// always use the public routers and ~/.config/pkarr. Prints one JSON line.

import { performance } from 'node:perf_hooks'

import { SignedPacket, z32 } from 'pkarr'

import { LABEL, cclinkPacket, openDht } from './common.mjs'

// performance.now() counts from process start: this is node start-up plus loading pkarr.
const loaded = performance.now()

function parseArgs (argv) {
  const [command, ...rest] = argv
  const options = { command, full: false, skip: [] }
  for (let i = 0; i < rest.length; i++) {
    const name = rest[i].replace(/^--/, '')
    if (name === 'full') { options.full = true; continue }
    const value = rest[++i]
    if (value === undefined) throw new Error(`--${name} needs a value`)
    if (name === 'skip') options.skip.push(value)
    else options[name] = value
  }
  return options
}


function dnsBytes (signedPacket) {
  return Buffer.from(signedPacket.bep44Args().v)
}

async function publish (options) {
  const signedPacket = cclinkPacket(options.seed, options['txt-file'])
  const dht = openDht(options)
  const opStart = performance.now()
  try {
    const result = await dht.put(signedPacket.bep44Args())
    return {
      ok: true,
      public_key: z32.encode(signedPacket.publicKey()),
      seq: signedPacket.timestamp(),
      size: signedPacket.size(),
      nodes: result.nodes.length,
      op_ms: performance.now() - opStart
    }
  } finally {
    await dht.destroy()
  }
}

async function resolve (options) {
  const key = z32.decode(options.key.replace(/^pk:/, ''))
  const dht = openDht(options)
  const opStart = performance.now()
  let result
  try {
    result = await dht.get(key, { fullLookup: options.full })
  } finally {
    await dht.destroy()
  }
  const opMs = performance.now() - opStart
  if (!result) return { ok: true, found: false, op_ms: opMs }
  // fromBep44Args checks the Ed25519 signature over the BEP 44 bytes and throws if it fails.
  const signedPacket = SignedPacket.fromBep44Args(result)
  const name = `${LABEL}.${options.key.replace(/^pk:/, '')}`
  const answers = signedPacket.packet().answers
  const txt = answers.find((answer) => answer.type === 'TXT' && answer.name.toLowerCase() === name)
  return {
    ok: true,
    found: true,
    verified: true,
    seq: signedPacket.timestamp(),
    size: signedPacket.size(),
    names: answers.map((answer) => answer.name),
    dns_hex: Buffer.from(result.v).toString('hex'),
    txt: txt ? Buffer.concat(txt.data.map((part) => Buffer.from(part))).toString('utf8') : null,
    nodes: result.nodes.map((node) => `${node.host}:${node.port}`),
    op_ms: opMs
  }
}

function encode (options) {
  const signedPacket = cclinkPacket(options.seed, options['txt-file'], 1)
  return { ok: true, dns_hex: dnsBytes(signedPacket).toString('hex'), size: signedPacket.size() }
}

const commands = { publish, resolve, encode }

async function main () {
  const options = parseArgs(process.argv.slice(2))
  const command = commands[options.command]
  if (!command) throw new Error(`unknown command ${options.command}; use publish, resolve or encode`)
  if (options.command !== 'encode' && !options.bootstrap) throw new Error('--bootstrap HOST:PORT is required')
  const out = await command(options)
  out.load_ms = loaded
  out.process_ms = performance.now()
  process.stdout.write(JSON.stringify(out) + '\n')
}

main().catch((error) => {
  process.stdout.write(JSON.stringify({ ok: false, error: String(error && error.message ? error.message : error) }) + '\n')
  // A half-open DHT socket would keep the process alive.
  process.exit(1)
})
