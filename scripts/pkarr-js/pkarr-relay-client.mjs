// npm `pkarr`'s own relay client (Pkarr.relayPut and Pkarr.relayGet) against one relay, one call per
// process, for tests/test_relay_server.py: pkarr publishes and resolves through `cclink relay`.
//
//   node pkarr-relay-client.mjs put --relay URL --seed HEX --txt-file PATH
//   node pkarr-relay-client.mjs get --relay URL --key Z32
//
// `put` signs a packet holding the file as the `_cclink` TXT record (as pkarr-op.mjs does) and
// PUTs it; `get` fetches the key's packet, which pkarr's SignedPacket.fromBytes verifies.
// Prints one JSON line.

import { Pkarr, z32 } from 'pkarr'

import { LABEL, cclinkPacket } from './common.mjs'

function parseArgs (argv) {
  const [command, ...rest] = argv
  const options = { command }
  for (let i = 0; i < rest.length; i += 2) {
    if (rest[i + 1] === undefined) throw new Error(`${rest[i]} needs a value`)
    options[rest[i].replace(/^--/, '')] = rest[i + 1]
  }
  if (!options.relay) throw new Error('--relay URL is required')
  return options
}


async function put (options) {
  const signedPacket = cclinkPacket(options.seed, options['txt-file'])
  const response = await Pkarr.relayPut(options.relay, signedPacket)
  return {
    ok: true,
    status: response.status,
    stored_nodes: response.headers.get('pkarr-dht-stored-nodes'),
    public_key: z32.encode(signedPacket.publicKey()),
    seq: signedPacket.timestamp()
  }
}

async function get (options) {
  const key = options.key.replace(/^pk:/, '')
  // relayGet throws unless the answer is a payload whose signature verifies under the key.
  const signedPacket = await Pkarr.relayGet(options.relay, z32.decode(key))
  const answers = signedPacket.packet().answers
  const txt = answers.find((answer) => answer.type === 'TXT' && answer.name.toLowerCase() === `${LABEL}.${key}`)
  return {
    ok: true,
    verified: true,
    seq: signedPacket.timestamp(),
    names: answers.map((answer) => answer.name),
    txt: txt ? Buffer.concat(txt.data.map((part) => Buffer.from(part))).toString('utf8') : null
  }
}

const commands = { put, get }

async function main () {
  const options = parseArgs(process.argv.slice(2))
  const command = commands[options.command]
  if (!command) throw new Error(`unknown command ${options.command}; use put or get`)
  process.stdout.write(JSON.stringify(await command(options)) + '\n')
}

main().catch((error) => {
  process.stdout.write(JSON.stringify({ ok: false, error: String(error && error.message ? error.message : error) }) + '\n')
  process.exit(1)
})
