"""One node of the lab: what it answers to a KRPC query (BEP 5), and the BEP 44 mutable items it keeps.

`LabNode.answer` turns a datagram into a reply, or into nothing; it knows
no sockets, no delays and no loss (the loop adds those). Lab nodes never
ask anything themselves, so every datagram they get is a query or noise.

Queries answered: ping, find_node, get_peers and announce_peer (BEP 5;
peers announced are kept and handed out), get and put of mutable items
(BEP 44: a token bound to the querier's IP, signatures checked, seq and cas
rules, v at most 1000 bytes bencoded, salt at most 64 bytes). Immutable
items are refused, as is any other method.
"""

from __future__ import annotations

import hashlib
import socket
import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeGuard, cast

import libtorrent as lt
import nacl.exceptions
import nacl.signing

from cclink.dev.dhtlab.tables import ID_BITS, K, Peer, RoutingTable
from cclink.net.endpoints import Endpoint

if TYPE_CHECKING:
    from libtorrent import _Entry as Bencoded  # what lt.bencode takes (a name in libtorrent's stubs only)

ID_SIZE = ID_BITS // 8
PUBLIC_KEY_SIZE = 32
SIGNATURE_SIZE = 64
MAX_VALUE_SIZE = 1000  # BEP 44: v as bencoded
MAX_SALT_SIZE = 64
TOKEN_SIZE = 8
# KRPC error codes (BEP 5, BEP 44), with the words libtorrent sends.
PROTOCOL_ERROR = 203
METHOD_UNKNOWN = 204
VALUE_TOO_BIG = 205
INVALID_SIGNATURE = 206
SALT_TOO_BIG = 207
CAS_MISMATCH = 301
SEQ_TOO_OLD = 302

Arguments = dict[bytes, object]  # a query's "a", as lt.bdecode made it: nothing checked yet
Body = dict[bytes, "Bencoded"]  # a reply's "r"


@dataclass(frozen=True)
class Refusal:
    """A KRPC error reply: its code and message."""

    code: int
    message: str


@dataclass(frozen=True)
class Answer:
    """What a node made of a datagram: the method asked (for the statistics) and the reply to send, if any."""

    method: str  # a query's method, "unknown" for one it does not know, "noise" for no query at all
    reply: bytes | None = None
    error: int | None = None


@dataclass
class StoredItem:
    """A BEP 44 mutable item as a node keeps it."""

    public_key: bytes
    salt: bytes
    seq: int
    signature: bytes
    value: Bencoded  # v, decoded; bencoding is canonical, so it encodes back to the bytes signed
    stored_at: float  # on the lab's clock: when it was put, or put again unchanged


def signable(salt: bytes, seq: int, value: bytes) -> bytes:
    """What a BEP 44 mutable item's signature covers; value is v bencoded."""
    salted = b"4:salt%d:%s" % (len(salt), salt) if salt else b""
    return salted + b"3:seqi%de1:v" % seq + value


def mutable_target(public_key: bytes, salt: bytes = b"") -> bytes:
    """The DHT key a mutable item is stored under."""
    return hashlib.sha1(public_key + salt).digest()


@dataclass(eq=False)
class LabNode:
    """A live node: its place in the DHT (peer, table), its round trip, and what it stores."""

    peer: Peer
    table: RoutingTable
    secret: bytes  # for its tokens
    rtt: float  # seconds a reply waits before it leaves
    item_lifetime: float | None = None  # seconds on the lab's clock, None for as long as the node lives
    items: dict[bytes, StoredItem] = field(default_factory=dict)  # target -> item
    announced: dict[bytes, set[bytes]] = field(default_factory=dict)  # info hash -> compact peers

    @property
    def address(self) -> Endpoint:
        return self.peer.address

    def item(self, target: bytes, now: float) -> StoredItem | None:
        """The item held under target, unless its lifetime has run out (it is then dropped)."""
        item = self.items.get(target)
        if item is not None and self.item_lifetime is not None and now - item.stored_at > self.item_lifetime:
            del self.items[target]
            return None
        return item

    def answer(self, datagram: bytes, sender: Endpoint, now: float) -> Answer:
        try:
            message = _dictionary(lt.bdecode(datagram))
        except RuntimeError:
            return Answer("noise")
        transaction = message.get(b"t") if message is not None else None
        if message is None or message.get(b"y") != b"q" or not isinstance(transaction, bytes):
            return Answer("noise")
        query, arguments = message.get(b"q"), _dictionary(message.get(b"a"))
        method = query.decode("ascii", "replace") if isinstance(query, bytes) else "unknown"
        handler = _HANDLERS.get(method)
        result: Body | Refusal
        if handler is None:
            method, result = "unknown", Refusal(METHOD_UNKNOWN, "Method Unknown")
        elif arguments is None or not _is_id(arguments.get(b"id")):
            result = Refusal(PROTOCOL_ERROR, "Protocol Error")
        else:
            result = handler(self, arguments, sender, now)
        if isinstance(result, Refusal):
            error: Body = {b"t": transaction, b"y": b"e", b"e": [result.code, result.message.encode()]}
            return Answer(method, lt.bencode(error), result.code)
        body: Body = {b"id": self.peer.node_id, **result}
        reply: Body = {b"t": transaction, b"y": b"r", b"r": body}
        return Answer(method, lt.bencode(reply))

    # --- the queries ---

    def _ping(self, arguments: Arguments, sender: Endpoint, now: float) -> Body | Refusal:
        return {}

    def _find_node(self, arguments: Arguments, sender: Endpoint, now: float) -> Body | Refusal:
        target = arguments.get(b"target")
        if not _is_id(target):
            return Refusal(PROTOCOL_ERROR, "Protocol Error")
        return {b"nodes": self._nodes_near(target)}

    def _get_peers(self, arguments: Arguments, sender: Endpoint, now: float) -> Body | Refusal:
        info_hash = arguments.get(b"info_hash")
        if not _is_id(info_hash):
            return Refusal(PROTOCOL_ERROR, "Protocol Error")
        body: Body = {b"token": self._token(sender), b"nodes": self._nodes_near(info_hash)}
        if peers := self.announced.get(info_hash):
            body[b"values"] = cast("Bencoded", sorted(peers))
        return body

    def _announce_peer(self, arguments: Arguments, sender: Endpoint, now: float) -> Body | Refusal:
        info_hash, port = arguments.get(b"info_hash"), arguments.get(b"port")
        if not _is_id(info_hash) or arguments.get(b"token") != self._token(sender):
            return Refusal(PROTOCOL_ERROR, "invalid token")
        if arguments.get(b"implied_port"):
            port = sender[1]
        if not isinstance(port, int) or not 0 < port < 65536:
            return Refusal(PROTOCOL_ERROR, "Protocol Error")
        self.announced.setdefault(info_hash, set()).add(socket.inet_aton(sender[0]) + struct.pack("!H", port))
        return {}

    def _get(self, arguments: Arguments, sender: Endpoint, now: float) -> Body | Refusal:
        target = arguments.get(b"target")
        if not _is_id(target):
            return Refusal(PROTOCOL_ERROR, "Protocol Error")
        body: Body = {b"token": self._token(sender), b"nodes": self._nodes_near(target)}
        item = self.item(target, now)
        newer_than = arguments.get(b"seq")  # BEP 44: the asker already has this seq
        if item is not None and not (isinstance(newer_than, int) and item.seq <= newer_than):
            body.update({b"k": item.public_key, b"seq": item.seq, b"sig": item.signature, b"v": item.value})
        return body

    def _put(self, arguments: Arguments, sender: Endpoint, now: float) -> Body | Refusal:
        if arguments.get(b"token") != self._token(sender):
            return Refusal(PROTOCOL_ERROR, "invalid token")
        public_key, signature, seq, salt = (arguments.get(key) for key in (b"k", b"sig", b"seq", b"salt"))
        if public_key is None and b"v" in arguments:
            return Refusal(PROTOCOL_ERROR, "immutable items are not kept in this lab")
        salt = b"" if salt is None else salt
        fields_ok = isinstance(public_key, bytes) and len(public_key) == PUBLIC_KEY_SIZE
        fields_ok = fields_ok and isinstance(signature, bytes) and len(signature) == SIGNATURE_SIZE
        if not fields_ok or not isinstance(seq, int) or seq < 0 or not isinstance(salt, bytes) or b"v" not in arguments:
            return Refusal(PROTOCOL_ERROR, "Protocol Error")
        assert isinstance(public_key, bytes) and isinstance(signature, bytes)  # checked just above, for mypy
        decoded = cast("Bencoded", arguments[b"v"])  # anything lt.bdecode made, lt.bencode takes back
        value = lt.bencode(decoded)
        if len(value) > MAX_VALUE_SIZE:
            return Refusal(VALUE_TOO_BIG, "message (v field) too big")
        if len(salt) > MAX_SALT_SIZE:
            return Refusal(SALT_TOO_BIG, "salt too big")
        if not _signature_holds(public_key, signature, signable(salt, seq, value)):
            return Refusal(INVALID_SIGNATURE, "invalid signature")
        target = mutable_target(public_key, salt)
        held = self.item(target, now)
        cas = arguments.get(b"cas")
        if held is not None and isinstance(cas, int) and cas != held.seq:
            return Refusal(CAS_MISMATCH, "CAS mismatch")
        if held is not None and (seq < held.seq or (seq == held.seq and lt.bencode(held.value) != value)):
            return Refusal(SEQ_TOO_OLD, "old sequence number")
        if held is not None and seq == held.seq:
            held.stored_at = now  # the same item again: BEP 44 says to keep it for longer
        else:
            self.items[target] = StoredItem(public_key, salt, seq, signature, decoded, now)
        return {}

    # --- helpers ---

    def _nodes_near(self, target: bytes) -> bytes:
        closest = self.table.closest(int.from_bytes(target, "big"), K)
        return b"".join(peer.compact for peer in closest)

    def _token(self, sender: Endpoint) -> bytes:
        """A token only the querier's IP address can use (BEP 5)."""
        return hashlib.sha1(self.secret + socket.inet_aton(sender[0])).digest()[:TOKEN_SIZE]


_HANDLERS = {
    "ping": LabNode._ping,
    "find_node": LabNode._find_node,
    "get_peers": LabNode._get_peers,
    "announce_peer": LabNode._announce_peer,
    "get": LabNode._get,
    "put": LabNode._put,
}


def _dictionary(entry: object) -> Arguments | None:
    """entry if it is a bencoded dictionary (lt.bdecode gives every key as bytes), else None."""
    return entry if isinstance(entry, dict) else None


def _is_id(value: object) -> TypeGuard[bytes]:
    return isinstance(value, bytes) and len(value) == ID_SIZE


def _signature_holds(public_key: bytes, signature: bytes, message: bytes) -> bool:
    try:
        nacl.signing.VerifyKey(public_key).verify(message, signature)
    except (nacl.exceptions.CryptoError, ValueError, TypeError):
        return False
    return True
