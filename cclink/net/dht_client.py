"""BEP 44 mutable items on the DHT, got and put with cclink's own KRPC client (docs/wire.md §7).

libtorrent's Python binding offers a get and a put that end only once every
node their lookup asked has answered or, after 15 s, timed out, and a put
that chooses seq itself (the highest it saw + 1, so a lookup that missed the
newest item signs too low). A handoff needs neither wait. This walks the DHT
towards the key over one UDP socket, sends a lost query again after
RESEND_AFTER instead of waiting it out, and stops once the K closest nodes
that answer have answered. A get takes the newest item whose signature
verifies; a put signs seq = max(now in microseconds, that item's seq + 1), as
pkarr does, puts to those nodes and returns once ENOUGH_STORED acknowledged.
"""

from __future__ import annotations

import ipaddress
import os
import select
import socket
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from cclink.errors import NetworkError
from cclink.net import krpc
from cclink.net.endpoints import COMMAND_ADDRESS, Endpoint, is_loopback, is_private_swarm

K = 8  # BEP 5's bucket size: how many of the closest nodes a lookup hears and a put goes to
PARALLEL = 8  # lookup queries in flight at once
RESEND_AFTER = 0.5
SENDS = 3  # a node that answered none of 3 sends (1.5 s) is taken for gone
MAX_QUERIES = 256  # per lookup: a liar listing endless fake contacts costs at most this
ENOUGH_STORED = 3
ROUNDS = 3  # puts signed again when a node turned out to hold a newer item
RECEIVE_SIZE = 65536
# Datagrams read per wake-up: anyone can flood the socket, and the deadline is only checked between wake-ups.
MAX_DATAGRAMS_PER_WAKE = 64
TEST_SWARM_NODE_ID = b"cclink command node."  # 20 bytes; see _node_id

Verify = Callable[[krpc.Item], bool]  # whether an item's signature holds under the key looked up
Sign = Callable[[int], bytes]  # the signature of the value being put, at a seq


@dataclass(frozen=True)
class Stored:
    seq: int
    nodes: int


def get(bootstrap: Sequence[Endpoint], public_key: bytes, verify: Verify, *, timeout: float) -> krpc.Item | None:
    """The highest-seq item under public_key that verifies, or None when the closest nodes hold none.

    NetworkError when no node answered at all: "none" would then be a guess.
    """
    with _Wire(_local_address(bootstrap), _node_id(bootstrap), public_key) as wire:
        lookup = _walk(wire, bootstrap, public_key, verify, time.monotonic() + timeout)
    return lookup.newest


def put(
    bootstrap: Sequence[Endpoint],
    public_key: bytes,
    value: bytes,
    sign: Sign,
    verify: Verify,
    *,
    timeout: float,
    min_seq: int = 0,
) -> Stored:
    """Store value under public_key on the nodes closest to it, superseding whatever verifies there.

    The seq signed is at least min_seq: a caller that saw a higher seq than
    this lookup finds (one the nodes dropped) must still sign above it.
    """
    if krpc.stored_size(value) > krpc.MAX_VALUE_SIZE:
        # Nodes refuse it (error 205), each of them, after the whole lookup.
        raise NetworkError(
            f"a DHT item holds at most {krpc.MAX_VALUE_SIZE} bytes as bencoded, not {krpc.stored_size(value)}"
        )
    deadline = time.monotonic() + timeout
    with _Wire(_local_address(bootstrap), _node_id(bootstrap), public_key) as wire:
        lookup = _walk(wire, bootstrap, public_key, verify, deadline)
        closest = lookup.closest_with_tokens()
        stored = Stored(seq=0, nodes=0)
        for _ in range(ROUNDS):
            seq = max(time.time_ns() // 1000, lookup.newest_seq + 1, min_seq)
            item = krpc.Item(seq, sign(seq), value)
            stored = Stored(seq, _put_round(wire, lookup, closest, public_key, item, deadline))
            if lookup.newest_seq < seq or time.monotonic() >= deadline:
                break
    if stored.nodes == 0:
        raise NetworkError("no DHT node stored the record; check the network and try again")
    return stored


def put_again(
    bootstrap: Sequence[Endpoint], public_key: bytes, item: krpc.Item, verify: Verify, *, timeout: float
) -> Stored:
    """Put an item already signed, unchanged, to the nodes closest to public_key; Stored.nodes may be 0.

    Nodes that dropped it store it again, and a node holding a newer item
    refuses it: unlike put, this never supersedes anything.
    """
    deadline = time.monotonic() + timeout
    with _Wire(_local_address(bootstrap), _node_id(bootstrap), public_key) as wire:
        lookup = _walk(wire, bootstrap, public_key, verify, deadline)
        return Stored(item.seq, _put_round(wire, lookup, lookup.closest_with_tokens(), public_key, item, deadline))


def _walk(wire: _Wire, bootstrap: Sequence[Endpoint], public_key: bytes, verify: Verify, deadline: float) -> _Lookup:
    lookup = _Lookup(wire, krpc.target_of(public_key), verify, _contact_filter(bootstrap))
    lookup.run(_resolve(bootstrap), deadline)
    if not lookup.closest_with_tokens():
        raise NetworkError("no DHT node answered; check the network (or CCLINK_BOOTSTRAP) and try again")
    return lookup


# --- the socket ------------------------------------------------------------------------


@dataclass(eq=False)
class _Query:
    """One question to one node, sent again until answered or SENDS run out."""

    address: Endpoint
    build: Callable[[bytes], bytes]
    sends: int = 0
    due_at: float = 0.0
    reply: krpc.Reply | None = None
    transactions: list[bytes] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return self.reply is None and self.sends >= SENDS and time.monotonic() >= self.due_at

    @property
    def settled(self) -> bool:
        return self.reply is not None or self.failed


class _Wire:
    """A UDP socket that sends queries, resends the unanswered, and pairs replies with their queries."""

    def __init__(self, local_address: str, node_id: bytes, public_key: bytes) -> None:
        self.node_id = node_id
        self._public_key = public_key
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._socket.bind((local_address, 0))
        self._socket.setblocking(False)
        self._next_transaction = int.from_bytes(os.urandom(2), "big")
        self._waiting: dict[bytes, _Query] = {}

    def __enter__(self) -> _Wire:
        return self

    def __exit__(self, *_: object) -> None:
        self._socket.close()

    def ask(self, address: Endpoint, build: Callable[[bytes], bytes]) -> _Query:
        """Send a query now; build makes its datagram for a transaction id."""
        query = _Query(address, build)
        self._send(query)
        return query

    def exchange(self, until: float) -> list[_Query]:
        """Resend what is due, then wait until `until` or a reply; return the queries answered."""
        now = time.monotonic()
        for query in set(self._waiting.values()):
            if query.sends < SENDS and now >= query.due_at:
                self._send(query)
            elif query.failed:
                self._forget(query)
        wake = min([until, *(query.due_at for query in self._waiting.values())])
        readable, _, _ = select.select([self._socket], [], [], max(0.0, wake - time.monotonic()))
        return self._receive() if readable else []

    def _send(self, query: _Query) -> None:
        transaction = self._next_transaction.to_bytes(2, "big")
        self._next_transaction = (self._next_transaction + 1) % 65536
        query.transactions.append(transaction)
        self._waiting[transaction] = query
        query.sends += 1
        query.due_at = time.monotonic() + RESEND_AFTER
        try:
            self._socket.sendto(query.build(transaction), query.address)
        except OSError:
            pass  # unreachable from here: counts as a lost send

    def _receive(self) -> list[_Query]:
        answered: list[_Query] = []
        for _ in range(MAX_DATAGRAMS_PER_WAKE):
            try:
                datagram, sender = self._socket.recvfrom(RECEIVE_SIZE)
            except (BlockingIOError, InterruptedError):
                return answered
            except OSError:
                continue  # an ICMP error surfacing from an earlier send
            reply = krpc.parse_reply(datagram, self._public_key)
            query = self._waiting.get(reply.transaction) if reply else None
            # A reply must come from where its query went: anyone can guess a transaction id.
            if query is None or query.reply is not None or sender[:2] != query.address:
                continue
            query.reply = reply
            self._forget(query)
            answered.append(query)
        return answered

    def _forget(self, query: _Query) -> None:
        for transaction in query.transactions:
            self._waiting.pop(transaction, None)


# --- finding the closest nodes ------------------------------------------------------------


@dataclass(eq=False)
class _Node:
    address: Endpoint
    distance: int | None = None  # None until its id is known
    query: _Query | None = None
    token: bytes | None = None

    @property
    def answered(self) -> bool:
        """It answered the lookup (an error, from a node that does not know `get`, is no answer)."""
        return self.query is not None and self.query.reply is not None and self.query.reply.error is None

    @property
    def unsettled(self) -> bool:
        return self.query is None or not self.query.settled


class _Lookup:
    """A walk through the DHT towards target, collecting the closest nodes' tokens and the newest verified item."""

    def __init__(self, wire: _Wire, target: bytes, verify: Verify, accept: Callable[[Endpoint], bool]) -> None:
        self._wire = wire
        self._target = target
        self._verify = verify
        self._accept = accept
        self._nodes: dict[Endpoint, _Node] = {}
        self._seeds: list[_Query] = []
        self._asked = 0
        self.newest: krpc.Item | None = None

    @property
    def newest_seq(self) -> int:
        return self.newest.seq if self.newest is not None else -1

    def run(self, seeds: Iterable[Endpoint], deadline: float) -> None:
        for address in seeds:
            self._ask_seed(address)
        while not self._done() and time.monotonic() < deadline:
            self._ask_closest()
            for query in self._wire.exchange(deadline):
                self.learn(query)

    def ask_get(self, address: Endpoint) -> _Query:
        """Send one node a get for the target."""
        return self._wire.ask(address, lambda t: krpc.get_query(t, self._wire.node_id, self._target))

    def learn(self, query: _Query) -> None:
        """Take in a get or find_node reply: the node's id and token, its contacts, its item."""
        reply = query.reply
        node = self._nodes.get(query.address)
        if reply is None or reply.node_id is None:
            return
        if node is None:
            node = self._nodes[query.address] = _Node(query.address)
        node.distance = self._distance(reply.node_id)
        node.query = node.query or query
        node.token = reply.token or node.token
        for contact in reply.nodes:
            if contact.node_id == self._wire.node_id:
                continue  # ourselves, or on a test swarm another command, most likely ended (see _node_id)
            if contact.address not in self._nodes and self._accept(contact.address):
                self._nodes[contact.address] = _Node(contact.address, self._distance(contact.node_id))
        if reply.item is not None and reply.item.seq > self.newest_seq and self._verify(reply.item):
            self.newest = reply.item

    def closest_with_tokens(self) -> list[_Node]:
        return [node for node in self._by_distance() if node.answered and node.token][:K]

    def _ask_seed(self, address: Endpoint) -> None:
        # A seed's id is unknown until it answers. A bootstrap router may not
        # know `get`, so it is also asked for nodes the way every node knows.
        node_id = self._wire.node_id
        self._nodes.setdefault(address, _Node(address)).query = self._wire.ask(
            address, lambda t: krpc.get_query(t, node_id, self._target)
        )
        self._seeds.append(self._wire.ask(address, lambda t: krpc.find_node_query(t, node_id, self._target)))

    def _ask_closest(self) -> None:
        in_flight = sum(1 for node in self._nodes.values() if node.query is not None and not node.query.settled)
        for node in self._by_distance():
            if in_flight >= PARALLEL or self._asked >= MAX_QUERIES:
                return
            if node.query is None:
                node.query = self.ask_get(node.address)
                self._asked += 1
                in_flight += 1

    def _done(self) -> bool:
        """Every node closer than the K-th closest that answered has answered or is gone."""
        self._seeds = [seed for seed in self._seeds if not seed.settled]
        answered = 0
        for node in self._by_distance():
            if node.answered:
                answered += 1
                if answered == K:
                    return True
            elif node.unsettled and (node.query is not None or self._asked < MAX_QUERIES):
                return False
        # Fewer than K nodes answered: done when nothing is left to ask or hear.
        return not self._seeds and not any(node.query is not None and node.unsettled for node in self._nodes.values())

    def _by_distance(self) -> list[_Node]:
        known = [(node.distance, node) for node in self._nodes.values() if node.distance is not None]
        return [node for _, node in sorted(known, key=lambda pair: pair[0])]

    def _distance(self, node_id: bytes) -> int:
        return int.from_bytes(node_id, "big") ^ int.from_bytes(self._target, "big")


# --- storing -------------------------------------------------------------------------------


def _put_round(
    wire: _Wire, lookup: _Lookup, closest: list[_Node], public_key: bytes, item: krpc.Item, deadline: float
) -> int:
    """Put item to the closest nodes; return how many stored it.

    Returns once every put has been answered or given up, or once
    ENOUGH_STORED nodes stored it and the rest have had one resend. A node
    that refuses the put because it holds a newer item is asked for that item,
    so that the caller can sign above it.
    """
    started = time.monotonic()
    puts = [wire.ask(node.address, _put_builder(wire.node_id, node.token, public_key, item)) for node in closest]
    checks: list[_Query] = []
    while time.monotonic() < deadline:
        unsettled = [query for query in puts + checks if not query.settled]
        if not unsettled or (_acknowledged(puts) >= ENOUGH_STORED and time.monotonic() >= started + RESEND_AFTER):
            break
        for query in wire.exchange(deadline):
            if query in checks:
                lookup.learn(query)
            elif query.reply is not None and query.reply.error in (krpc.ERROR_SEQ_TOO_OLD, krpc.ERROR_CAS_MISMATCH):
                checks.append(lookup.ask_get(query.address))
    return _acknowledged(puts)


def _acknowledged(puts: list[_Query]) -> int:
    return sum(1 for query in puts if query.reply is not None and query.reply.error is None)


def _put_builder(node_id: bytes, token: bytes | None, public_key: bytes, item: krpc.Item) -> Callable[[bytes], bytes]:
    return lambda transaction: krpc.put_query(transaction, node_id, token or b"", public_key, item)


# --- where to start and whom to believe ------------------------------------------------------


def _resolve(bootstrap: Sequence[Endpoint]) -> list[Endpoint]:
    """The bootstrap endpoints as IPv4 addresses (host names looked up; those that fail are skipped)."""
    seeds: list[Endpoint] = []
    for host, port in bootstrap:
        try:
            found = socket.getaddrinfo(host, port, socket.AF_INET, socket.SOCK_DGRAM)
        except (OSError, UnicodeError):
            continue
        for *_, sockaddr in found[:1]:
            address, found_port = sockaddr[0], sockaddr[1]
            assert isinstance(address, str) and isinstance(found_port, int)  # an AF_INET sockaddr is (address, port)
            seeds.append((address, found_port))
    if not seeds:
        raise NetworkError(
            "none of the DHT bootstrap nodes could be found; check the network (or CCLINK_BOOTSTRAP) and try again"
        )
    return seeds


def _local_address(bootstrap: Sequence[Endpoint]) -> str:
    # On a swarm on this machine, commands talk from their own address (see dht.COMMAND_ADDRESS).
    return COMMAND_ADDRESS if is_loopback(bootstrap) else "0.0.0.0"


def _node_id(bootstrap: Sequence[Endpoint]) -> bytes:
    """A random id, except on a test swarm, where every command uses the same one.

    A libtorrent node files whoever put an item with a valid token in its
    routing table, read-only or not. On a test swarm every publish would then
    leave a dead entry behind, and after a few hundred of them the nodes'
    contact lists name hardly anyone alive. libtorrent keeps the first
    address it saw for an id, so with one id they hold at most one such entry,
    and lookups pass over contacts with that id.
    """
    return TEST_SWARM_NODE_ID if is_private_swarm(bootstrap) else os.urandom(krpc.ID_SIZE)


def _contact_filter(bootstrap: Sequence[Endpoint]) -> Callable[[Endpoint], bool]:
    """Which contacts a node names are worth asking.

    On the public DHT only public addresses (a liar's list must not point us
    at a private network); on a test swarm its own addresses, but never
    another command's.
    """
    if is_loopback(bootstrap):
        return lambda address: address[0] != COMMAND_ADDRESS
    if is_private_swarm(bootstrap):
        return lambda address: True
    return lambda address: ipaddress.IPv4Address(address[0]).is_global
