"""Moving one file between two machines with BitTorrent, peers found through the DHT (for `--carry`).

The seeder makes a single-file torrent of an encrypted archive, announces it
on the DHT and waits for a picker to finish downloading; the fetcher knows
only the info-hash, a size and address hints from the signed record. What the
bytes are is decided above this module: here they are opaque.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import libtorrent as lt

from cclink.errors import NetworkError, TransferError
from cclink.net import endpoints, lt_session
from cclink.net.endpoints import Endpoint, Network, Scope

PIECE_SIZE = 1 << 20  # 1 MiB: few pieces even for 200 MB, small enough to resume finely
FILE_NAME = "carry.age"
SEED_ANNOUNCE_EVERY = 300.0
FETCH_ANNOUNCE_EVERY = 10.0  # while no peer is connected


def parse_endpoint(text: str) -> Endpoint | None:
    """`1.2.3.4:5` or `[::1]:5` as (host, port); None when it is neither."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return None
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    return host, int(port)


def in_scope(candidates: Sequence[Endpoint], network: Network, *, lan: bool = False) -> list[Endpoint]:
    """The endpoints within the network's scope (endpoints.Scope): only those are worth connecting to.

    Address hints come from a publisher's payload: connecting to whatever
    they name would let it make the picker knock on its own machine or its
    local network. On the public DHT only global addresses, and private ones
    too when the user says the publisher is on the same network (lan); on a
    swarm on this machine only loopback ones; on a private network only private ones.
    """
    allowed = _allowed(network.scope, lan)
    return [endpoint for endpoint in candidates if allowed(ipaddress.ip_address(endpoint[0]))]


def _allowed(scope: Scope, lan: bool) -> Callable[[endpoints.IPAddress], bool]:
    if lan and scope is Scope.PUBLIC:
        return lambda address: endpoints.is_private_use(address) or endpoints.is_public(address)
    return scope.allows


# Where no peer of the public DHT is: this machine, private and shared (CGNAT)
# networks, link-local addresses, multicast. IPv4 and IPv6.
_NOT_GLOBAL = (
    ("0.0.0.0", "0.255.255.255"),
    ("10.0.0.0", "10.255.255.255"),
    ("100.64.0.0", "100.127.255.255"),
    ("127.0.0.0", "127.255.255.255"),
    ("169.254.0.0", "169.254.255.255"),
    ("172.16.0.0", "172.31.255.255"),
    ("192.168.0.0", "192.168.255.255"),
    ("224.0.0.0", "255.255.255.255"),
    ("::", "::1"),
    ("fc00::", "fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
    ("fe80::", "febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
    ("ff00::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
)


def _public_peers_only(lan: bool = False) -> lt.ip_filter:
    """An ip_filter blocking every address no public-DHT peer can have.

    A lying node's peer list must not aim us at a LAN. With lan (the user's
    word that the publisher is on the same network), private-use networks
    stay open.
    """
    ip_filter = lt.ip_filter()
    for first, last in _NOT_GLOBAL:
        if not (lan and endpoints.is_private_use(ipaddress.ip_address(first))):
            ip_filter.add_rule(first, last, 1)  # 1 = blocked
    return ip_filter


@dataclass(frozen=True)
class SeedStatus:
    peers: int
    uploaded: int
    upload_rate: int
    # Peers that look finished: libtorrent counts them as seeds, or they closed
    # the connection as one. Any peer can claim that, so it only says when to
    # look for the recipient's acknowledgement (see flows/acknowledgement.py).
    seemingly_finished: int


@dataclass(frozen=True)
class FetchStatus:
    done: int
    total: int
    download_rate: int
    peers: int
    finished: bool
    has_metadata: bool


class _TorrentSession:
    """A libtorrent session for one command, with the DHT and the peer wire."""

    def __init__(self, network: Network, *, map_port: bool = False, lan: bool = False, port: int | None = None) -> None:
        self.network = network
        self.lan = lan
        # The routing table is kept between commands, so the next transfer joins the DHT faster.
        self.state_file = lt_session.state_file_for(network)
        self._session: lt.session | None = lt.session(
            lt_session.command_session_params(network, self.state_file, peer_wire=True, map_port=map_port, port=port)
        )
        self.public = network.scope is Scope.PUBLIC
        if self.public:
            self.session.set_ip_filter(_public_peers_only(lan))
        self._handle: lt.torrent_handle | None = None
        self._joined = False
        self._announced_at = float("-inf")
        self._knocked_at = float("-inf")

    @property
    def session(self) -> lt.session:
        assert self._session is not None, "the torrent session is closed"
        return self._session

    @property
    def handle(self) -> lt.torrent_handle:
        """The torrent's handle, once added (a Seeder's in seed())."""
        assert self._handle is not None, "no torrent added yet, or the session is closed"
        return self._handle

    def close(self) -> None:
        if self._session is None:
            return
        lt_session.save_state(self._session, self.state_file)
        self._handle = None
        self._session = None  # dropping the last reference shuts libtorrent down

    def _add(self, params: lt.add_torrent_params) -> lt.torrent_handle:
        # On a test swarm on this machine every command shares COMMAND_ADDRESS,
        # which the DHT side filters out; the peer wire must still reach it. On
        # the public DHT the filter keeps peers to public addresses.
        if not self.public:
            params.flags &= ~lt.torrent_flags.apply_ip_filter
        params.flags &= ~lt.torrent_flags.auto_managed
        params.flags &= ~lt.torrent_flags.paused
        self._handle = self.session.add_torrent(params)
        return self._handle

    def _pump(self, wait: float, announce_every: float) -> list[lt.alert]:
        """Wait up to `wait` seconds for alerts.

        Announces on the DHT once it is joined, then every announce_every seconds.
        """
        if not self._joined:
            # Only until joined: the stats alert ends the wait below at once, and
            # posting it on every call turned the transfer loops into busy loops.
            self.session.post_dht_stats()
        self.session.wait_for_alert(max(1, int(wait * 1000)))
        alerts = self.session.pop_alerts()
        for alert in alerts:
            _raise_if_failed(alert)
            if isinstance(alert, lt.dht_stats_alert) and lt_session.nodes_in(alert) > 0:
                self._joined = True
        if not self._joined and time.monotonic() - self._knocked_at > lt_session.REBOOTSTRAP_EVERY:
            # Bootstrap nodes that are not routers (a test swarm's, a private network's) are not libtorrent's to ask.
            lt_session.knock(self.session, self.network.bootstrap)
            self._knocked_at = time.monotonic()
        # libtorrent announces a new torrent at once, before the DHT has any
        # node to announce to, and then not again for many minutes.
        if self._joined and time.monotonic() - self._announced_at > announce_every:
            self.handle.force_dht_announce()
            self._announced_at = time.monotonic()
        return alerts


class Seeder(_TorrentSession):
    """Seed one file until pickers have it. Use as a context manager.

    The session starts at once, and seed() names the file later: starting
    takes libtorrent about 30 ms, which can pass while the file is made.
    With port, it listens there when that port is free, and on any port
    when not (then port says which).
    """

    def __init__(self, network: Network, port: int | None = None) -> None:
        super().__init__(network, map_port=True, port=port)  # pickers must be able to connect to us
        self._seemingly_finished: set[str] = set()

    @property
    def port(self) -> int:
        """The port it listens on: every socket has the same (lt_session.listen_interfaces)."""
        return self.session.listen_port()

    def seed(self, path: Path) -> None:
        info = lt.torrent_info(_make_torrent(path))
        params = lt.add_torrent_params()
        params.ti = info
        params.save_path = str(path.parent)
        params.flags |= lt.torrent_flags.seed_mode  # we just hashed it: skip the check
        self.info_hash = bytes.fromhex(str(info.info_hashes().v1))
        self.size = info.total_size()
        self._add(params)

    def __enter__(self) -> Seeder:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def listen_endpoints(self) -> list[Endpoint]:
        """Where pickers can reach this seeder directly, best guess first.

        On the public DHT that may be a private address, which a picker uses
        only when its user says both are on one network (Fetcher's lan).
        """
        port = self.port
        addresses = []
        for host in lt_session.listening_hosts(self.session):
            if ipaddress.ip_address(host).is_unspecified:
                addresses += _local_addresses(self.network, endpoints.family_of(host))
            else:
                addresses.append(host)
        return in_scope([(address, port) for address in addresses], self.network, lan=True)

    def poll(self, wait: float = 0.5) -> SeedStatus:
        """Wait up to `wait` seconds for news; return the current state."""
        for alert in self._pump(wait, SEED_ANNOUNCE_EVERY):
            if isinstance(alert, lt.peer_disconnected_alert) and _finished_download(alert):
                self._seemingly_finished.add(str(alert.endpoint))
        for peer in self.handle.get_peer_info():
            if peer.flags & lt.peer_info.seed:
                self._seemingly_finished.add(str(peer.ip))  # same (host, port) tuple as the alert's endpoint
        status = self.handle.status()
        return SeedStatus(
            peers=status.num_peers,
            uploaded=status.total_payload_upload,
            upload_rate=status.upload_payload_rate,
            seemingly_finished=len(self._seemingly_finished),
        )


class Fetcher(_TorrentSession):
    """Download one file known by its info-hash into a directory. Use as a context manager."""

    def __init__(
        self,
        info_hash: bytes,
        size: int,
        directory: Path,
        network: Network,
        hints: Sequence[Endpoint] = (),
        *,
        lan: bool = False,
    ) -> None:
        super().__init__(network, lan=lan)
        # Once finished, libtorrent would close its connections to seeds itself,
        # and the seeder would see only the socket close. Left open, the
        # seeder closes them with "upload to upload", which tells it that
        # this picker has the whole file (see _finished_download).
        self.session.apply_settings({"close_redundant_connections": False})
        self.size = size
        self.directory = directory
        params = lt.add_torrent_params()
        params.info_hashes = lt.info_hash_t(lt.sha1_hash(info_hash))
        params.save_path = str(directory)
        self._hints = in_scope(hints, network, lan=lan)
        # Peers added with the torrent are connected to as it starts. One added
        # by connect_peer waits for libtorrent's next round of connection
        # attempts: the first comes with its first tick (tick_interval) after
        # the session started, the next ones a second apart.
        params.peers = self._hints
        self._add(params)
        self._renamed = False
        self._hinted_at = time.monotonic()

    def __enter__(self) -> Fetcher:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @property
    def path(self) -> Path:
        return self.directory / FILE_NAME

    def poll(self, wait: float = 0.5) -> FetchStatus:
        """Wait up to `wait` seconds for news; return the download's state."""
        status = self.handle.status()
        self._pump(wait, FETCH_ANNOUNCE_EVERY if status.num_peers == 0 else float("inf"))
        status = self.handle.status()
        if status.has_metadata and not self._renamed:
            self._check_metadata()
        if time.monotonic() - self._hinted_at > 5 and status.num_peers == 0:
            for endpoint in self._hints:  # the seeder may have been busy; knock again
                self.handle.connect_peer(endpoint)
            self._hinted_at = time.monotonic()
        return FetchStatus(
            done=status.total_wanted_done,
            total=self.size,
            download_rate=status.download_payload_rate,
            peers=status.num_peers,
            finished=self._renamed and status.is_seeding,
            has_metadata=status.has_metadata,
        )

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until every downloaded byte is in the file.

        A torrent counts as finished once its pieces passed their hash
        check, which may be before libtorrent's disk threads wrote the last
        of them out (reading the file at once gave a wrong SHA-256 now and then).
        """
        self.handle.flush_cache()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.session.wait_for_alert(100)
            for alert in self.session.pop_alerts():
                _raise_if_failed(alert)
                if isinstance(alert, lt.cache_flushed_alert):
                    return
        raise TransferError("the downloaded session could not be written out in time")

    def part_ways(self, linger: float = 3.0) -> None:
        """After finishing, let libtorrent close its connections itself: that is how the seeder learns we are done."""
        deadline = time.monotonic() + linger
        while self.handle.status().num_peers > 0 and time.monotonic() < deadline:
            self.session.wait_for_alert(100)
            self.session.pop_alerts()

    def _check_metadata(self) -> None:
        """The torrent must be the one file the record promised; give it our own name."""
        info = self.handle.torrent_file()
        assert info is not None  # only called once the status has_metadata, and metadata is never dropped
        # libtorrent 2.1 names it layout() and deprecates files(); 2.0 has only files().
        files = info.layout() if hasattr(info, "layout") else info.files()
        if files.num_files() != 1 or files.file_size(0) != self.size:
            raise TransferError("the carried data offered for this handoff does not match its record")
        if files.file_path(0) != FILE_NAME:
            self.handle.rename_file(0, FILE_NAME)
        self._renamed = True


def _raise_if_failed(alert: lt.alert) -> None:
    if isinstance(alert, (lt.file_error_alert, lt.torrent_error_alert)):
        raise NetworkError(f"the transfer failed: {alert.message()}")


def _make_torrent(path: Path) -> bytes:
    """A v1 single-file torrent of path (v1: its 20-byte info-hash is what peers find on the DHT)."""
    entry = lt.create_file_entry(path.name, path.stat().st_size)
    creator = lt.create_torrent([entry], PIECE_SIZE, lt.create_torrent.v1_only)
    creator.set_creator("")
    lt.set_piece_hashes(creator, str(path.parent))
    return lt.bencode(creator.generate())


# libtorrent's errors::upload_upload_connection and errors::uninteresting_upload_peer:
# the codes it closes a connection with when both ends have the whole file.
_BOTH_HAVE_IT = {37, 38}


def _finished_download(alert: lt.peer_disconnected_alert) -> bool:
    """A connection closed because both ends now have the whole file: the picker says it finished.

    Whichever end notices first closes it; the picker says why (reason
    upload_to_upload), and the seeder's own close carries an error code.
    """
    if alert.reason == lt.close_reason_t.upload_to_upload:
        return True
    return alert.error.category().name() == "libtorrent" and alert.error.value() in _BOTH_HAVE_IT


def _local_addresses(network: Network, family: socket.AddressFamily) -> list[str]:
    """This machine's address of family on the route towards the DHT (no packet is sent)."""
    for host, port in _route_targets(network, family)[:1]:
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as probe:
                probe.connect((host, port))
                return [probe.getsockname()[0]]
        except OSError:
            continue
    return []


# Any global IPv6 address does: connecting a UDP socket only asks the routing table for a source address.
_ROUTE_PROBE6: Endpoint = ("2001:4860:4860::8888", 53)


def _route_targets(network: Network, family: socket.AddressFamily) -> list[Endpoint]:
    """Bootstrap nodes of family to ask the routing table about: addresses, or names for IPv4."""
    if family == socket.AF_INET:
        return [e for e in network.bootstrap if endpoints.family_of(e[0]) == socket.AF_INET]
    literal = [e for e in network.bootstrap if _is_ipv6(e[0])]
    # The public routers are names, most without an IPv6 address: the default route says where IPv6 peers are.
    return literal or ([_ROUTE_PROBE6] if network.scope is Scope.PUBLIC else [])


def _is_ipv6(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).version == 6
    except ValueError:
        return False
