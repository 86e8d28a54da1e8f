"""A local DHT: a few libtorrent nodes on 127.0.0.1 (or ::1, IPv6) that know each other, a test network.

It is how a newcomer tries cclink without internet, and how the tests run.
Commands join it as a test network (endpoints.Network with test=True:
CCLINK_NETWORK=test and CCLINK_BOOTSTRAP, as export_line() prints them).
A Testnet can also bind another address of this machine (say, one in a
network namespace) and join other Testnets, which is how netlab (python -m cclink.dev.netlab)
spreads a swarm over several hosts of a lab network.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Sequence

import libtorrent as lt

from cclink.errors import NetworkError, UsageError
from cclink.net.endpoints import Endpoint, Network, format_bootstrap, format_endpoint
from cclink.net.lt_session import knock, routing_table_size, session_settings

HOST = "127.0.0.1"
HOST6 = "::1"  # an IPv6 testnet's (cclink testnet --ipv6)
# A node keeps at most 8 nodes per routing-table bucket; wanting more would never end.
MET_ENOUGH = 8
# A testnet's own nodes are on a test network that they enter by being introduced (join), not from bootstrap nodes.
_NODES_NETWORK = Network((), test=True)


class Testnet:
    """N DHT nodes on `host`; the first listens on `port` and is the bootstrap node."""

    __test__ = False  # not a pytest test class

    def __init__(self, nodes: int = 8, port: int = 0, host: str = HOST) -> None:
        if not 1 <= nodes <= 256:
            raise UsageError("a testnet has between 1 and 256 nodes")
        self.size = nodes
        self.requested_port = port
        self.host = host
        self._sessions: list[lt.session] = []

    def __enter__(self) -> Testnet:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self._sessions[0].listen_port()

    @property
    def bootstrap(self) -> str:
        """Its CCLINK_BOOTSTRAP value, `host:port`: for tools that take the bootstrap node alone."""
        return format_bootstrap(self.network.bootstrap)

    @property
    def network(self) -> Network:
        """The test network commands join: its first node as the bootstrap node."""
        return Network(((self.host, self.port),), test=True)

    def export_line(self) -> str:
        """The shell line that makes cclink in another shell use this testnet.

        `export CCLINK_NETWORK=test CCLINK_BOOTSTRAP=127.0.0.1:PORT`
        """
        assignments = (f"{name}={shlex.quote(value)}" for name, value in self.network.environment().items())
        return f"export {' '.join(assignments)}"

    @property
    def ports(self) -> list[int]:
        return [s.listen_port() for s in self._sessions]

    @property
    def endpoints(self) -> list[Endpoint]:
        return [(self.host, port) for port in self.ports]

    def start(self, timeout: float = 30) -> None:
        """Start every node, introduce them to each other, wait until they have met."""
        for index in range(self.size):
            port = self.requested_port if index == 0 else 0
            self._sessions.append(self._start_node(port))
        if self.requested_port and self.port != self.requested_port:
            self.stop()
            raise NetworkError(f"port {self.requested_port} on {self.host} is in use; choose another with --port")
        if not self.port:
            self.stop()
            raise NetworkError(f"the local DHT nodes cannot listen on {self.host}")
        self.join([], timeout)

    def join(self, others: Sequence[Endpoint], timeout: float = 30) -> None:
        """Introduce every node to this testnet's other nodes and to `others`, and wait until they have met.

        `others` are nodes elsewhere (another Testnet's endpoints); this
        testnet's own endpoints among them are ignored.
        """
        own = set(self.endpoints)
        swarm = own | {(host, port) for host, port in others}
        for session, me in zip(self._sessions, self.endpoints, strict=True):
            knock(session, list(swarm - {me}))
        self._wait_until_connected(time.monotonic() + timeout, min(len(swarm) - 1, MET_ENOUGH))

    def stop(self) -> None:
        self._sessions.clear()  # dropping a session shuts its node down

    def _start_node(self, port: int) -> lt.session:
        settings = session_settings(format_endpoint((self.host, port)), _NODES_NETWORK)
        settings["alert_mask"] = lt.alert.category_t.dht_notification
        # A test node must keep whatever it is asked to store.
        settings["dht_max_dht_items"] = 100_000
        return lt.session(settings)

    def _wait_until_connected(self, deadline: float, wanted: int) -> None:
        """Wait until every node's routing table holds `wanted` nodes."""
        pending = list(self._sessions)
        while pending:
            if time.monotonic() > deadline:
                raise NetworkError("the local DHT nodes did not find each other in time")
            pending = [s for s in pending if routing_table_size(s) < wanted]

    def __repr__(self) -> str:
        return f"Testnet(nodes={self.size}, network={self.network if self._sessions else None})"
