"""The Lab: thousands of KRPC nodes in one process, their routing tables, their delays, churn, introspection.

Everything about the lab's shape comes from its seed: node ids, routing
tables, round trips, which nodes are slow, which leave and which join on
`advance`. Which datagrams are lost comes from the seed too, but depends on
the order in which queries arrive, so only the loss rate repeats exactly.

Addresses: live nodes on 127.10.0.1 upwards (127.10-99.x.y, never .0 or
.255), dead entries that were never nodes on 127.100.0.1 upwards; nothing
listens at a dead entry's address, and a loopback address without a socket
is silent to an unconnected UDP socket, as a departed node is on the
internet. All on one port (6881 by default), or, with port=0, each on a
free port the system gives it at start (so that labs can run side by
side; dead entries then get ports drawn from the seed).
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import shlex
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from cclink.dev.dhtlab.loop import LabError, Loop, Stats
from cclink.dev.dhtlab.node import LabNode, mutable_target
from cclink.dev.dhtlab.tables import ID_BITS, K, Peer, Population, fill_table, round_at_random
from cclink.errors import UsageError
from cclink.net.endpoints import Endpoint, Network

DEFAULT_PORT = 6881
BOOTSTRAP_NODES = 4  # the nodes a Network starts from; they never leave, like the public DHT's routers
RTT_SIGMA = 0.6  # the log-normal's shape: the middle 90 % of round trips within 0.37x to 2.7x the median
SLOW_FACTOR = 10  # a slow node's round trip, against what its draw gave it
MAX_DEAD = 0.9
MAX_NODES = 60_000
# File descriptors a process needs besides the lab's sockets (interpreter, selector, client sockets, logs).
FILES_BESIDES_NODES = 64
_HOSTS_PER_OCTET = 254  # .1 to .254
_LIVE_FIRST_OCTET, _DEAD_FIRST_OCTET, _DEAD_LAST_OCTET = 10, 100, 199


@dataclass(frozen=True)
class Contact:
    """An entry of a routing table, for introspection."""

    node_id: bytes
    address: Endpoint
    alive: bool


@dataclass(frozen=True)
class NodeInfo:
    """A live node, for introspection: where it is, how slow it is, and whom its routing table lists."""

    node_id: bytes
    address: Endpoint
    rtt: float  # seconds
    contacts: tuple[Contact, ...]


@dataclass(frozen=True)
class Churn:
    """What an advance of the lab's clock did."""

    left: int
    joined: int


class Lab:
    """A simulated Mainline DHT on loopback. Use as a context manager, or start() and stop().

    nodes: live nodes at start; dead: the share of routing-table entries where
    nothing answers; loss: the probability that a datagram is lost, each way;
    median_rtt: seconds; slow: the share of nodes whose round trip is
    SLOW_FACTOR times longer; item_lifetime: seconds on the lab's clock after
    which a node drops an item not put again (None: kept while the node lives).
    """

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        nodes: int = 1000,
        *,
        dead: float = 0.3,
        loss: float = 0.0,
        median_rtt: float = 0.080,
        slow: float = 0.05,
        seed: int | None = None,
        port: int = DEFAULT_PORT,
        item_lifetime: float | None = None,
    ) -> None:
        _check(nodes, dead, loss, median_rtt, slow, port)
        self.seed = seed if seed is not None else int.from_bytes(os.urandom(4), "big")
        self.dead = dead
        self.loss = loss
        self.median_rtt = median_rtt
        self.slow = slow
        self.port = port
        self.item_lifetime = item_lifetime
        self._rng = random.Random(self.seed)  # the lab's shape: ids, tables, delays, churn
        self._elapsed = 0.0  # simulated seconds added by advance()
        self._started_at: float | None = None
        self._lock = threading.RLock()  # the loop's, once it runs: held while the nodes change or are read
        self._loop: Loop | None = None  # while serving
        self._population = Population()
        self._nodes: list[LabNode] = []  # the live nodes, oldest first
        self._by_key: dict[int, LabNode] = {}  # the live nodes by id
        self._bootstrap: list[LabNode] = []
        self._created = 0  # live addresses handed out
        self._build(nodes)

    # --- lifecycle ---

    def __enter__(self) -> Lab:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def start(self) -> None:
        """Open every node's socket and start serving; LabError when this machine cannot hold the lab."""
        raise_file_limit(len(self._nodes))
        loop = Loop(self.loss, random.Random(f"{self.seed} loss"), self.now, self._lock)
        try:
            for node in self._nodes:
                loop.open(node)
        except LabError:
            loop.stop()
            raise
        self._started_at = time.monotonic()
        self._loop = loop
        loop.start()

    def stop(self) -> None:
        with self._lock:
            loop, self._loop = self._loop, None
        if loop is not None:
            loop.stop()

    # --- what commands need ---

    @property
    def bootstrap(self) -> tuple[Endpoint, ...]:
        """A few live nodes to start from."""
        return tuple(node.address for node in self._bootstrap)

    @property
    def network(self) -> Network:
        """The test network that commands join."""
        return Network(self.bootstrap, test=True)

    def export_line(self) -> str:
        """`export CCLINK_NETWORK=test CCLINK_BOOTSTRAP=...`: the line that makes cclink in a shell use the lab."""
        assignments = (f"{name}={shlex.quote(value)}" for name, value in self.network.environment().items())
        return f"export {' '.join(assignments)}"

    # --- the simulated clock and churn ---

    def now(self) -> float:
        """Seconds on the lab's clock: real time since start, plus every advance."""
        running = time.monotonic() - self._started_at if self._started_at is not None else 0.0
        return self._elapsed + running

    def advance(self, hours: float, *, replace: float = 0.0, steps: int | None = None) -> Churn:
        """Move the lab's clock on by hours, in steps (one per hour by default), replacing nodes as it goes.

        replace is the share of the nodes alive now that are gone at the end:
        each step, the same share of whoever is alive then (earlier joiners
        included, the bootstrap nodes excepted) leaves, taking its items, and
        as many new nodes join. Items past their lifetime are dropped.
        """
        if hours < 0 or not 0 <= replace < 1:
            raise UsageError("advance takes hours >= 0 and replace from 0 to below 1")
        steps = steps if steps is not None else max(1, math.ceil(hours))
        per_step = 1 - (1 - replace) ** (1 / steps)
        left = 0
        with self._lock:
            for _ in range(steps):
                self._elapsed += hours * 3600 / steps
                left += self._churn(per_step)
                self._expire_items()
        return Churn(left, left)

    # --- introspection ---

    def __len__(self) -> int:
        return len(self._nodes)

    def holders(self, public_key: bytes, salt: bytes = b"") -> dict[Endpoint, int]:
        """The live nodes that hold an item under public_key (and salt): address -> the seq held."""
        target = mutable_target(public_key, salt)
        with self._lock:
            now = self.now()
            held = ((node.address, node.item(target, now)) for node in self._nodes)
            return {address: item.seq for address, item in held if item is not None}

    def closest_live(self, target: bytes, count: int = K) -> list[Endpoint]:
        """The count live nodes closest to target: where a put should land."""
        with self._lock:
            peers = self._population.closest_live(int.from_bytes(target, "big"), count)
        return [peer.address for peer in peers]

    def stats(self) -> Stats:
        """What the nodes received and sent so far (a copy)."""
        with self._lock:
            return self._loop.stats.copy() if self._loop is not None else Stats()

    def dead_share(self) -> float:
        """The share of all routing-table entries of live nodes that point where nothing answers."""
        with self._lock:
            entries = [peer.alive for node in self._nodes for peer in node.table.entries()]
        return entries.count(False) / len(entries) if entries else 0.0

    def nodes(self) -> list[NodeInfo]:
        """Every live node, oldest first."""
        with self._lock:
            return [
                NodeInfo(
                    node.peer.node_id,
                    node.address,
                    node.rtt,
                    tuple(Contact(peer.node_id, peer.address, peer.alive) for peer in node.table.entries()),
                )
                for node in self._nodes
            ]

    def describe(self) -> str:
        """One sentence on what the lab is."""
        first, last = self._nodes[0].address[0], self._nodes[-1].address[0]
        return (
            f"{len(self)} DHT nodes on {first} to {last}: {self.dead_share():.0%} of routing-table entries dead, "
            f"{self.loss:.1%} loss each way, median round trip {self.median_rtt * 1000:.0f} ms "
            f"({self.slow:.0%} of nodes {SLOW_FACTOR}x slower), seed {self.seed}"
        )

    # --- building ---

    def _build(self, count: int) -> None:
        peers = [Peer(self._rng.randbytes(ID_BITS // 8), self._next_address()) for _ in range(count)]
        for peer in peers:
            self._population.add(peer)
        for index in range(_phantoms(count, self.dead)):
            self._population.add(Peer(self._rng.randbytes(ID_BITS // 8), self._dead_address(index), alive=False))
        self._nodes = [self._node(peer) for peer in peers]
        self._by_key = {node.peer.key: node for node in self._nodes}
        self._bootstrap = self._nodes[:BOOTSTRAP_NODES]

    def _node(self, peer: Peer) -> LabNode:
        """A node for peer (already in the population): its table, token secret and round trip, from the seed."""
        table = fill_table(peer, self._population, self.dead, self._rng)
        rtt = self.median_rtt * math.exp(self._rng.gauss(0.0, RTT_SIGMA))
        if self._rng.random() < self.slow:
            rtt *= SLOW_FACTOR
        return LabNode(peer, table, self._rng.randbytes(16), rtt, self.item_lifetime)

    def _churn(self, share: float) -> int:
        """Replace share of the live nodes (bootstrap nodes excepted) by new ones; return how many left."""
        movable = [node for node in self._nodes if node not in self._bootstrap]
        leavers = self._rng.sample(movable, min(len(movable), round_at_random(len(movable) * share, self._rng)))
        for node in leavers:
            self._leave(node)
        for _ in leavers:
            self._join()
        return len(leavers)

    def _leave(self, node: LabNode) -> None:
        if self._loop is not None:
            self._loop.close(node)
        self._nodes.remove(node)
        del self._by_key[node.peer.key]
        self._population.kill(node.peer)

    def _join(self) -> None:
        """A new node with a fresh id and address; the nodes it met on joining file it, as Kademlia does."""
        peer = Peer(self._rng.randbytes(ID_BITS // 8), self._next_address())
        self._population.add(peer)
        node = self._node(peer)
        if self._loop is not None:
            self._loop.open(node)
        # It has asked the live nodes in its own table (bootstrapping) and the
        # nodes closest to its id (its lookup of itself): they heard of it.
        met = {entry.key for entry in node.table.entries() if entry.alive}
        met |= {neighbour.key for neighbour in self._population.closest_live(peer.key, K + 1)}
        for key in sorted(met - {peer.key}):
            self._by_key[key].table.learn(peer)
        self._nodes.append(node)
        self._by_key[peer.key] = node

    def _expire_items(self) -> None:
        now = self.now()
        for node in self._nodes:
            for target in list(node.items):
                node.item(target, now)  # drops it if its lifetime ran out

    def _next_address(self) -> Endpoint:
        index = self._created
        self._created += 1
        return _address(_LIVE_FIRST_OCTET, _DEAD_FIRST_OCTET, index), self.port  # port 0: bound at start

    def _dead_address(self, index: int) -> Endpoint:
        return _address(_DEAD_FIRST_OCTET, _DEAD_LAST_OCTET + 1, index), self._dead_port()

    def _dead_port(self) -> int:
        return self.port or self._rng.randrange(1024, 65536)


def raise_file_limit(nodes: int) -> None:
    """Raise this process's open-file limit as far as needed, up to the hard limit; LabError if that is too low."""
    try:
        import resource
    except ImportError:  # not a Unix: nothing to raise, and the sockets will say so if too many
        return
    needed = _open_files() + nodes + FILES_BESIDES_NODES
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < needed:
        room = hard - (needed - nodes)
        advice = f"ask for at most {room} nodes, or raise it" if room > 0 else "raise it"
        raise LabError(
            f"a lab of {nodes} nodes needs about {needed} open files, but this process may have at most {hard} "
            f"(the hard limit, ulimit -Hn); {advice}"
        )
    if soft != resource.RLIM_INFINITY and soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else needed, hard))


def _open_files() -> int:
    with contextlib.suppress(OSError):
        return len(list(Path("/proc/self/fd").iterdir()))
    with contextlib.suppress(OSError):
        return len(list(Path("/dev/fd").iterdir()))
    return 0


def _address(first_octet: int, end_octet: int, index: int) -> str:
    """The index-th address of 127.first_octet.0.1 upwards, skipping .0 and .255; LabError past end_octet."""
    octet, rest = divmod(index, _HOSTS_PER_OCTET * _HOSTS_PER_OCTET)
    if first_octet + octet >= end_octet:
        raise LabError(f"the lab ran out of loopback addresses after {index} nodes")
    third, fourth = divmod(rest, _HOSTS_PER_OCTET)
    return f"127.{first_octet + octet}.{third}.{fourth + 1}"


def _phantoms(nodes: int, dead: float) -> int:
    """How many never-alive dead entries to draw from: twice what `dead` needs, so that no bucket runs short."""
    return math.ceil(2 * nodes * dead / (1 - dead)) if dead > 0 else 0


def _check(nodes: int, dead: float, loss: float, median_rtt: float, slow: float, port: int) -> None:
    if not 1 <= nodes <= MAX_NODES:
        raise UsageError(f"a lab has between 1 and {MAX_NODES} nodes, not {nodes}")
    if not 0 <= dead <= MAX_DEAD:
        raise UsageError(f"the share of dead entries is from 0 to {MAX_DEAD}, not {dead}")
    if not 0 <= loss < 1:
        raise UsageError(f"loss is a probability from 0 to below 1, not {loss}")
    if not 0 <= slow <= 1:
        raise UsageError(f"the share of slow nodes is from 0 to 1, not {slow}")
    if median_rtt < 0:
        raise UsageError(f"the median round trip cannot be negative ({median_rtt})")
    if not isinstance(port, int) or not 0 <= port < 65536:
        raise UsageError(f"port must be from 0 (any free one) to 65535, not {port}")
