"""libtorrent sessions on the Mainline DHT: their settings, joining, and the routing-table cache.

libtorrent's DHT finds the peers of a `--carry` transfer (bittorrent.py);
handoff records, BEP 44 items, are got and put by cclink's own KRPC client
(dht_client.py). Both join the network of endpoints.py.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import socket
import time
from collections.abc import Sequence
from pathlib import Path
from typing import cast

import libtorrent as lt

from cclink.local import files
from cclink.net.endpoints import COMMAND_ADDRESS, COMMAND_ADDRESS6, Endpoint, Network, family_of, format_endpoint

REBOOTSTRAP_EVERY = 0.5


def session_settings(listen: str, network: Network) -> lt.settings_pack:
    """libtorrent settings for a DHT-only session on network (no peers, no LSD/UPnP/NAT-PMP)."""
    # libtorrent treats its bootstrap nodes as routers, which it never files in
    # the routing table; other nodes are pinged instead (knock).
    routers = network.bootstrap if network.bootstrap_nodes_are_routers else ()
    settings: lt.settings_pack = {
        "listen_interfaces": listen,
        "enable_dht": True,
        "dht_bootstrap_nodes": ",".join(f"{h}:{p}" for h, p in routers),
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
    if network.lifts_crowding_limits:
        settings.update(_crowded_swarm_settings())
    return settings


def _crowded_swarm_settings() -> lt.settings_pack:
    # The nodes of a test swarm share one IP address (or a few): lift the
    # checks that exist to stop one host from filling a routing table, or
    # nodes ignore each other after a burst of traffic. A real DHT keeps them.
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


def _ignore_other_commands() -> lt.ip_filter:
    ip_filter = lt.ip_filter()
    ip_filter.add_rule(COMMAND_ADDRESS, COMMAND_ADDRESS, 1)  # 1 = blocked
    return ip_filter


def state_file_for(network: Network) -> Path:
    """Where the routing table is cached: one file per bootstrap set, so a test swarm never leaks into the real one."""
    digest = hashlib.sha256(repr(sorted(network.bootstrap)).encode()).hexdigest()[:12]
    return files.cache_dir() / f"dht-{digest}.state"


def command_session_params(
    network: Network,
    state_file: Path | None,
    *,
    peer_wire: bool = False,
    map_port: bool = False,
    port: int | None = None,
) -> lt.session_params:
    """Parameters for one command's libtorrent session: a read-only DHT node, and BitTorrent peers only when asked.

    With map_port (for a seeder), the session asks the local router, by UPnP
    and NAT-PMP, to forward its listening port, so that pickers on other
    networks can connect to a publisher behind a home router. Only on the
    internet (Network.maps_ports). With port, it listens there if that port
    is free (see listen_interfaces).
    """
    params = _load_state(state_file)
    shares_command_address = network.binds_command_address
    if shares_command_address:
        params.ip_filter = _ignore_other_commands()
    settings = session_settings(listen_interfaces(network, port), network)
    # A command lives for seconds: as a read-only node (BEP 43) it never
    # enters other nodes' routing tables, where it would soon be a dead entry.
    settings["dht_read_only"] = True
    if peer_wire:
        settings.update(_peer_wire_settings(shares_command_address))
    if map_port and network.maps_ports:
        settings.update({"enable_upnp": True, "enable_natpmp": True})
    params.settings = settings
    return params


def listen_interfaces(network: Network, port: int | None = None) -> str:
    """libtorrent's listen_interfaces for a command: every address family this machine has that the network may use.

    One concrete address gets any port (0); several sockets share one port,
    which is the one a seeder's address hints name. A port asked for (the
    one the hints of a record already published name, for the agent taking
    over its seeding) is used when it is free on all of them, else any port.
    """
    wanted = _listen_hosts(network)
    # With none of them here, libtorrent is left to fail as it does.
    hosts = [host for host in wanted if _bindable(host)] or wanted
    if port is None or not _free(hosts, port):
        one_socket = len(hosts) == 1 and not ipaddress.ip_address(hosts[0]).is_unspecified
        port = 0 if one_socket else _free_port(hosts)
    return ",".join(format_endpoint((host, port)) for host in hosts)


def listening_hosts(session: lt.session) -> list[str]:
    """The addresses (as listen_interfaces names them: maybe 0.0.0.0 or ::) the session listens on."""
    entries = session.get_settings()["listen_interfaces"].split(",")
    return [entry.rpartition(":")[0].strip("[]") for entry in entries if entry]


def _listen_hosts(network: Network) -> list[str]:
    if network.binds_command_address:
        # A swarm on this machine: its commands' own addresses, in the families of its nodes.
        families = {family_of(host) for host, _ in network.bootstrap}
        return [host for family, host in _COMMAND_ADDRESSES if family in families]
    # Elsewhere IPv6 too wherever the machine has it: a host may have IPv6 alone.
    return ["0.0.0.0", "::"]


_COMMAND_ADDRESSES = ((socket.AF_INET, COMMAND_ADDRESS), (socket.AF_INET6, COMMAND_ADDRESS6))


def _bindable(host: str) -> bool:
    """Whether this machine has the address (for :: and 0.0.0.0: the address family)."""
    try:
        with socket.socket(family_of(host), socket.SOCK_DGRAM) as probe:
            probe.bind((host, 0))
    except OSError:
        return False
    return True


def _free_port(hosts: Sequence[str]) -> int:
    """A port that is free for TCP and UDP on every one of hosts right now (0 if none was found).

    libtorrent turns 0.0.0.0 and :: into one socket per interface, and with
    port 0 each of them gets a port of its own. A seeder's address hint
    names one port, and pickers on the network must find it on every interface.
    """
    for _ in range(20):
        try:
            return _bind_one_port(hosts)
        except OSError:
            continue  # taken on one of them: try another
    return 0


def _free(hosts: Sequence[str], port: int) -> bool:
    """Whether port is free for TCP and UDP on every one of hosts right now."""
    try:
        return _bind_one_port(hosts, port) == port
    except OSError:
        return False


def _bind_one_port(hosts: Sequence[str], port: int = 0) -> int:
    """Bind port (0: the first socket picks one) for TCP and UDP on every one of hosts, and let go; the port."""
    with contextlib.ExitStack() as sockets:
        for host in hosts:
            family = family_of(host)
            for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
                probe = sockets.enter_context(socket.socket(family, kind))
                if family == socket.AF_INET6:
                    # As libtorrent's own sockets: [::] must not also claim the IPv4 port.
                    probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                probe.bind((host, port))
                port = probe.getsockname()[1]
    return port


_FAST_TRANSFER = (
    "send_buffer_low_watermark",
    "send_buffer_watermark",
    "send_buffer_watermark_factor",
    "send_not_sent_low_watermark",
    "max_out_request_queue",
    "max_peer_recv_buffer_size",
)


def _peer_wire_settings(shares_command_address: bool) -> lt.settings_pack:
    settings: lt.settings_pack = {
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
        # One transfer, to one or two peers, as fast as the link allows: the
        # send and request buffers of libtorrent's high_performance_seed
        # preset. The defaults suit a client feeding hundreds of peers; they
        # held a loopback transfer of 38 MB to about 0.2 s, and these to 0.05 s.
        **_fast_transfer_settings(),
    }
    if shares_command_address:
        # Both ends of a local transfer sit on COMMAND_ADDRESS; libtorrent
        # otherwise takes a second connection from one IP for a duplicate.
        settings["allow_multiple_connections_per_ip"] = True
    return settings


def _fast_transfer_settings() -> lt.settings_pack:
    preset = lt.high_performance_seed()
    # A subset of a settings_pack is one; mypy cannot follow a TypedDict through a comprehension.
    # (A string: the stub's settings_pack does not exist at run time.)
    return cast("lt.settings_pack", {name: value for name, value in preset.items() if name in _FAST_TRANSFER})


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
                return nodes_in(alert)
    return 0


def nodes_in(alert: lt.dht_stats_alert) -> int:
    """How many nodes a stats alert counts in the routing table."""
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
        files.write_private(
            state_file, lt.write_session_params_buf(params, lt.save_state_flags_t.save_dht_state), durable=False
        )
    except OSError:
        pass  # the cache is an optimisation
