// What the pkarr-js scripts share: a pkarr DHT node bound and filtered as we say, and a SignedPacket
// holding a cclink handoff as the `_cclink` TXT record, as cclink writes it.

import dgram from 'node:dgram'
import fs from 'node:fs'

import { SignedPacket, generateKeyPair } from 'pkarr'
import DHT from 'pkarr/lib/dht.js'

export const LABEL = '_cclink'
const DNS_TTL = 86400
const CHUNK_SIZE = 254 // pkarr's (and cclink's) TXT character-string size

export function endpoint (text) {
  const at = text.lastIndexOf(':')
  return { host: text.slice(0, at), port: Number(text.slice(at + 1)) }
}

/** A pkarr DHT node bound where we say, that never queries the addresses in `skip`. */
export function openDht (options) {
  // Bound before pkarr sees it: loading the saved routing table already pings
  // nodes, which would bind an unbound socket to 0.0.0.0.
  const socket = dgram.createSocket('udp4')
  if (options.bind) socket.bind(0, options.bind)
  const dht = new DHT({
    bootstrap: options.bootstrap.split(',').map(endpoint),
    storageLocation: options.state,
    socket
  })
  const inner = dht._dht
  if (options.skip.length) {
    // Finished cclink and pkarr commands linger in the swarm's routing tables as
    // dead entries; each one met would cost a 2 s k-rpc timeout. cclink filters
    // them out of its lookups with an ip_filter; this is the same filter.
    const socket = inner._rpc.socket
    const query = socket.query.bind(socket)
    socket.query = (peer, message, callback) => {
      if (options.skip.includes(peer.host || peer.address)) {
        process.nextTick(() => callback && callback(new Error('skipped'), null, peer))
        return 0
      }
      return query(peer, message, callback)
    }
  }
  return dht
}

export function cclinkPacket (seedHex, txtFile, timestamp) {
  const keyPair = generateKeyPair(Buffer.from(seedHex, 'hex'))
  const txt = fs.readFileSync(txtFile)
  const chunks = []
  for (let i = 0; i < txt.length; i += CHUNK_SIZE) chunks.push(txt.subarray(i, i + CHUNK_SIZE))
  const packet = {
    id: 0,
    type: 'response',
    flags: 0,
    answers: [{ name: LABEL, type: 'TXT', class: 'IN', ttl: DNS_TTL, data: chunks }]
  }
  return SignedPacket.fromPacket(keyPair, packet, timestamp ? { timestamp } : {})
}
