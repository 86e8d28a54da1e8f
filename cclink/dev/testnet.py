"""A local DHT: a few libtorrent nodes on 127.0.0.1 that know each other.

It is how a newcomer tries cclink without internet, and how the tests run.
A Testnet can also bind another address of this machine (say, one in a
network namespace) and join other Testnets, which is how scripts/netlab
spreads a swarm over several hosts of a lab network.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import libtorrent as lt

from cclink.errors import NetworkError, UsageError
from cclink.net.endpoints import Endpoint
from cclink.net.lt_session import knock, routing_table_size, session_settings

HOST = "127.0.0.1"
# A node keeps at most 8 nodes per routing-table bucket; wanting more would never end.
MET_ENOUGH = 8


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
        """The value for CCLINK_BOOTSTRAP."""
        return f"{self.host}:{self.port}"

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
        settings = session_settings(f"{self.host}:{port}", [], local_swarm=True)
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
        return f"Testnet(nodes={self.size}, bootstrap={self.bootstrap if self._sessions else None})"
