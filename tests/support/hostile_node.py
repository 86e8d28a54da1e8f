"""A DHT node of our own that lies about BEP 44 items, for hostile-peer tests.

`HostileNode` speaks just enough KRPC (BEP 5) over UDP to join a local swarm
and be asked for items: it answers `ping`, `find_node`, `get_peers`,
`announce_peer`, `get` and `put` (BEP 44). For each public key it is armed
against, it answers `get` with a chosen `Misbehaviour`; every `put` it
"accepts" without storing anything, but keeps a copy of what it was sent, so
it can later replay an old, genuinely signed item.
"""

from __future__ import annotations

import enum
import hashlib
import ipaddress
import os
import socket
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass

import libtorrent as lt
import nacl.signing

from cclink.net.endpoints import Network

HOST = "127.0.0.1"
ID_SIZE = 20
MAX_NODES = 8  # K in BEP 5: how many contacts a reply lists
MAX_ITEM_SIZE = 1000  # BEP 44's limit on a bencoded v
ERROR_METHOD_UNKNOWN = 204


class Misbehaviour(enum.Enum):
    """How the node answers a `get` for the public key it is armed against."""

    EMPTY = "empty"  # a token and contacts but no item: an ordinary node that holds nothing
    FORGED_SIGNATURE = "forged-signature"  # an old record, seq above the newest, signed by another key
    HIGHER_SEQ_BAD_SIGNATURE = "higher-seq-bad-signature"  # an old record, seq above the newest, the newest's signature
    OVERSIZED_VALUE = (
        "oversized-value"  # an old record padded past 1000 bytes, seq above the newest, signed by another key
    )
    GARBAGE = "garbage"  # bytes that are not bencoding at all
    STALE = "stale"  # the oldest genuinely signed item it captured, replayed unchanged
    LATE_NEWEST = "late-newest"  # the newest genuine item it holds, but each querier's first get is lost


@dataclass(frozen=True)
class Item:
    """A BEP 44 mutable item as it travels in a `put` or a `get` reply (empty salt)."""

    public_key: bytes
    seq: int
    signature: bytes
    value: bytes  # the bencoded v, exactly the bytes the signature covers

    def signable(self) -> bytes:
        return b"3:seqi%de1:v" % self.seq + self.value


def item_target(public_key: bytes) -> bytes:
    """The DHT key a mutable item with no salt is stored under."""
    return hashlib.sha1(public_key).digest()


def bencoded_string(data: bytes) -> bytes:
    return b"%d:" % len(data) + data


def _distance(a: bytes, b: bytes) -> int:
    return int.from_bytes(a, "big") ^ int.from_bytes(b, "big")


def _compact_node(node_id: bytes, address: tuple[str, int]) -> bytes:
    """BEP 5 compact node info: id, IPv4 address, port."""
    return node_id + socket.inet_aton(address[0]) + struct.pack("!H", address[1])


class HostileNode:
    """A KRPC node on 127.0.0.1 in a background thread. Use as a context manager."""

    def __init__(self, node_id: bytes | None = None) -> None:
        self.node_id = node_id or os.urandom(ID_SIZE)
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._socket.bind((HOST, 0))
        self._socket.settimeout(0.1)  # how often the loop looks at the stop flag
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name=f"hostile-node-{self.port}", daemon=True)
        self._lock = threading.Lock()
        self._contact_added = threading.Condition(self._lock)
        self._contacts: dict[tuple[str, int], bytes] = {}  # address -> node id of peers that queried us
        self._captured: dict[bytes, list[Item]] = {}  # target -> puts received, oldest first
        self._armed: dict[bytes, tuple[bytes, Misbehaviour]] = {}  # target -> (public key, misbehaviour)
        self._gets: Counter[tuple[bytes, str]] = Counter()  # (target, querier's IP) -> gets since armed
        self._puts: Counter[bytes] = Counter()  # target -> mutable-item puts received, repeats included
        self._forger = nacl.signing.SigningKey.generate()  # "its own" key, which is nobody's identity
        self.errors: list[str] = []  # inbound packets it could not handle, for tests to inspect

    # --- lifecycle ------------------------------------------------------------------

    def __enter__(self) -> HostileNode:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._socket.close()

    @property
    def port(self) -> int:
        return self._socket.getsockname()[1]

    @property
    def address(self) -> tuple[str, int]:
        return (HOST, self.port)

    @property
    def network(self) -> Network:
        """The test network that starts from this node alone."""
        return Network((self.address,), test=True)

    # --- joining a swarm -------------------------------------------------------------

    def join(self, ports: list[int], timeout: float = 30) -> None:
        """Query every node at ports until each has queried us back, i.e. holds us as a confirmed contact.

        A libtorrent node only lists contacts that answered one of its own
        queries; it makes that query soon after it first hears from us.
        """
        wanted = {(HOST, port) for port in ports}
        deadline = time.monotonic() + timeout
        while missing := wanted - self.contacts():
            if time.monotonic() > deadline:
                raise TimeoutError(f"DHT nodes on ports {sorted(p for _, p in missing)} never queried the hostile node")
            for address in missing:
                self._query(address, "find_node", {b"target": self.node_id})
            with self._contact_added:
                # Woken by each new contact; the timeout only paces resends to nodes that lost our query.
                self._contact_added.wait_for(lambda: not wanted - set(self._contacts), timeout=1)

    def meet(self, other: HostileNode) -> None:
        """List `other` among our contacts, as if it had queried us."""
        with self._lock:
            self._contacts[other.address] = other.node_id

    def contacts(self) -> set[tuple[str, int]]:
        with self._lock:
            return set(self._contacts)

    # --- what the tests set and read ----------------------------------------------------

    def arm(self, public_key: bytes, misbehaviour: Misbehaviour) -> None:
        """Answer `get` for public_key's item with misbehaviour from now on; reset its query count."""
        target = item_target(public_key)
        with self._lock:
            self._armed[target] = (public_key, misbehaviour)
            for key in [key for key in self._gets if key[0] == target]:
                del self._gets[key]

    def gets_received(self, public_key: bytes, from_ip: str | None = None) -> int:
        """`get` queries for public_key's item since it was armed (from one IP, or from anywhere)."""
        target = item_target(public_key)
        with self._lock:
            return sum(n for (t, ip), n in self._gets.items() if t == target and from_ip in (None, ip))

    def puts_received(self, public_key: bytes) -> int:
        """`put` queries for public_key's item so far, each repeat counted (captured() counts each item once)."""
        with self._lock:
            return self._puts[item_target(public_key)]

    def remember(self, item: Item) -> None:
        """Keep item as if it had been `put` to us: how a node that never met the publisher gets one to replay."""
        with self._lock:
            self._captured.setdefault(item_target(item.public_key), []).append(item)

    def captured(self, public_key: bytes) -> list[Item]:
        """Distinct items `put` to us under public_key, oldest first (we claimed to store them; we did not).

        A publisher may send one item several times (cclink runs parallel puts
        and re-puts); each counts once.
        """
        with self._lock:
            items = list(self._captured.get(item_target(public_key), []))
        distinct: dict[tuple[int, bytes], Item] = {}
        for item in items:
            distinct.setdefault((item.seq, item.value), item)
        return list(distinct.values())

    # --- the KRPC loop -------------------------------------------------------------------

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                packet, sender = self._socket.recvfrom(65536)
            except TimeoutError:
                continue
            except OSError:
                return  # the socket was closed under us by stop()
            try:
                reply = self._handle(packet, sender)
            except Exception as error:  # noqa: BLE001 - a test node must survive any packet
                with self._lock:
                    self.errors.append(f"{type(error).__name__}: {error} (from {sender}, {packet[:60]!r})")
                continue
            if reply is not None:
                self._socket.sendto(reply, sender)

    def _handle(self, packet: bytes, sender: tuple[str, int]) -> bytes | None:
        try:
            message = lt.bdecode(packet)
        except RuntimeError:
            return None  # not bencoding: no query to answer
        if not isinstance(message, dict) or message.get(b"y") != b"q":
            return None  # replies to our own join queries, or noise: nothing to answer
        transaction = message.get(b"t", b"")
        args = message.get(b"a")
        args = args if isinstance(args, dict) else {}
        querier = args.get(b"id", b"")
        if len(querier) == ID_SIZE and not message.get(b"ro") and sender[0] == HOST:
            # A full node of the swarm (commands are read-only and live elsewhere).
            with self._contact_added:
                self._contacts[sender] = querier
                self._contact_added.notify_all()
        method = message.get(b"q", b"").decode("ascii", "replace")
        if method == "get":
            return self._answer_get(transaction, args, sender)
        body = {b"id": self.node_id}
        if method == "ping" or method == "announce_peer":
            pass
        elif method == "find_node":
            body[b"nodes"] = self._nodes_near(args.get(b"target", self.node_id))
        elif method == "get_peers":
            body[b"nodes"] = self._nodes_near(args.get(b"info_hash", self.node_id))
            body[b"token"] = self._token(sender)
        elif method == "put":
            self._capture(args)  # and claim success without storing anything
        else:
            return lt.bencode({b"t": transaction, b"y": b"e", b"e": [ERROR_METHOD_UNKNOWN, b"Method Unknown"]})
        return lt.bencode({b"t": transaction, b"y": b"r", b"r": body})

    def _answer_get(self, transaction: bytes, args: dict, sender: tuple[str, int]) -> bytes | None:
        target = args.get(b"target", b"")
        with self._lock:
            public_key, misbehaviour = self._armed.get(target, (b"", Misbehaviour.EMPTY))
            if public_key:
                self._gets[(target, sender[0])] += 1
            first_from_sender = self._gets[(target, sender[0])] == 1
        if misbehaviour is Misbehaviour.LATE_NEWEST and first_from_sender:
            return None  # as if lost on the way: the lookup waits and goes on without us
        if misbehaviour is Misbehaviour.GARBAGE:
            return b"\xff\x00 this is not bencoding " + os.urandom(16)
        body = {b"id": self.node_id, b"token": self._token(sender), b"nodes": self._nodes_near(target)}
        item = self._misbehaving_item(public_key, misbehaviour)
        if item is not None:
            # Bencoding is canonical, so v re-encodes to exactly the bytes signed.
            body.update({b"k": item.public_key, b"seq": item.seq, b"sig": item.signature, b"v": lt.bdecode(item.value)})
        return lt.bencode({b"t": transaction, b"y": b"r", b"r": body})

    def _misbehaving_item(self, public_key: bytes, misbehaviour: Misbehaviour) -> Item | None:
        """The item served under public_key, or None for no item at all.

        The lies carry the oldest record it captured, a well-formed one, so a
        client that skipped a check would visibly take it.
        """
        captured = self.captured(public_key)
        if misbehaviour is Misbehaviour.EMPTY:
            return None
        if misbehaviour is Misbehaviour.STALE:
            return captured[0] if captured else None
        if misbehaviour is Misbehaviour.LATE_NEWEST:
            return max(captured, key=lambda item: item.seq) if captured else None
        seq = max((item.seq for item in captured), default=0) + 1
        decoy = captured[0].value if captured else bencoded_string(b"a record of the attacker's choosing")
        if misbehaviour is Misbehaviour.HIGHER_SEQ_BAD_SIGNATURE:
            signature = captured[-1].signature if captured else os.urandom(64)
            return Item(public_key, seq, signature, decoy)
        if misbehaviour is Misbehaviour.FORGED_SIGNATURE:
            return self._forge(public_key, seq, decoy)
        if misbehaviour is Misbehaviour.OVERSIZED_VALUE:
            # Just over the limit: a reply that still fits libtorrent's 1500-byte receive buffer.
            padded = lt.bdecode(decoy).ljust(MAX_ITEM_SIZE + 1, b"\0")
            return self._forge(public_key, seq, bencoded_string(padded))
        raise AssertionError(f"unhandled misbehaviour {misbehaviour}")

    def _forge(self, public_key: bytes, seq: int, value: bytes) -> Item:
        """An item claiming public_key, signed (validly) by our own key instead."""
        unsigned = Item(public_key, seq, b"", value)
        return Item(public_key, seq, self._forger.sign(unsigned.signable()).signature, value)

    def _capture(self, args: dict) -> None:
        public_key, signature, seq = args.get(b"k"), args.get(b"sig"), args.get(b"seq")
        if not (isinstance(public_key, bytes) and isinstance(signature, bytes) and isinstance(seq, int)):
            return  # an immutable item: not what we are after
        with self._lock:
            self._puts[item_target(public_key)] += 1
        self.remember(Item(public_key, seq, signature, lt.bencode(args.get(b"v"))))

    # --- helpers -----------------------------------------------------------------------

    def _nodes_near(self, target: bytes) -> bytes:
        """Compact contacts closest to target: ourselves and the swarm nodes we know."""
        with self._lock:
            known = dict(self._contacts)
        known[self.address] = self.node_id
        closest = sorted(known.items(), key=lambda entry: _distance(entry[1], target.ljust(ID_SIZE, b"\0")[:ID_SIZE]))
        return b"".join(_compact_node(node_id, address) for address, node_id in closest[:MAX_NODES])

    def _token(self, sender: tuple[str, int]) -> bytes:
        return hashlib.sha1(self.node_id + ipaddress.ip_address(sender[0]).packed).digest()[:8]

    def _query(self, address: tuple[str, int], method: str, args: dict) -> None:
        query = {b"t": os.urandom(2), b"y": b"q", b"q": method.encode(), b"a": {b"id": self.node_id, **args}}
        try:
            self._socket.sendto(lt.bencode(query), address)
        except OSError:
            pass  # a node that is gone is simply not joined; join() reports it
