"""Where the DHT is: endpoints, the bootstrap nodes (CCLINK_BOOTSTRAP or public routers), and their network.

Shared by cclink's own KRPC client (dht_client.py), the libtorrent sessions
(lt_session.py) and BitTorrent transfers (bittorrent.py).
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Sequence

from cclink.errors import UsageError

Endpoint = tuple[str, int]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# The routers pkarr's own DHT client starts from.
DEFAULT_BOOTSTRAP: tuple[Endpoint, ...] = (
    ("router.bittorrent.com", 6881),
    ("dht.transmissionbt.com", 6881),
    ("dht.libtorrent.org", 25401),
    ("relay.pkarr.org", 6881),
)
BOOTSTRAP_ENV = "CCLINK_BOOTSTRAP"


def parse_bootstrap(text: str) -> list[Endpoint]:
    """Read `host:port[,host:port...]`; UsageError on anything else."""
    endpoints = []
    for part in text.split(","):
        host, sep, port = part.strip().rpartition(":")
        host = host.strip("[]")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise UsageError(f"{BOOTSTRAP_ENV} must be host:port[,host:port...], not '{text}'")
        endpoints.append((host, int(port)))
    return endpoints


def bootstrap_from_environment() -> list[Endpoint]:
    """CCLINK_BOOTSTRAP when set, else the public routers."""
    text = os.environ.get(BOOTSTRAP_ENV, "").strip()
    return parse_bootstrap(text) if text else list(DEFAULT_BOOTSTRAP)


def _all_addresses(endpoints: Sequence[Endpoint], test: Callable[[IPAddress], bool]) -> bool:
    try:
        return all(test(ipaddress.ip_address(host)) for host, _ in endpoints)
    except ValueError:
        return False  # a host name: the public DHT's routers


def is_loopback(endpoints: Sequence[Endpoint]) -> bool:
    """True when every endpoint is a loopback address: a swarm on this machine."""
    return _all_addresses(endpoints, lambda address: address.is_loopback)


def is_private_swarm(endpoints: Sequence[Endpoint]) -> bool:
    """True when every endpoint is a loopback or private address: a test swarm, on this machine or a lab network."""
    return _all_addresses(endpoints, lambda address: address.is_loopback or address.is_private)


# In a local swarm every command runs its own short-lived DHT client.
# libtorrent files a node that stored an item or announced a peer in its
# routing table even when that node is read-only, so finished commands linger
# there as dead entries, and a lookup that meets one waits for it (libtorrent:
# 15 s). Commands therefore bind their own loopback address, distinct from
# the swarm's 127.0.0.1, and filter that address out of their lookups (the
# ip_filter below; dhtitems does the same): no command ever waits on another.
COMMAND_ADDRESS = "127.0.0.2"
