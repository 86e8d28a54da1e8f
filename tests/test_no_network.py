"""A machine with no network at all is told so at once: retrying is for a DHT that is slow, not for no network."""

from __future__ import annotations

import pytest
from support.records import MemoryItems

from cclink.errors import NetworkError, NoNetwork
from cclink.net.record_store import RecordStore
from cclink.net.relays import DhtAndRelays, RelayItems
from cclink.net.seq_memory import SeqMemory
from cclink.wire.keys import Identity


class NoNetworkItems(MemoryItems):
    """Items on a machine whose sockets all fail, counting the lookups tried."""

    gets: int = 0

    def get(self, public_key, verify, *, timeout):
        self.gets += 1
        raise NoNetwork("this machine has no IPv4 or IPv6 network to reach the DHT")


def test_a_lookup_with_no_network_fails_at_once_without_retrying():
    items = NoNetworkItems()
    store = RecordStore(items, SeqMemory.in_memory())
    retries: list[float] = []
    with pytest.raises(NoNetwork, match="no IPv4 or IPv6 network"):
        store.newest(Identity.generate().public_key, retries.append)
    assert (items.gets, retries) == (1, [])


def test_an_unreachable_dht_is_still_retried():
    items = MemoryItems(reachable=False)
    store = RecordStore(items, SeqMemory.in_memory())
    retries: list[float] = []
    with pytest.raises(NetworkError):
        store.newest(Identity.generate().public_key, retries.append, retry_for=1.5)
    assert retries == [1.0]


def test_no_network_and_no_relay_is_no_network():
    # A relay on a port of this machine where nothing listens: refused at once, as with no network.
    both = DhtAndRelays(NoNetworkItems(), RelayItems(("http://127.0.0.1:9/",)))
    store = RecordStore(both, SeqMemory.in_memory())
    with pytest.raises(NoNetwork, match="and no relay answered"):
        store.newest(Identity.generate().public_key)
