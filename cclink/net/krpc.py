"""KRPC (BEP 5) as bytes: the queries cclink sends for BEP 44 mutable items, the replies it reads (docs/wire.md §7).

Bencoding is libtorrent's (`lt.bencode`, `lt.bdecode`). Everything a node
sends back is untrusted: `parse_reply` turns any datagram into a `Reply` or
None, and an item in a reply is only a claim until its signature is checked
(which is done above, where keys mean something).
"""

from __future__ import annotations

import hashlib
import ipaddress
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

import libtorrent as lt

from cclink.net.endpoints import Endpoint

if TYPE_CHECKING:
    from libtorrent import _Entry as Bencoded  # what lt.bencode takes (a name in libtorrent's stubs only)

ID_SIZE = 20
SIGNATURE_SIZE = 64
MAX_VALUE_SIZE = 1000  # BEP 44's limit on v
MAX_SEQ = 2**63  # libtorrent keeps seq in a signed 64-bit integer
# BEP 5 nodes list 8 contacts. A reply may hold thousands; a lookup keeps
# every contact it reads and sorts them all at each step, so it reads no more
# (per family: nodes and BEP 32's nodes6 are read alike).
MAX_CONTACTS = 8
# Nodes echo back a token of their own choosing: a few bytes, a hash at most.
MAX_TOKEN_SIZE = 64
_COMPACT_NODE = struct.Struct("!20s4sH")  # BEP 5 compact node info, IPv4
_COMPACT_NODE6 = struct.Struct("!20s16sH")  # BEP 32 compact node info, IPv6
# BEP 32: a query's `want` asks for the contacts of either family, or both, whatever it arrived over.
WANT_BOTH = (b"n4", b"n6")
# BEP 44 errors a node answers a put with when it holds a newer item.
ERROR_CAS_MISMATCH = 301
ERROR_SEQ_TOO_OLD = 302


@dataclass(frozen=True)
class Contact:
    """A node as another node described it."""

    node_id: bytes
    address: Endpoint


@dataclass(frozen=True)
class Item:
    """A mutable item as a node returned it: not yet verified."""

    seq: int
    signature: bytes
    value: bytes


@dataclass(frozen=True)
class Reply:
    """What cclink reads from a response ("r") or an error ("e")."""

    transaction: bytes
    node_id: bytes | None = None
    token: bytes | None = None
    nodes: tuple[Contact, ...] = ()
    item: Item | None = None
    error: int | None = None


def stored_size(value: bytes) -> int:
    """The size BEP 44 nodes hold to MAX_VALUE_SIZE: v as bencoded, length prefix included."""
    return len(b"%d:" % len(value)) + len(value)


def target_of(public_key: bytes) -> bytes:
    """The DHT key a mutable item with no salt is stored under."""
    return hashlib.sha1(public_key).digest()


def get_query(transaction: bytes, node_id: bytes, target: bytes, want: tuple[bytes, ...] = ()) -> bytes:
    """A get; want (WANT_BOTH on a dual-stack client) asks for contacts of both families."""
    return _query(transaction, b"get", _lookup_arguments(node_id, target, want))


def find_node_query(transaction: bytes, node_id: bytes, target: bytes, want: tuple[bytes, ...] = ()) -> bytes:
    return _query(transaction, b"find_node", _lookup_arguments(node_id, target, want))


def _lookup_arguments(node_id: bytes, target: bytes, want: tuple[bytes, ...]) -> dict[bytes, Bencoded]:
    arguments: dict[bytes, Bencoded] = {b"id": node_id, b"target": target}
    if want:
        # Without it a node answers with contacts of the family the query came over (BEP 32).
        arguments[b"want"] = list(want)
    return arguments


def put_query(transaction: bytes, node_id: bytes, token: bytes, public_key: bytes, item: Item) -> bytes:
    arguments: dict[bytes, Bencoded] = {
        b"id": node_id,
        b"token": token,
        b"k": public_key,
        b"seq": item.seq,
        b"sig": item.signature,
        b"v": item.value,
    }
    return _query(transaction, b"put", arguments)


def _query(transaction: bytes, method: bytes, arguments: dict[bytes, Bencoded]) -> bytes:
    # "ro": a read-only node (BEP 43). A command lives for seconds; in other
    # nodes' routing tables it would soon be a dead entry.
    query: dict[bytes, Bencoded] = {b"t": transaction, b"y": b"q", b"q": method, b"a": arguments, b"ro": 1}
    return lt.bencode(query)


def parse_reply(datagram: bytes, public_key: bytes) -> Reply | None:
    """The reply in datagram, or None when it is not one (a query, noise, broken bencoding).

    An item is read only when it is for public_key and well formed.
    """
    try:
        message = _dictionary(lt.bdecode(datagram))
    except RuntimeError:
        return None
    transaction = message.get(b"t") if message is not None else None
    if message is None or not isinstance(transaction, bytes):
        return None
    kind = message.get(b"y")
    if kind == b"e":
        return Reply(transaction, error=_error_code(message.get(b"e")))
    body = _dictionary(message.get(b"r"))
    if kind != b"r" or body is None:
        return None
    node_id = body.get(b"id")
    token = body.get(b"token")
    return Reply(
        transaction,
        node_id=node_id if isinstance(node_id, bytes) and len(node_id) == ID_SIZE else None,
        token=token if isinstance(token, bytes) and 0 < len(token) <= MAX_TOKEN_SIZE else None,
        nodes=_contacts(body.get(b"nodes"), _COMPACT_NODE) + _contacts(body.get(b"nodes6"), _COMPACT_NODE6),
        item=_item(body, public_key),
    )


def _dictionary(entry: object) -> dict[bytes, object] | None:
    """entry if it is a bencoded dictionary (lt.bdecode gives every key as bytes), else None.

    Its values are unchecked.
    """
    return entry if isinstance(entry, dict) else None


def _error_code(error: object) -> int:
    if isinstance(error, list) and error and isinstance(error[0], int):
        return error[0]
    return 0


def _contacts(nodes: object, compact: struct.Struct) -> tuple[Contact, ...]:
    """The first MAX_CONTACTS usable contacts in a compact node list (IPv4's or IPv6's layout)."""
    if not isinstance(nodes, bytes):
        return ()
    whole = len(nodes) - len(nodes) % compact.size
    contacts: list[Contact] = []
    for node_id, ip, port in compact.iter_unpack(nodes[:whole]):
        if len(contacts) == MAX_CONTACTS:
            break
        if port:
            # str() of an address object is its one canonical text, the form replies' senders come in.
            contacts.append(Contact(node_id, (str(ipaddress.ip_address(ip)), port)))
    return tuple(contacts)


def _item(body: dict[bytes, object], public_key: bytes) -> Item | None:
    seq, signature, value = body.get(b"seq"), body.get(b"sig"), body.get(b"v")
    if body.get(b"k") != public_key or not isinstance(seq, int) or not 0 <= seq < MAX_SEQ:
        return None
    if not isinstance(signature, bytes) or len(signature) != SIGNATURE_SIZE:
        return None
    # cclink's values are DNS messages: a bencoded string, never a list or a number.
    if not isinstance(value, bytes) or len(value) > MAX_VALUE_SIZE:
        return None
    return Item(seq, signature, value)
