"""The Mainline DHT through libtorrent: sessions, and looking up BEP 44 mutable items.

This is the transport at the bottom of cclink. It knows bytes, keys as bytes
and deadlines; what the bytes mean is decided above it. Storing an item is
done by cclink's own KRPC client (dhtput), which libtorrent's binding
cannot replace (see there).
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import libtorrent as lt

from cclink import files
from cclink.errors import NetworkError, UsageError

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
REBOOTSTRAP_EVERY = 0.5
# After libtorrent's bootstrap ends, how long the nodes it found (or that
# answered a knock, which a lossy network may need a few of) may take to
# fill the table.
BOOTSTRAP_GRACE = 2.0
# A get still running after this long gets a second copy beside it, soon
# enough that it can still report a newer item before the first one's
# answer settles (SETTLE_AFTER).
GET_HEDGE_AFTER = 1.5
GET_HEDGES, GET_RETRIES = 2, 1  # retry: when every lookup so far found nothing at all
# libtorrent ends a lookup only when every node it asked has answered or
# timed out after 15 s. Live nodes answer within a round trip, so once an
# item is in hand and nothing newer arrived for this long, waiting longer
# only waits on nodes that are gone.
SETTLE_AFTER = 3.0


@dataclass(frozen=True)
class MutableItem:
    """A BEP 44 mutable item as a node returned it (libtorrent checked the signature)."""

    seq: int
    signature: bytes
    value: bytes


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


def session_settings(listen: str, bootstrap: Sequence[Endpoint], local_swarm: bool) -> dict:
    """libtorrent settings for a DHT-only session (no peers, no LSD/UPnP/NAT-PMP)."""
    settings = {
        "listen_interfaces": listen,
        "enable_dht": True,
        "dht_bootstrap_nodes": ",".join(f"{h}:{p}" for h, p in bootstrap),
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        "enable_incoming_tcp": False,
        "enable_outgoing_tcp": False,
        "enable_incoming_utp": False,
        "enable_outgoing_utp": False,
        "alert_mask": lt.alert.category_t.dht_notification | lt.alert.category_t.error_notification,
        "alert_queue_size": 10000,
    }
    if local_swarm:
        settings.update(_local_swarm_settings())
    return settings


def _local_swarm_settings() -> dict:
    # The nodes of a test swarm share one IP address (or one small subnet):
    # lift the checks that exist to stop one host from filling a routing
    # table, or nodes ignore each other after a burst of traffic.
    return {
        "dht_restrict_routing_ips": False,
        "dht_restrict_search_ips": False,
        "dht_enforce_node_id": False,
        "dht_prefer_verified_node_ids": False,
        "dht_ignore_dark_internet": False,
        "dht_block_ratelimit": 1_000_000,
        "dht_block_timeout": 0,
        "dht_upload_rate_limit": 100_000_000,
    }


# In a local swarm every command runs its own short-lived DHT node. libtorrent
# adds a node that stored an item to its routing table even when that node is
# read-only, so finished commands linger there as dead entries, and a lookup
# that meets one waits 15 s for it. Commands therefore bind their own loopback
# address, distinct from the swarm's 127.0.0.1, and filter that address out
# of their lookups: no command ever waits on another.
COMMAND_ADDRESS = "127.0.0.2"


def _ignore_other_commands() -> "lt.ip_filter":
    ip_filter = lt.ip_filter()
    ip_filter.add_rule(COMMAND_ADDRESS, COMMAND_ADDRESS, 1)  # 1 = blocked
    return ip_filter


def state_file_for(bootstrap: Sequence[Endpoint]) -> Path:
    """Where the routing table is cached: one file per bootstrap set, so a test swarm never leaks into the real one."""
    digest = hashlib.sha256(repr(sorted(bootstrap)).encode()).hexdigest()[:12]
    return files.cache_dir() / f"dht-{digest}.state"


def command_session_params(bootstrap: Sequence[Endpoint], state_file: Path | None, *, peer_wire: bool = False) -> lt.session_params:
    """Parameters for one command's libtorrent session: a read-only DHT node, and BitTorrent peers only when asked."""
    params = _load_state(state_file)
    on_this_machine = is_loopback(bootstrap)
    listen = f"{COMMAND_ADDRESS}:0" if on_this_machine else "0.0.0.0:0"
    if on_this_machine:
        params.ip_filter = _ignore_other_commands()
    private = is_private_swarm(bootstrap)
    # libtorrent treats its bootstrap nodes as routers, which it never files in
    # the routing table. The public routers are just that; the nodes of a test
    # swarm are ordinary nodes and are added as such instead (Dht pings them).
    settings = session_settings(listen, [] if private else bootstrap, private)
    # A command lives for seconds: as a read-only node (BEP 43) it never
    # enters other nodes' routing tables, where it would soon be a dead entry.
    settings["dht_read_only"] = True
    if peer_wire:
        settings.update(_peer_wire_settings(on_this_machine))
    params.settings = settings
    return params


def _peer_wire_settings(on_this_machine: bool) -> dict:
    settings = {
        "enable_incoming_tcp": True,
        "enable_outgoing_tcp": True,
        "enable_incoming_utp": True,
        # Peers learnt from the DHT are often gone. A uTP connection attempt to
        # a dead peer is only given up after a timeout, and libtorrent waits
        # for it when the session closes (seconds, for every pickup); a TCP
        # attempt is refused at once or dropped on close.
        "enable_outgoing_utp": False,
        "alert_mask": lt.alert.category_t.dht_notification
        | lt.alert.category_t.error_notification
        | lt.alert.category_t.status_notification
        | lt.alert.category_t.peer_notification
        | lt.alert.category_t.connect_notification
        | lt.alert.category_t.storage_notification,
    }
    if on_this_machine:
        # Both ends of a local transfer sit on COMMAND_ADDRESS; libtorrent
        # otherwise takes a second connection from one IP for a duplicate.
        settings["allow_multiple_connections_per_ip"] = True
    return settings


def knock(session: lt.session, nodes: Sequence[Endpoint]) -> None:
    """Ping nodes so that those which answer enter the session's routing table.

    libtorrent only asks bootstrap nodes for other nodes, once, and never
    keeps them. When the nodes they name cannot be used (on a test swarm,
    say, where they are mostly commands that have ended) the table stays
    empty, and a lost bootstrap query is not sent again for minutes.
    """
    for endpoint in nodes:
        session.add_dht_node(endpoint)


def routing_table_size(session: lt.session, timeout: float = 1.0) -> int:
    """How many nodes the session's routing table holds (0 if libtorrent does not say in time).

    For a session whose other alerts nobody waits for: it discards them.
    """
    session.post_dht_stats()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        session.wait_for_alert(50)
        for alert in session.pop_alerts():
            if isinstance(alert, lt.dht_stats_alert):
                return _nodes_in(alert)
    return 0


def _nodes_in(alert: lt.dht_stats_alert) -> int:
    return sum(bucket["num_nodes"] for bucket in alert.routing_table)


def _load_state(state_file: Path | None) -> lt.session_params:
    if state_file is not None:
        try:
            return lt.read_session_params(state_file.read_bytes(), lt.save_state_flags_t.save_dht_state)
        except (OSError, RuntimeError, ValueError):
            pass  # a missing or damaged cache only costs a cold start
    return lt.session_params()


def save_state(session: lt.session, state_file: Path | None) -> None:
    """Keep the routing table for a warm start next time; never fail a command over it."""
    if state_file is None:
        return
    params = session.session_state(lt.save_state_flags_t.save_dht_state)
    try:
        files.write_private(state_file, lt.write_session_params_buf(params, lt.save_state_flags_t.save_dht_state))
    except OSError:
        pass  # the cache is an optimisation


class Dht:
    """One libtorrent session on the DHT, for one command. Use as a context manager."""

    def __init__(self, bootstrap: Sequence[Endpoint], *, state_file: Path | None = None) -> None:
        self.bootstrap = list(bootstrap)
        self.state_file = state_file
        self._session = lt.session(command_session_params(self.bootstrap, state_file))
        self._joined = False
        self._pending: deque[lt.alert] = deque()
        self._knock_on_bootstrap_nodes()

    def __enter__(self) -> "Dht":
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        """Save the routing table for a warm start next time, then stop."""
        if self._session is None:
            return
        save_state(self._session, self.state_file)
        self._session = None  # dropping the last reference shuts libtorrent down

    # --- lookups -----------------------------------------------------------------

    def get(self, public_key: bytes, *, timeout: float) -> MutableItem | None:
        """The highest-seq item under public_key, or None when the DHT has none.

        Returns once every lookup has ended, or once an item is in hand and
        nothing newer came for SETTLE_AFTER seconds. Raises NetworkError when
        no DHT node could be reached at all, since then "none" would be a guess.
        """
        deadline = time.monotonic() + timeout
        self._wait_until_joined(deadline)
        search = _Search(self._session, public_key)
        while not search.done and time.monotonic() < deadline:
            self._feed(min(deadline, search.wake_at), search)
            search.start_if_due()
        if search.best is None and self.routing_table_size() == 0:
            raise NetworkError(
                "the DHT could not be searched: no node beyond the bootstrap nodes answered; "
                "check the network (or CCLINK_BOOTSTRAP) and try again"
            )
        return search.best

    def routing_table_size(self) -> int:
        """Like the module's routing_table_size, but keeping the alerts for get."""
        self._session.post_dht_stats()
        for alert in self._alerts_until(time.monotonic() + 2):
            if isinstance(alert, lt.dht_stats_alert):
                return _nodes_in(alert)
        return 0

    # --- internals --------------------------------------------------------------

    def _wait_until_joined(self, deadline: float) -> None:
        """Return once the routing table holds a node (the lookup itself finds the rest).

        Or, a moment after libtorrent says its bootstrap ended, with an empty
        table: libtorrent never files its bootstrap nodes in the table, so a
        swarm of one node (a lone `cclink testnet --nodes 1`) is reached only
        through them.
        """
        next_knock = time.monotonic() + REBOOTSTRAP_EVERY
        bootstrapped_at: float | None = None
        while not self._joined:
            if self.routing_table_size() > 0:
                self._joined = True
                return
            now = time.monotonic()
            if bootstrapped_at is not None and now - bootstrapped_at >= BOOTSTRAP_GRACE:
                self._joined = True
                return
            for alert in self._alerts_until(min(deadline, now + 0.05)):
                if bootstrapped_at is None and isinstance(alert, lt.dht_bootstrap_alert):
                    bootstrapped_at = time.monotonic()
            if time.monotonic() >= deadline:
                raise NetworkError("could not join the DHT in time; check the network (or CCLINK_BOOTSTRAP) and try again")
            if time.monotonic() >= next_knock:
                self._knock_on_bootstrap_nodes()
                next_knock = time.monotonic() + REBOOTSTRAP_EVERY

    def _knock_on_bootstrap_nodes(self) -> None:
        knock(self._session, self.bootstrap)

    def _feed(self, until: float, search: "_Search") -> None:
        """Hand alerts to the search until it took one, or until `until`."""
        for alert in self._alerts_until(until):
            if search.take(alert):
                return

    def _alerts_until(self, deadline: float) -> Iterator[lt.alert]:
        """Alerts as libtorrent posts them, until the deadline passes.

        A caller may stop early: alerts popped but not yet handed out stay
        queued for the next call.
        """
        while True:
            while self._pending:
                yield self._pending.popleft()
            remaining = deadline - time.monotonic()
            # wait_for_alert(0) only looks: alerts already posted are handed out even past the deadline.
            if self._session.wait_for_alert(max(0, int(remaining * 1000))):
                self._pending.extend(self._session.pop_alerts())
            elif remaining <= 0:
                return


class _Lookups:
    """Copies of one DHT lookup: up to `hedges` started one after another while the earlier ones run, then `retries` more.

    Under packet loss a lookup misses nodes, and waits 15 s for each lost
    answer; a second walk through the DHT started meanwhile often reaches the
    nodes the first missed. On a healthy network the first one ends before
    another is due, so this costs nothing there. A retry is for a caller
    whose lookups all ended empty-handed.
    """

    def __init__(self, hedges: int, retries: int, hedge_after: float, start: Callable[[], None]) -> None:
        self._hedges = hedges
        self._hedge_after = hedge_after
        self._limit = hedges + retries
        self._start = start
        self._started = 0
        self._running = 0
        self._next_start = float("-inf")

    @property
    def idle(self) -> bool:
        """True when every lookup started so far has ended."""
        return self._running == 0 and self._started > 0

    @property
    def due_at(self) -> float:
        """When start_if_due will next start one (never, while none is running)."""
        return self._next_start if self._running and self._started < self._hedges else float("inf")

    def start_if_due(self) -> None:
        """Start the first lookup, or another when the last one started hedge_after ago and is still running."""
        hedge_due = self._running and self._started < self._hedges and time.monotonic() >= self._next_start
        if self._started == 0 or hedge_due:
            self.start_now()

    def start_now(self) -> bool:
        """Start one more lookup unless the limit is reached; say whether one started."""
        if self._started >= self._limit:
            return False
        self._start()
        self._started += 1
        self._running += 1
        self._next_start = time.monotonic() + self._hedge_after
        return True

    def finish_one(self) -> None:
        self._running = max(0, self._running - 1)


class _Search:
    """Hedged gets of one key: the highest-seq item, settled SETTLE_AFTER after it arrived; one retry when none is found."""

    def __init__(self, session: lt.session, public_key: bytes) -> None:
        self._public_key = public_key
        self._lookups = _Lookups(GET_HEDGES, GET_RETRIES, GET_HEDGE_AFTER, lambda: session.dht_get_mutable_item(public_key, b""))
        self._lookups.start_if_due()
        self._settled_at = float("inf")
        self.best: MutableItem | None = None

    @property
    def done(self) -> bool:
        return self._lookups.idle or time.monotonic() >= self._settled_at

    @property
    def wake_at(self) -> float:
        return float("inf") if self.done else min(self._settled_at, self._lookups.due_at)

    def take(self, alert: lt.alert) -> bool:
        if not isinstance(alert, lt.dht_mutable_item_alert) or bytes(alert.key) != self._public_key:
            return False
        item = _item_from_alert(alert)
        if item is not None and (self.best is None or item.seq > self.best.seq):
            self.best = item
            self._settled_at = time.monotonic() + SETTLE_AFTER
        if alert.authoritative:
            self._lookups.finish_one()
            if self._lookups.idle and self.best is None:
                self._lookups.start_now()  # nothing anywhere: under loss, worth one more walk before believing it
        return True

    def start_if_due(self) -> None:
        if not self.done:
            self._lookups.start_if_due()


def _item_from_alert(alert: lt.dht_mutable_item_alert) -> MutableItem | None:
    value = alert.item
    if not isinstance(value, bytes) or alert.seq <= 0:
        return None  # "not found" arrives as an empty entry
    return MutableItem(seq=alert.seq, signature=bytes(alert.signature), value=value)
