"""BEP 44 mutable items on the DHT, got and put with cclink's own KRPC client (docs/wire.md §7).

libtorrent's Python binding offers a get and a put that end only once every
node their lookup asked has answered or, after 15 s, timed out, and a put
that chooses seq itself (the highest it saw + 1, so a lookup that missed the
newest item signs too low). A handoff needs neither wait. This walks the DHT
towards the key over one UDP socket per address family the machine has
(IPv4 and IPv6, BEP 32: contacts of both take part in one lookup), starting from the contacts that
answered the last command (warm start) and the bootstrap nodes at once. Its
timeout follows the round trips it measures (a high quantile of them, with a
floor and a ceiling): a node late by that measure no longer holds up the
walk, and is given up after SENDS timeouts. A lookup ends once the closest
nodes that answer have answered and every node closer than them has
answered or been given up (docs/design.md, "When a lookup ends"). A get
takes the newest item whose signature verifies; a put signs
seq = max(now in microseconds, that item's seq + 1), as pkarr does, puts to
the STORE_ON closest nodes and returns once ENOUGH_STORED acknowledged and
the rest have answered or are late; those go on in a background thread for
as long as the process lives.
"""

from __future__ import annotations

import bisect
import errno
import hashlib
import ipaddress
import json
import math
import os
import selectors
import socket
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cclink.errors import NetworkError, NoNetwork
from cclink.local import files
from cclink.net import krpc
from cclink.net.endpoints import COMMAND_ADDRESS, COMMAND_ADDRESS6, Endpoint, Network, family_of

K = 8  # BEP 5's bucket size: how many of the closest nodes that answer a get hears before it ends
# A put's lookup hears this many and stores on them: pkarr's churn measurements kept every
# record stored on 20 nodes for a day, and far fewer stored on one.
STORE_ON = 20
# A put returns once this many stored it and every other put has answered or is late; the
# late ones go on in the background. Half of STORE_ON: any more and a publish waits on
# stragglers, whose puts mostly arrived (a node stores on receipt; its answer is what is
# late), any fewer and a publish that exits at once may leave a record a few departures
# from gone.
ENOUGH_STORED = 10
PARALLEL = 16  # lookup queries in flight at once, not counting the late ones; MAX_QUERIES bounds the total
SENDS = 3  # a node that answered none of 3 sends, each a timeout apart, is given up
MAX_QUERIES = 256  # per lookup, both families together: a liar listing endless fake contacts costs at most this
ROUNDS = 3  # puts signed again when a node turned out to hold a newer item
# Timeouts follow the round trips measured: the TIMEOUT_QUANTILE of those seen so far, bounded.
TIMEOUT_QUANTILE = 0.75  # most live nodes answer within it, and the rest within the SENDS x it before given up
INITIAL_TIMEOUT = 1.0  # before any reply: RFC 6298's initial RTO, long enough for any node worth asking
MIN_TIMEOUT = 0.05  # below this, the machine's own scheduling, not the node, decides who looks late
MAX_TIMEOUT = 1.0  # a node slower than this is of no use to a command that should end within seconds
MAX_BACKGROUND_PUTS = 4  # threads finishing puts after a put returned; beyond that, late puts are not resent
RECEIVE_SIZE = 65536
# Datagrams read per wake-up: anyone can flood the socket, and the deadline is only checked between wake-ups.
MAX_DATAGRAMS_PER_WAKE = 64
TEST_SWARM_NODE_ID = b"cclink command node."  # 20 bytes; see _node_id
# The contacts file (warm starts): the most recent contacts that answered, one file per network.
SAVED_CONTACTS = 64
CONTACTS_FILE_LIMIT = 16_384  # bytes; SAVED_CONTACTS entries in both lists take under half of it
CONTACTS_VERSION = 1
NO_NETWORK = "this machine has no IPv4 or IPv6 network to reach the DHT"

Verify = Callable[[krpc.Item], bool]  # whether an item's signature holds under the key looked up
Sign = Callable[[int], bytes]  # the signature of the value being put, at a seq

_background_puts = threading.BoundedSemaphore(MAX_BACKGROUND_PUTS)
# What a send fails with when this machine has no route for the address's family.
_NO_ROUTE = frozenset({errno.ENETUNREACH, errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT})


@dataclass(frozen=True)
class Stored:
    seq: int
    nodes: int  # how many nodes acknowledged the put by the time it returned
    relays: int = 0  # how many pkarr relays accepted it too (net/relays.py)


def get(network: Network, public_key: bytes, verify: Verify, *, timeout: float) -> krpc.Item | None:
    """The highest-seq item under public_key that verifies, or None when the closest nodes hold none.

    NetworkError when no node answered at all: "none" would then be a guess.
    """
    with _Wire(network, _node_id(network), public_key) as wire:
        lookup = _walk(wire, network, public_key, verify, time.monotonic() + timeout, K)
    return lookup.newest


def put(
    network: Network,
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
    with _Wire(network, _node_id(network), public_key) as wire:
        lookup = _walk(wire, network, public_key, verify, deadline, STORE_ON)
        closest = lookup.closest_with_tokens()
        stored, puts = Stored(seq=0, nodes=0), []
        for _ in range(ROUNDS):
            seq = max(time.time_ns() // 1000, lookup.newest_seq + 1, min_seq)
            item = krpc.Item(seq, sign(seq), value)
            puts = _put_round(wire, lookup, closest, public_key, item, deadline)
            stored = Stored(seq, _acknowledged(puts))
            if lookup.newest_seq < seq or time.monotonic() >= deadline:
                break
        _settle_in_background(wire, puts, deadline)
    if stored.nodes == 0:
        raise NetworkError("no DHT node stored the record; check the network and try again")
    return stored


def put_again(network: Network, public_key: bytes, item: krpc.Item, verify: Verify, *, timeout: float) -> Stored:
    """Put an item already signed, unchanged, to the nodes closest to public_key; Stored.nodes may be 0.

    Nodes that dropped it store it again, and a node holding a newer item
    refuses it: unlike put, this never supersedes anything.
    """
    deadline = time.monotonic() + timeout
    with _Wire(network, _node_id(network), public_key) as wire:
        lookup = _walk(wire, network, public_key, verify, deadline, STORE_ON)
        puts = _put_round(wire, lookup, lookup.closest_with_tokens(), public_key, item, deadline)
        _settle_in_background(wire, puts, deadline)
        return Stored(item.seq, _acknowledged(puts))


def _walk(wire: _Wire, network: Network, public_key: bytes, verify: Verify, deadline: float, k: int) -> _Lookup:
    accept = _contact_filter(network)
    seeds = [seed for seed in _resolve(network.bootstrap) if wire.reaches(seed)]
    if not seeds:
        raise NoNetwork(NO_NETWORK)
    # Contacts of a family this machine cannot reach are not worth asking, but stay in the contacts file.
    lookup = _Lookup(wire, krpc.target_of(public_key), verify, lambda a: accept(a) and wire.has_family_of(a), k)
    contacts_file = contacts_file_for(network)
    lookup.run(seeds, load_contacts(contacts_file, accept, wire.node_id), deadline)
    save_contacts(contacts_file, lookup.answered_contacts(), lookup.silent(), accept, wire.node_id)
    if not lookup.closest_with_tokens():
        raise NetworkError("no DHT node answered; check the network (or CCLINK_BOOTSTRAP) and try again")
    return lookup


# --- the socket ------------------------------------------------------------------------


class _RoundTrips:
    """The round trips one socket has measured, and the timeout they give: a high quantile of them, bounded.

    RFC 6298's estimator (smoothed mean + 4 x deviation) suits one path; a
    lookup's replies come from hundreds of nodes whose round trips spread
    over a decade, where that sum mostly measures the spread, and dead nodes
    cost SENDS of it each. A quantile says how long live nodes take.
    """

    def __init__(self) -> None:
        self._samples: list[float] = []  # sorted

    def add(self, sample: float) -> None:
        bisect.insort(self._samples, sample)

    @property
    def timeout(self) -> float:
        """How long a query waits for its reply before it is sent again, or, after SENDS sends, given up."""
        if not self._samples:
            return INITIAL_TIMEOUT
        quantile = self._samples[min(len(self._samples) - 1, int(TIMEOUT_QUANTILE * len(self._samples)))]
        return min(MAX_TIMEOUT, max(MIN_TIMEOUT, quantile))


@dataclass(eq=False)
class _Query:
    """One question to one node, sent again each timeout until answered or SENDS run out."""

    address: Endpoint
    build: Callable[[bytes], bytes]
    sent_at: list[float] = field(default_factory=list)  # when each send went out
    reply: krpc.Reply | None = None
    round_trip: float | None = None  # from the send its reply answered to the reply
    given_up: bool = False
    transactions: list[bytes] = field(default_factory=list)

    @property
    def settled(self) -> bool:
        return self.reply is not None or self.given_up

    def late(self, now: float, timeout: float) -> bool:
        """Unanswered a timeout after its first send: it no longer holds up anything, but may still answer."""
        return self.reply is None and (self.given_up or now >= self.sent_at[0] + timeout)


class _Wire:
    """UDP sockets, one per family, that send queries, resend the unanswered, and pair replies with their queries.

    A query goes out on the socket of its node's family; replies are read
    from both. NetworkError (NO_NETWORK) when neither family has a socket.
    """

    def __init__(self, network: Network, node_id: bytes, public_key: bytes) -> None:
        self.node_id = node_id
        self.round_trips = _RoundTrips()
        self._public_key = public_key
        self._local = _local_addresses(network)
        self._sockets = _open_sockets(self._local)
        if not self._sockets:
            raise NoNetwork(NO_NETWORK)
        # A selector, not select(): a process with many files open (a relay with a thousand clients) has
        # descriptors above select()'s limit of 1023.
        self._selector = selectors.DefaultSelector()
        for sock in self._sockets.values():
            self._selector.register(sock, selectors.EVENT_READ, sock)
        # BEP 32: with both families, every node is asked for contacts of both.
        self.want = krpc.WANT_BOTH if len(self._sockets) == 2 else ()
        self._no_route: set[int] = set()
        self._next_transaction = int.from_bytes(os.urandom(2), "big")
        # Every send's transaction, until its query is answered: a late reply to a query given up still counts.
        self._waiting: dict[bytes, tuple[_Query, float]] = {}
        self._handed_over = False

    def __enter__(self) -> _Wire:
        return self

    def __exit__(self, *_: object) -> None:
        if not self._handed_over:
            self.close()

    def close(self) -> None:
        self._selector.close()
        for sock in self._sockets.values():
            sock.close()

    def has_family_of(self, address: Endpoint) -> bool:
        """Whether address's family has a socket here, and sends in it have not yet found no route."""
        family = family_of(address[0])
        return family in self._sockets and family not in self._no_route

    def reaches(self, address: Endpoint) -> bool:
        """Whether this machine has a route to address over a family it has a socket for.

        A UDP socket's connect sends nothing; it only picks the route, and
        fails when there is none (a host with no network, or loopback down).
        """
        family = family_of(address[0])
        if not self.has_family_of(address):
            return False
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as probe:
                probe.bind((self._local[family], 0))
                probe.connect(address)
        except OSError:
            return False
        return True

    def hand_over(self) -> None:
        """Leave closing the socket to whoever goes on using it (a background thread), not to `with`."""
        self._handed_over = True

    @property
    def timeout(self) -> float:
        return self.round_trips.timeout

    def ask(self, address: Endpoint, build: Callable[[bytes], bytes]) -> _Query:
        """Send a query now; build makes its datagram for a transaction id."""
        query = _Query(address, build)
        self._send(query)
        return query

    def exchange(self, until: float) -> list[_Query]:
        """Resend or give up what is due, then wait until `until`, a reply or the next thing due.

        Returns the queries answered.
        """
        now, timeout = time.monotonic(), self.timeout
        due: list[float] = []
        for query in {query for query, _ in self._waiting.values()}:
            if query.settled:
                continue
            if now >= query.sent_at[-1] + timeout:
                # Late, or given up: the caller may ask someone else, or be done, so it looks before any wait.
                due.append(now)
                if len(query.sent_at) >= SENDS:
                    query.given_up = True
                    continue
                self._send(query)
            due.append(query.sent_at[-1] + timeout)
        wake = min([until, *due])
        ready = self._selector.select(max(0.0, wake - time.monotonic()))
        return [query for key, _ in ready for query in self._receive(key.data)]

    def _send(self, query: _Query) -> None:
        transaction = self._next_transaction.to_bytes(2, "big")
        self._next_transaction = (self._next_transaction + 1) % 65536
        now = time.monotonic()
        self._waiting[transaction] = (query, now)
        query.transactions.append(transaction)
        query.sent_at.append(now)
        family = family_of(query.address[0])
        try:
            self._sockets[family].sendto(query.build(transaction), query.address)
        except OSError as error:
            if error.errno in _NO_ROUTE:
                # A family with a socket but no route (IPv6 on a host without it, say): its
                # contacts are passed over from now on, not each sent to SENDS times.
                self._no_route.add(family)
                query.given_up = True
            # Anything else counts as a lost send.

    def _receive(self, sock: socket.socket) -> list[_Query]:
        answered: list[_Query] = []
        for _ in range(MAX_DATAGRAMS_PER_WAKE):
            try:
                datagram, sender = sock.recvfrom(RECEIVE_SIZE)
            except (BlockingIOError, InterruptedError):
                return answered
            except OSError:
                continue  # an ICMP error surfacing from an earlier send
            reply = krpc.parse_reply(datagram, self._public_key)
            waiting = self._waiting.get(reply.transaction) if reply else None
            # A reply must come from where its query went: anyone can guess a transaction id.
            # (An IPv6 sender is (host, port, flow info, scope id); hosts are compared as canonical text.)
            if reply is None or waiting is None or sender[:2] != waiting[0].address:
                continue
            query, sent_at = waiting
            query.reply, query.round_trip = reply, time.monotonic() - sent_at
            self.round_trips.add(query.round_trip)
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
    node_id: bytes | None = None  # None until a node names it or it answers
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

    def __init__(
        self, wire: _Wire, target: bytes, verify: Verify, accept: Callable[[Endpoint], bool], k: int = K
    ) -> None:
        self._wire = wire
        self._target = target
        self._verify = verify
        self._accept = accept
        self._k = k
        self._nodes: dict[Endpoint, _Node] = {}
        self._seeds: list[_Query] = []
        self._asked = 0
        # Silent in the last lookup: asked, and heard if they answer, but never waited for.
        self._presumed_silent: frozenset[Endpoint] = frozenset()
        self.newest: krpc.Item | None = None

    @property
    def newest_seq(self) -> int:
        return self.newest.seq if self.newest is not None else -1

    def run(self, seeds: Iterable[Endpoint], saved: SavedContacts, deadline: float) -> None:
        """Walk from seeds (ids unknown: the bootstrap nodes) and the contacts saved last time (a warm start)."""
        for address in seeds:
            self._ask_seed(address)
        for contact in saved.contacts:
            self._meet(contact)
        self._presumed_silent = saved.silent
        while not self._done() and time.monotonic() < deadline:
            self._ask_closest()
            if self._done():
                break  # asking found nobody left to ask (a family with no route): nothing to wait for
            for query in self._wire.exchange(deadline):
                self.learn(query)

    def ask_get(self, address: Endpoint) -> _Query:
        """Send one node a get for the target."""
        wire = self._wire
        return wire.ask(address, lambda t: krpc.get_query(t, wire.node_id, self._target, wire.want))

    def learn(self, query: _Query) -> None:
        """Take in a get or find_node reply: the node's id and token, its contacts, its item."""
        reply = query.reply
        node = self._nodes.get(query.address)
        if reply is None or reply.node_id is None:
            return
        if node is None:
            node = self._nodes[query.address] = _Node(query.address)
        node.node_id, node.distance = reply.node_id, self._distance(reply.node_id)
        node.query = node.query or query
        node.token = reply.token or node.token
        for contact in reply.nodes:
            self._meet(contact)
        if reply.item is not None and reply.item.seq > self.newest_seq and self._verify(reply.item):
            self.newest = reply.item

    def closest_with_tokens(self) -> list[_Node]:
        return [node for node in self._by_distance() if node.answered and node.token][: self._k]

    def answered_contacts(self) -> list[tuple[krpc.Contact, float]]:
        """The nodes that answered, with their ids and round trips, fastest first."""
        answered = [
            (krpc.Contact(node.node_id, node.address), node.query.round_trip)
            for node in self._nodes.values()
            if node.answered and node.node_id is not None and node.query and node.query.round_trip is not None
        ]
        return sorted(answered, key=lambda pair: pair[1])

    def silent(self) -> set[Endpoint]:
        """The nodes asked that never answered: given up on, not merely still on their way when the lookup ended."""
        return {
            node.address
            for node in self._nodes.values()
            if node.query is not None and node.query.reply is None and node.query.given_up
        }

    def _meet(self, contact: krpc.Contact) -> None:
        if contact.node_id == self._wire.node_id:
            return  # ourselves, or on a test swarm another command, most likely ended (see _node_id)
        if contact.address not in self._nodes and self._accept(contact.address):
            self._nodes[contact.address] = _Node(contact.address, contact.node_id, self._distance(contact.node_id))

    def _ask_seed(self, address: Endpoint) -> None:
        # A seed's id is unknown until it answers. A bootstrap router may not
        # know `get`, so it is also asked for nodes the way every node knows.
        node_id, want = self._wire.node_id, self._wire.want
        self._nodes.setdefault(address, _Node(address)).query = self.ask_get(address)
        self._seeds.append(self._wire.ask(address, lambda t: krpc.find_node_query(t, node_id, self._target, want)))

    def _ask_closest(self) -> None:
        now, timeout = time.monotonic(), self._wire.timeout
        # A late query gives its place to the next candidate; its reply still counts if it comes.
        in_flight = sum(
            1
            for node in self._nodes.values()
            if node.query is not None
            and not node.query.settled
            and not node.query.late(now, timeout)
            and node.address not in self._presumed_silent
        )
        for node in self._by_distance():
            if in_flight >= PARALLEL or self._asked >= MAX_QUERIES:
                return
            if node.query is None and not self._wire.has_family_of(node.address):
                del self._nodes[node.address]  # met before its family turned out to have no route
            elif node.query is None:
                node.query = self.ask_get(node.address)
                self._asked += 1
                in_flight += 1

    def _done(self) -> bool:
        """The k closest nodes that answered have answered, and every node closer than them is settled.

        Settled: answered or given up, for a node closer than the K-th that
        answered (where a get looks); beyond it, which only a put's longer
        lookup reaches, being late is enough.
        """
        self._seeds = [seed for seed in self._seeds if not seed.settled]
        now, timeout = time.monotonic(), self._wire.timeout
        answered = 0
        for node in self._by_distance():
            if node.answered:
                answered += 1
                if answered == self._k:
                    return True
            elif node.query is None:
                if self._asked < MAX_QUERIES:
                    return False
            elif node.address in self._presumed_silent:
                continue  # silent last time too: its answer counts if it comes, but it holds nothing up
            elif not node.query.settled and (answered < K or not node.query.late(now, timeout)):
                return False
        # Fewer than k nodes answered: done when nothing is left to ask or hear (or only the presumed silent).
        return not self._seeds and not any(
            node.query is not None and node.unsettled and node.address not in self._presumed_silent
            for node in self._nodes.values()
        )

    def _by_distance(self) -> list[_Node]:
        known = [(node.distance, node) for node in self._nodes.values() if node.distance is not None]
        return [node for _, node in sorted(known, key=lambda pair: pair[0])]

    def _distance(self, node_id: bytes) -> int:
        return int.from_bytes(node_id, "big") ^ int.from_bytes(self._target, "big")


# --- storing -------------------------------------------------------------------------------


def _put_round(
    wire: _Wire, lookup: _Lookup, closest: list[_Node], public_key: bytes, item: krpc.Item, deadline: float
) -> list[_Query]:
    """Put item to the closest nodes; return the puts, answered or not.

    Returns once every put has been answered or given up, or once
    ENOUGH_STORED nodes stored it and every other put is answered or late. A
    node that refuses the put because it holds a newer item is asked for that
    item, so that the caller can sign above it.
    """
    puts = [wire.ask(node.address, _put_builder(wire.node_id, node.token, public_key, item)) for node in closest]
    checks: list[_Query] = []
    while time.monotonic() < deadline:
        now, timeout = time.monotonic(), wire.timeout
        unsettled = [query for query in puts + checks if not query.settled]
        if not unsettled:
            break
        if _acknowledged(puts) >= ENOUGH_STORED and all(query.late(now, timeout) for query in unsettled):
            break
        for query in wire.exchange(deadline):
            if query in checks:
                lookup.learn(query)
            elif query.reply is not None and query.reply.error in (krpc.ERROR_SEQ_TOO_OLD, krpc.ERROR_CAS_MISMATCH):
                checks.append(lookup.ask_get(query.address))
    return puts


def _acknowledged(puts: list[_Query]) -> int:
    return sum(1 for query in puts if query.reply is not None and query.reply.error is None)


def _put_builder(node_id: bytes, token: bytes | None, public_key: bytes, item: krpc.Item) -> Callable[[bytes], bytes]:
    return lambda transaction: krpc.put_query(transaction, node_id, token or b"", public_key, item)


def _settle_in_background(wire: _Wire, puts: list[_Query], deadline: float) -> None:
    """Let the puts still unanswered go on (resent, then given up) in a daemon thread, which closes the wire.

    A daemon thread never delays the process's exit: a publish that exits
    at once leaves them, one that goes on seeding lets them finish.
    """
    if all(query.settled for query in puts) or not _background_puts.acquire(blocking=False):
        return
    wire.hand_over()
    threading.Thread(target=_settle, args=(wire, puts, deadline), name="cclink-dht-puts", daemon=True).start()


def _settle(wire: _Wire, puts: list[_Query], deadline: float) -> None:
    try:
        while time.monotonic() < deadline and not all(query.settled for query in puts):
            wire.exchange(deadline)
    except OSError:
        pass  # nothing to report to: the put returned long ago
    finally:
        wire.close()
        _background_puts.release()


# --- where to start and whom to believe ------------------------------------------------------


def _resolve(bootstrap: Sequence[Endpoint]) -> list[Endpoint]:
    """The bootstrap endpoints as addresses: a host name's first IPv4 and first IPv6 (those not found skipped)."""
    seeds: list[Endpoint] = []
    for host, port in bootstrap:
        try:
            found = socket.getaddrinfo(host, port, socket.AF_UNSPEC, socket.SOCK_DGRAM)
        except (OSError, UnicodeError):
            continue
        families: set[int] = set()
        for family, *_, sockaddr in found:
            address, found_port = sockaddr[0], sockaddr[1]
            if family in families or not isinstance(address, str) or not isinstance(found_port, int):
                continue
            families.add(family)
            # Canonical text, as replies' senders come (and never a %scope: those are no DHT's).
            seeds.append((_canonical(address), found_port))
    if not seeds:
        raise NetworkError(
            "none of the DHT bootstrap nodes could be found; check the network (or CCLINK_BOOTSTRAP) and try again"
        )
    return seeds


def _canonical(host: str) -> str:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host


def _local_addresses(network: Network) -> dict[int, str]:
    """The address each family's socket binds."""
    # On a test swarm on this machine, commands talk from their own address (see endpoints.COMMAND_ADDRESS).
    if network.binds_command_address:
        return {socket.AF_INET: COMMAND_ADDRESS, socket.AF_INET6: COMMAND_ADDRESS6}
    return {socket.AF_INET: "0.0.0.0", socket.AF_INET6: "::"}


def _open_sockets(local: dict[int, str]) -> dict[int, socket.socket]:
    """A bound, non-blocking UDP socket for each family this machine has; none for a family it lacks."""
    sockets: dict[int, socket.socket] = {}
    for family, address in local.items():
        if family == socket.AF_INET6 and not socket.has_ipv6:
            continue
        try:
            sock = socket.socket(family, socket.SOCK_DGRAM)
        except OSError:
            continue
        try:
            if family == socket.AF_INET6:
                # IPv6 only: IPv4 has a socket of its own, and a mapped address would be a second name for a node.
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((address, 0))
            sock.setblocking(False)
        except OSError:
            sock.close()
            continue
        sockets[family] = sock
    return sockets


def _node_id(network: Network) -> bytes:
    """A random id, except on a test network, where every command uses the same one.

    A libtorrent node files whoever put an item with a valid token in its
    routing table, read-only or not. On a test swarm every publish would then
    leave a dead entry behind, and after a few hundred of them the nodes'
    contact lists name hardly anyone alive. libtorrent keeps the first
    address it saw for an id, so with one id they hold at most one such entry,
    and lookups pass over contacts with that id. On a real DHT every command
    needs an id of its own: nodes keep one address per id, and a shared id
    would mark every query as cclink's.
    """
    return TEST_SWARM_NODE_ID if network.commands_share_node_id else os.urandom(krpc.ID_SIZE)


def _contact_filter(network: Network) -> Callable[[Endpoint], bool]:
    """Which contacts a node names are worth asking: those within the network's scope.

    On the public DHT only public addresses (a liar's list must not point us
    at a private network or this machine), on a private network private
    ones, on a swarm on this machine loopback ones, but on a test swarm here
    never another command's. (Over IPv6 commands share ::1 with the swarm's
    nodes; they are known by TEST_SWARM_NODE_ID instead, which _meet skips.)
    """
    if network.binds_command_address:
        return lambda address: address[0] != COMMAND_ADDRESS and network.allows(address[0])
    return lambda address: network.allows(address[0])


# --- warm starts: the contacts that answered last time -----------------------------------------


def contacts_file_for(network: Network) -> Path:
    """Where a network's contacts are kept: one file per bootstrap set and test flag, so none leaks into another."""
    key = repr((network.test, sorted(network.bootstrap)))
    return files.cache_dir() / f"dht-contacts-{hashlib.sha256(key.encode()).hexdigest()[:12]}.json"


@dataclass(frozen=True)
class SavedContacts:
    """What the last lookup on a network left: contacts that answered, and addresses that stayed silent."""

    contacts: list[krpc.Contact] = field(default_factory=list)
    silent: frozenset[Endpoint] = frozenset()


def load_contacts(path: Path, accept: Callable[[Endpoint], bool], own_id: bytes) -> SavedContacts:
    """The contacts saved in path that pass the checks a contact from the network passes; none for a bad file.

    Anyone who can write the cache can write this file, so every entry is
    taken as a node's claim: within the network's scope, never ourselves.
    """
    try:
        with open(path, "rb") as file:
            data = file.read(CONTACTS_FILE_LIMIT + 1)
        document = json.loads(data) if len(data) <= CONTACTS_FILE_LIMIT else None
    except (OSError, ValueError, RecursionError):
        return SavedContacts()
    if not isinstance(document, dict) or document.get("version") != CONTACTS_VERSION:
        return SavedContacts()
    entries, silent_entries = document.get("contacts"), document.get("silent", [])
    if not isinstance(entries, list) or not isinstance(silent_entries, list):
        return SavedContacts()
    contacts: dict[Endpoint, krpc.Contact] = {}
    for entry in entries[:SAVED_CONTACTS]:
        contact = _contact_from_entry(entry)
        if contact and contact.node_id != own_id and contact.address not in contacts and accept(contact.address):
            contacts[contact.address] = contact
    silent = (_address_from_entry(entry) for entry in silent_entries[:SAVED_CONTACTS])
    return SavedContacts(
        list(contacts.values()), frozenset(address for address in silent if address and accept(address))
    )


def save_contacts(
    path: Path,
    answered: list[tuple[krpc.Contact, float]],
    silent: set[Endpoint],
    accept: Callable[[Endpoint], bool],
    own_id: bytes,
) -> None:
    """Keep the contacts that answered, fastest first, then those saved before and not silent now; and the silent."""
    if not answered:
        return  # a lookup nobody answered says nothing about the contacts saved
    kept = {contact.address: (contact, rtt) for contact, rtt in answered}
    for contact in load_contacts(path, accept, own_id).contacts:
        if contact.address not in silent:
            kept.setdefault(contact.address, (contact, math.nan))
    entries = [
        [contact.node_id.hex(), contact.address[0], contact.address[1], None if math.isnan(rtt) else round(rtt, 4)]
        for contact, rtt in list(kept.values())[:SAVED_CONTACTS]
    ]
    silent_entries = [[host, port] for host, port in sorted(silent)[:SAVED_CONTACTS]]
    document = {"version": CONTACTS_VERSION, "contacts": entries, "silent": silent_entries}
    try:
        files.write_private(path, json.dumps(document, separators=(",", ":")).encode() + b"\n", durable=False)
    except OSError:
        pass  # the file only saves time


def _contact_from_entry(entry: object) -> krpc.Contact | None:
    """`["<40 hex id>", "<IPv4 or IPv6 address>", port, round trip in seconds or null]` as a contact, or None."""
    if not isinstance(entry, list) or len(entry) != 4:
        return None
    node_id, address = entry[0], _address_from_entry(entry[1:3])
    if not isinstance(node_id, str) or len(node_id) != 2 * krpc.ID_SIZE or address is None:
        return None
    try:
        return krpc.Contact(bytes.fromhex(node_id), address)
    except ValueError:
        return None


def _address_from_entry(entry: object) -> Endpoint | None:
    """`["<IPv4 or IPv6 address>", port]` as an endpoint (the address in its canonical text), or None."""
    if not isinstance(entry, list) or len(entry) != 2:
        return None
    host, port = entry
    if not isinstance(host, str) or not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        return None
    try:
        return (str(ipaddress.ip_address(host)), port)
    except ValueError:
        return None
