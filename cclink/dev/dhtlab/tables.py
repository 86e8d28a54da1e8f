"""Who knows whom in the lab: every node it has had, alive or gone, and Kademlia-shaped routing tables.

A routing table has one bucket per shared-prefix length with its owner's id
(BEP 5's XOR distance), each holding at most K entries. Tables are drawn
from the `Population` rather than grown by lookups: each bucket takes up to
K of the nodes whose ids fall in its range, a share of them dead (nodes that
left, or that never answered anyone in this lab). A node that leaves stays
in every table that lists it; it is then simply a dead entry.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import math
import random
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field

from cclink.net.endpoints import Endpoint

K = 8  # BEP 5's bucket size, and how many contacts a reply lists
ID_BITS = 160


@dataclass(eq=False)
class Peer:
    """A node as routing tables list it: its id and address, and whether anything answers there."""

    node_id: bytes
    address: Endpoint
    alive: bool = True
    key: int = field(init=False)  # the id as a number, for XOR distances
    compact: bytes = field(init=False)  # BEP 5 compact node info

    def __post_init__(self) -> None:
        self.key = int.from_bytes(self.node_id, "big")
        self.compact = _compact(self.node_id, self.address)

    def bound_to(self, port: int) -> None:
        """The port its socket was given, for a peer whose address named port 0 (any free port)."""
        self.address = (self.address[0], port)
        self.compact = _compact(self.node_id, self.address)


def _compact(node_id: bytes, address: Endpoint) -> bytes:
    host, port = address
    return node_id + socket.inet_aton(host) + struct.pack("!H", port)


class _SortedPeers:
    """Peers sorted by id, for the ranges of ids that buckets cover."""

    def __init__(self) -> None:
        self._keys: list[int] = []
        self._peers: list[Peer] = []

    def __len__(self) -> int:
        return len(self._peers)

    def add(self, peer: Peer) -> None:
        index = bisect.bisect_left(self._keys, peer.key)
        self._keys.insert(index, peer.key)
        self._peers.insert(index, peer)

    def remove(self, peer: Peer) -> None:
        index = bisect.bisect_left(self._keys, peer.key)
        while self._peers[index] is not peer:
            index += 1
        del self._keys[index]
        del self._peers[index]

    def span(self, low: int, high: int) -> range:
        """The positions of the peers whose ids are in [low, high)."""
        return range(bisect.bisect_left(self._keys, low), bisect.bisect_left(self._keys, high))

    def __getitem__(self, position: int) -> Peer:
        return self._peers[position]


class Population:
    """Every node the lab has had: the live ones and the dead ones, each sorted by id."""

    def __init__(self) -> None:
        self.live = _SortedPeers()
        self.dead = _SortedPeers()

    def add(self, peer: Peer) -> None:
        (self.live if peer.alive else self.dead).add(peer)

    def kill(self, peer: Peer) -> None:
        """peer's node left: from now on it is a dead entry wherever it is listed."""
        self.live.remove(peer)
        peer.alive = False
        self.dead.add(peer)

    def spans(self, low: int, high: int) -> tuple[range, range]:
        """The positions of the live and of the dead peers whose ids are in [low, high)."""
        return self.live.span(low, high), self.dead.span(low, high)

    def closest_live(self, key: int, count: int) -> list[Peer]:
        """The count live peers closest to key by XOR distance."""
        # Ids that share a longer prefix with key are closer than all others: the
        # smallest aligned block around key that holds count peers holds the answer.
        block = self.live.span(0, 1 << ID_BITS)
        for depth in range(1, ID_BITS + 1):
            low = key >> (ID_BITS - depth) << (ID_BITS - depth)
            inner = self.live.span(low, low + (1 << (ID_BITS - depth)))
            if len(inner) < count:
                break
            block = inner
        return heapq.nsmallest(count, (self.live[i] for i in block), key=lambda peer: peer.key ^ key)


class RoutingTable:
    """One node's buckets: bucket d lists nodes whose ids share exactly d leading bits with the owner's."""

    def __init__(self, own_key: int) -> None:
        self.own_key = own_key
        self.buckets: dict[int, list[Peer]] = {}

    def bucket_of(self, key: int) -> int:
        return ID_BITS - (self.own_key ^ key).bit_length()

    def entries(self) -> Iterator[Peer]:
        return itertools.chain.from_iterable(self.buckets.values())

    def closest(self, key: int, count: int = K) -> list[Peer]:
        """The count entries closest to key, dead or alive: what a node answers a find_node or get with."""
        return heapq.nsmallest(count, self.entries(), key=lambda peer: peer.key ^ key)

    def learn(self, peer: Peer) -> None:
        """File a node that made itself known, as Kademlia does.

        A full bucket takes it only in place of an entry that no longer
        answers: Kademlia pings a full bucket's oldest entry and replaces it
        only if it stays silent.
        """
        if peer.key == self.own_key:
            return
        bucket = self.buckets.setdefault(self.bucket_of(peer.key), [])
        if peer in bucket:
            return
        if len(bucket) < K:
            bucket.append(peer)
            return
        for index, entry in enumerate(bucket):
            if not entry.alive:
                bucket[index] = peer
                return


def fill_table(own: Peer, population: Population, dead: float, rng: random.Random) -> RoutingTable:
    """A table for own (already in population), drawn from population with about `dead` of its entries dead."""
    table = RoutingTable(own.key)
    for depth in range(ID_BITS):
        shift = ID_BITS - 1 - depth
        # The bucket's range: ids sharing `depth` leading bits with own's, and not the next one.
        low = ((own.key >> shift) ^ 1) << shift
        live, gone = population.spans(low, low + (1 << shift))
        chosen = _bucket(population, live, gone, dead, rng)
        if chosen:
            table.buckets[depth] = chosen
        nearer = low ^ (1 << shift)  # the other half: ids sharing depth + 1 bits with own's
        deeper_live, deeper_gone = population.spans(nearer, nearer + (1 << shift))
        if len(deeper_live) + len(deeper_gone) <= 1:
            break  # only own is left deeper
    return table


def _bucket(population: Population, live: range, gone: range, dead: float, rng: random.Random) -> list[Peer]:
    """Up to K entries from the live and dead peers at these positions, a share `dead` of them dead.

    A bucket with K or more live nodes in its range has each of its K
    entries dead with probability `dead`. One with fewer (near the owner's
    id) lists every one of them, with dead entries in the same proportion
    as far as there is room.
    """
    if len(live) >= K:
        dead_count = min(sum(1 for _ in range(K) if rng.random() < dead), len(gone))
        live_count = K - dead_count
    else:
        live_count = len(live)
        dead_count = min(round_at_random(live_count * dead / (1 - dead), rng), len(gone), K - live_count)
    chosen = [population.live[i] for i in rng.sample(live, live_count)]
    return chosen + [population.dead[i] for i in rng.sample(gone, dead_count)]


def round_at_random(value: float, rng: random.Random) -> int:
    """value rounded down or up, up with probability its fractional part: right on average."""
    whole = math.floor(value)
    return whole + (1 if rng.random() < value - whole else 0)
