"""A local DHT: a few libtorrent nodes on 127.0.0.1 that know each other.

It is how a newcomer tries cclink without internet, and how the tests run.
"""

from __future__ import annotations

import time

import libtorrent as lt

from cclink.dht import session_settings
from cclink.errors import NetworkError, UsageError

HOST = "127.0.0.1"


class Testnet:
    """N DHT nodes; the first listens on `port` and is the bootstrap node."""

    __test__ = False  # not a pytest test class

    def __init__(self, nodes: int = 8, port: int = 0) -> None:
        if not 1 <= nodes <= 256:
            raise UsageError("a testnet has between 1 and 256 nodes")
        self.size = nodes
        self.requested_port = port
        self._sessions: list[lt.session] = []

    def __enter__(self) -> "Testnet":
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
        return f"{HOST}:{self.port}"

    @property
    def ports(self) -> list[int]:
        return [s.listen_port() for s in self._sessions]

    def start(self, timeout: float = 30) -> None:
        """Start every node, introduce them to each other, wait until they have met."""
        for index in range(self.size):
            port = self.requested_port if index == 0 else 0
            self._sessions.append(self._start_node(port))
        if self.requested_port and self.port != self.requested_port:
            self.stop()
            raise NetworkError(f"port {self.requested_port} on {HOST} is in use; choose another with --port")
        ports = self.ports
        for session in self._sessions:
            for port in ports:
                if port != session.listen_port():
                    session.add_dht_node((HOST, port))
        self._wait_until_connected(time.monotonic() + timeout)

    def stop(self) -> None:
        self._sessions.clear()  # dropping a session shuts its node down

    def _start_node(self, port: int) -> lt.session:
        settings = session_settings(f"{HOST}:{port}", [], local_swarm=True)
        settings["alert_mask"] = lt.alert.category_t.dht_notification
        # A test node must keep whatever it is asked to store.
        settings["dht_max_dht_items"] = 100_000
        return lt.session(settings)

    def _wait_until_connected(self, deadline: float) -> None:
        """Wait until every node's routing table holds most of the swarm."""
        wanted = min(self.size - 1, 8)
        pending = list(self._sessions)
        while pending:
            if time.monotonic() > deadline:
                raise NetworkError("the local DHT nodes did not find each other in time")
            pending = [s for s in pending if _routing_table_size(s) < wanted]

    def __repr__(self) -> str:
        return f"Testnet(nodes={self.size}, bootstrap={self.bootstrap if self._sessions else None})"


def _routing_table_size(session: lt.session) -> int:
    session.post_dht_stats()
    deadline = time.monotonic() + 1
    while time.monotonic() < deadline:
        session.wait_for_alert(100)
        for alert in session.pop_alerts():
            if isinstance(alert, lt.dht_stats_alert):
                return sum(bucket["num_nodes"] for bucket in alert.routing_table)
    return 0
