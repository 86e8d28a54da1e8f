"""The DHT's items in memory, for flows under test: a RecordStore over MemoryItems is real in all but the network.

MemoryItems keeps what the closest nodes of a key would hold, and plays by
BEP 44's rules: a put must verify and a lower seq never replaces a higher
one. A test can make it unreachable, or plant an older item (a replay).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from cclink.errors import NetworkError
from cclink.net import krpc
from cclink.net.dht_client import Sign, Stored, Verify


@dataclass
class MemoryItems:
    nodes: int = 20  # how many nodes each put reports
    reachable: bool = True
    items: dict[bytes, krpc.Item] = field(default_factory=dict)
    puts: int = 0  # every put and put_again that reached the "nodes"

    def get(self, public_key: bytes, verify: Verify, *, timeout: float) -> krpc.Item | None:
        self._check_reachable()
        item = self.items.get(public_key)
        return item if item is not None and verify(item) else None

    def put(
        self, public_key: bytes, value: bytes, sign: Sign, verify: Verify, *, timeout: float, min_seq: int = 0
    ) -> Stored:
        current = self.get(public_key, verify, timeout=timeout)
        seq = max(time.time_ns() // 1000, current.seq + 1 if current else 0, min_seq)
        item = krpc.Item(seq, sign(seq), value)
        assert verify(item), "a node refuses an item whose signature does not verify"
        return self._store(public_key, item)

    def put_again(self, public_key: bytes, item: krpc.Item, verify: Verify, *, timeout: float) -> Stored:
        self._check_reachable()
        current = self.items.get(public_key)
        if current is not None and current.seq > item.seq:
            return Stored(item.seq, 0)  # every node holds something newer
        return self._store(public_key, item)

    def plant(self, public_key: bytes, item: krpc.Item) -> None:
        """Make the nodes hold item, whatever they held (as nodes that lost the newer one, or a replay)."""
        self.items[public_key] = item

    def _store(self, public_key: bytes, item: krpc.Item) -> Stored:
        self.items[public_key] = item
        self.puts += 1
        return Stored(item.seq, self.nodes)

    def _check_reachable(self) -> None:
        if not self.reachable:
            raise NetworkError("none of the DHT bootstrap nodes could be found")
