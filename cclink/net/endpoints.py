"""Where the DHT is: endpoints, and the `Network` a command joins (CCLINK_BOOTSTRAP, CCLINK_NETWORK, CCLINK_RELAYS).

A Network is the bootstrap nodes, the pkarr relays (relays.py) that reach
the same records over HTTP, and two things derived or declared:
- its address scope (`Scope`), which follows from the bootstrap addresses:
  which addresses its nodes and peers may have;
- whether it is a test network, which is declared (CCLINK_NETWORK=test), never
  guessed: a swarm that cclink's tests, demo, bench or lab built, whose nodes
  share one address or a few. Only then do commands behave as such a swarm
  needs (a shared node id, COMMAND_ADDRESS, libtorrent's crowding limits
  lifted). docs/design.md, "Test networks and address scope", says why.

Shared by cclink's own KRPC client (dht_client.py), the libtorrent sessions
(lt_session.py) and BitTorrent transfers (bittorrent.py).
"""

from __future__ import annotations

import enum
import functools
import ipaddress
import os
import re
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from cclink.errors import UsageError
from cclink.text import printable

Endpoint = tuple[str, int]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# The routers pkarr's own DHT client starts from (host names: each is looked up for IPv4 and IPv6
# addresses both; neither pkarr nor libtorrent lists a router of its own for IPv6).
DEFAULT_BOOTSTRAP: tuple[Endpoint, ...] = (
    ("router.bittorrent.com", 6881),
    ("dht.transmissionbt.com", 6881),
    ("dht.libtorrent.org", 25401),
    ("relay.pkarr.org", 6881),
)
BOOTSTRAP_ENV = "CCLINK_BOOTSTRAP"
NETWORK_ENV = "CCLINK_NETWORK"
PUBLIC_VALUE, TEST_VALUE = "public", "test"
# pkarr's own default relays (pkarr's DEFAULT_RELAYS): the public network's unless CCLINK_RELAYS says otherwise.
DEFAULT_RELAYS: tuple[str, ...] = ("https://pkarr.pubky.app", "https://pkarr.pubky.org")
RELAYS_ENV = "CCLINK_RELAYS"
NO_RELAYS = "none"

# In a test swarm on this machine every command runs its own short-lived DHT
# client. libtorrent files a node that stored an item or announced a peer in
# its routing table even when that node is read-only, so finished commands
# linger there as dead entries, and a lookup that meets one waits for it
# (libtorrent: 15 s). Commands therefore bind their own loopback address,
# distinct from the swarm's 127.0.0.1, and filter that address out of their
# lookups (lt_session's ip_filter; dht_client does the same): no command ever
# waits on another.
COMMAND_ADDRESS = "127.0.0.2"
# IPv6 has one loopback address, which commands share with a swarm's nodes
# on ::1. There they are told apart by node id instead: every command on a
# test network uses the same one (dht_client.TEST_SWARM_NODE_ID), and
# lookups pass over contacts with it.
COMMAND_ADDRESS6 = "::1"


def family_of(host: str) -> socket.AddressFamily:
    """AF_INET6 for an IPv6 address (as text), else AF_INET."""
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def parse_bootstrap(text: str) -> tuple[Endpoint, ...]:
    """Read `host:port[,host:port...]` (an IPv6 host in brackets); UsageError on anything else."""
    endpoints = []
    for part in text.split(","):
        host, sep, port = part.strip().rpartition(":")
        host = host.strip("[]")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise UsageError(f"{BOOTSTRAP_ENV} must be host:port[,host:port...], not '{text}'")
        endpoints.append((host, int(port)))
    return tuple(endpoints)


def format_endpoint(endpoint: Endpoint) -> str:
    """`1.2.3.4:5`, `[::1]:5` or `host.name:5`."""
    host, port = endpoint
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def format_bootstrap(endpoints: tuple[Endpoint, ...]) -> str:
    """The CCLINK_BOOTSTRAP text that parse_bootstrap reads back as endpoints."""
    return ",".join(format_endpoint(endpoint) for endpoint in endpoints)


# --- relays ---------------------------------------------------------------------------

_RELAY_URL = re.compile(
    r"(?P<scheme>https?)://"
    r"(?P<host>[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])"
    r"(?::(?P<port>[0-9]{1,5}))?"
    r"(?P<path>(?:/[A-Za-z0-9._~!$&'()*+,;=:@%-]*)*)",
    re.IGNORECASE,
)


def parse_relays(text: str) -> tuple[str, ...]:
    """Read `none` (no relays) or `URL[,URL...]`; UsageError on anything else.

    A relay URL is http or https, a host (an IPv6 address in brackets), an
    optional port and an optional path prefix: no user, query or fragment.
    Each comes back as `scheme://host[:port][/path]`, scheme and host in
    lower case, without a trailing slash, each relay once.
    """
    if text.strip().lower() == NO_RELAYS:
        return ()
    relays: list[str] = []
    for part in text.split(","):
        relay = _relay_url(part.strip())
        if relay is None:
            raise UsageError(
                f"{RELAYS_ENV} must be '{NO_RELAYS}' or http(s)://host[:port][/path][,...] "
                f"(no user, query or fragment), not '{printable(part.strip())}'"
            )
        if relay not in relays:
            relays.append(relay)
    return tuple(relays)


def _relay_url(text: str) -> str | None:
    match = _RELAY_URL.fullmatch(text)
    if match is None:
        return None
    host, port = match["host"].lower(), match["port"]
    if host.startswith("[") and _ip(host[1:-1]) is None:
        return None
    if port is not None and not 0 < int(port) < 65536:
        return None
    return f"{match['scheme'].lower()}://{host}{f':{int(port)}' if port else ''}{match['path'].rstrip('/')}"


def format_relays(relays: tuple[str, ...]) -> str:
    """The CCLINK_RELAYS text that parse_relays reads back as relays."""
    return ",".join(relays) or NO_RELAYS


# --- address scope ----------------------------------------------------------------------


def is_public(address: IPAddress) -> bool:
    """An address a node or peer of the public internet can have: for IPv6, global unicast (2000::/3) only."""
    if isinstance(address, ipaddress.IPv6Address) and address not in _GLOBAL_UNICAST6:
        return False  # unique local, link-local, IPv4-mapped and the rest: never a public node's
    return address.is_global and not address.is_multicast  # Python counts 224.0.0.0/4 as global


def is_private_use(address: IPAddress) -> bool:
    """An address of a private network: RFC 1918, or IPv6 unique local."""
    return any(address in network for network in _PRIVATE_USE)


_GLOBAL_UNICAST6 = ipaddress.ip_network("2000::/3")
_PRIVATE_USE = tuple(ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"))


class Scope(enum.Enum):
    """Which addresses the nodes and peers of a DHT may have: where its bootstrap nodes are."""

    THIS_MACHINE = "this machine"  # every bootstrap address loopback
    PRIVATE = "a private network"  # every one loopback or private-use, and not all loopback
    PUBLIC = "the internet"  # anything else, host names included

    def allows(self, address: IPAddress) -> bool:
        return _ALLOWED[self](address)


_ALLOWED: dict[Scope, Callable[[IPAddress], bool]] = {
    Scope.THIS_MACHINE: lambda address: address.is_loopback,
    Scope.PRIVATE: is_private_use,
    Scope.PUBLIC: is_public,
}


def _ip(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None  # a host name: the public DHT's routers, or someone's own node


def _scope_of(endpoints: tuple[Endpoint, ...]) -> Scope:
    addresses = [_ip(host) for host, _ in endpoints]
    if not addresses or None in addresses:
        return Scope.PUBLIC
    if all(address.is_loopback for address in addresses if address is not None):
        return Scope.THIS_MACHINE
    if all(address.is_loopback or is_private_use(address) for address in addresses if address is not None):
        return Scope.PRIVATE
    return Scope.PUBLIC


# --- the network -----------------------------------------------------------------------


@dataclass(frozen=True)
class Network:
    """The DHT a command joins: where to start (bootstrap), and whether cclink built it to test on (test)."""

    bootstrap: tuple[Endpoint, ...]
    test: bool = False
    relays: tuple[str, ...] = ()  # pkarr relay URLs (parse_relays' form): records go through them too

    @classmethod
    def from_environment(cls, environment: Mapping[str, str] | None = None) -> Network:
        """CCLINK_BOOTSTRAP (else the public routers), CCLINK_NETWORK (`public`, the default, or `test`)
        and CCLINK_RELAYS (else pkarr's public relays, but none on a test network).

        UsageError for any other CCLINK_NETWORK, for `test` without
        CCLINK_BOOTSTRAP (a test network is never the public routers), and
        for a malformed CCLINK_RELAYS.
        """
        environment = os.environ if environment is None else environment
        bootstrap_text = environment.get(BOOTSTRAP_ENV, "").strip()
        kind = environment.get(NETWORK_ENV, "").strip() or PUBLIC_VALUE
        if kind not in (PUBLIC_VALUE, TEST_VALUE):
            raise UsageError(f"{NETWORK_ENV} must be '{PUBLIC_VALUE}' or '{TEST_VALUE}', not '{kind}'")
        if kind == TEST_VALUE and not bootstrap_text:
            raise UsageError(
                f"{NETWORK_ENV}={TEST_VALUE} needs {BOOTSTRAP_ENV} (the nodes of the test network, "
                "as `cclink testnet` prints them): a test network is never the public DHT"
            )
        bootstrap = parse_bootstrap(bootstrap_text) if bootstrap_text else DEFAULT_BOOTSTRAP
        relays_text = environment.get(RELAYS_ENV, "").strip()
        # Tests and labs never reach the internet unless they name a relay themselves.
        relays = parse_relays(relays_text) if relays_text else _default_relays(test=kind == TEST_VALUE)
        return cls(bootstrap, test=kind == TEST_VALUE, relays=relays)

    def environment(self) -> dict[str, str]:
        """CCLINK_NETWORK, CCLINK_BOOTSTRAP and CCLINK_RELAYS for a command to join this network.

        CCLINK_RELAYS only where the relays are not the default for the kind
        of network, so that a test network's export line stays two variables.
        """
        variables = {
            NETWORK_ENV: TEST_VALUE if self.test else PUBLIC_VALUE,
            BOOTSTRAP_ENV: format_bootstrap(self.bootstrap),
        }
        if self.relays != _default_relays(test=self.test):
            variables[RELAYS_ENV] = format_relays(self.relays)
        return variables

    # --- where it is: follows from the bootstrap addresses ---

    @functools.cached_property
    def scope(self) -> Scope:
        return _scope_of(self.bootstrap)

    def allows(self, host: str) -> bool:
        """Whether a node or a peer at host (an IP address) is within the network's scope."""
        address = _ip(host)
        return address is not None and self.scope.allows(address)

    @property
    def bootstrap_nodes_are_routers(self) -> bool:
        """Whether libtorrent is given the bootstrap nodes as routers (which it never files in its routing table).

        The public routers are just that; a test swarm's nodes, and a private
        network's, are ordinary nodes, which commands ping instead (lt_session.knock).
        """
        return self.scope is Scope.PUBLIC and not self.test

    @property
    def maps_ports(self) -> bool:
        """Whether a seeder may ask the home router (UPnP, NAT-PMP) to forward its port: only for the internet."""
        return self.scope is Scope.PUBLIC and not self.test

    # --- test behaviour: only when declared ---

    @property
    def commands_share_node_id(self) -> bool:
        """Whether every command uses one fixed node id (dht_client.TEST_SWARM_NODE_ID) instead of a random one."""
        return self.test

    @property
    def binds_command_address(self) -> bool:
        """Whether commands bind COMMAND_ADDRESS and ignore it in lookups: a test swarm wholly on this machine."""
        return self.test and self.scope is Scope.THIS_MACHINE

    @property
    def lifts_crowding_limits(self) -> bool:
        """Whether libtorrent's limits on many nodes at one address are lifted (its nodes share one or a few)."""
        return self.test


def _default_relays(*, test: bool) -> tuple[str, ...]:
    return () if test else DEFAULT_RELAYS


PUBLIC = Network(DEFAULT_BOOTSTRAP, relays=DEFAULT_RELAYS)
