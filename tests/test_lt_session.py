"""A command's libtorrent sessions: their settings (lt_session.command_session_params), a picker reaching a seeder."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import libtorrent as lt
import pytest
from support.carry import WAIT

from cclink.net import bittorrent, endpoints, lt_session
from cclink.net.endpoints import Network

ON_THIS_MACHINE = (("127.0.0.1", 6881),)
ON_A_LAN = (("10.1.2.3", 6881),)
# What a test swarm, whose nodes share an address, needs lifted.
CROWDING_LIMITS = (
    "dht_restrict_routing_ips",
    "dht_restrict_search_ips",
    "dht_enforce_node_id",
    "dht_prefer_verified_node_ids",
    "dht_block_ratelimit",
    "dht_block_timeout",
)


def settings(network: Network, **flags) -> lt.settings_pack:
    return lt_session.command_session_params(network, None, **flags).settings


def params(network: Network, **flags) -> lt.session_params:
    return lt_session.command_session_params(network, None, **flags)


def test_a_seeder_on_the_public_dht_asks_the_router_to_forward_its_port():
    chosen = settings(endpoints.PUBLIC, peer_wire=True, map_port=True)
    assert chosen["enable_upnp"] and chosen["enable_natpmp"]


@pytest.mark.parametrize("bootstrap", [ON_THIS_MACHINE, ON_A_LAN])
@pytest.mark.parametrize("test", [True, False])
def test_no_port_mapping_on_a_test_network_or_off_the_internet(bootstrap, test):
    chosen = settings(Network(bootstrap, test=test), peer_wire=True, map_port=True)
    assert not chosen["enable_upnp"] and not chosen["enable_natpmp"]


def test_a_picker_maps_no_port():
    chosen = settings(endpoints.PUBLIC, peer_wire=True)
    assert not chosen["enable_upnp"] and not chosen["enable_natpmp"]


def test_every_command_is_a_read_only_dht_node():
    assert settings(endpoints.PUBLIC)["dht_read_only"]
    assert settings(Network(ON_THIS_MACHINE, test=True), peer_wire=True)["dht_read_only"]


# --- test behaviour only on a test network -------------------------------------------------


@pytest.mark.parametrize("bootstrap", [ON_THIS_MACHINE, ON_A_LAN], ids=["loopback", "private"])
def test_a_dht_at_loopback_or_private_addresses_without_the_test_flag_keeps_libtorrents_limits(bootstrap):
    """A real DHT on a LAN is no test swarm: libtorrent's defaults stand, and commands bind no address of their own."""
    chosen = params(Network(bootstrap), peer_wire=True)
    defaults = lt.default_settings()

    for name in CROWDING_LIMITS:
        assert chosen.settings.get(name, defaults[name]) == defaults[name], name
    assert not chosen.settings["listen_interfaces"].startswith(endpoints.COMMAND_ADDRESS)
    assert not chosen.settings.get("allow_multiple_connections_per_ip", False)
    assert chosen.ip_filter.access(endpoints.COMMAND_ADDRESS) == 0


@pytest.mark.parametrize("bootstrap", [ON_THIS_MACHINE, ON_A_LAN], ids=["loopback", "private"])
def test_a_test_network_lifts_libtorrents_limits_on_nodes_sharing_an_address(bootstrap):
    chosen = settings(Network(bootstrap, test=True), peer_wire=True)

    assert not any(chosen[name] for name in CROWDING_LIMITS if name != "dht_block_ratelimit")
    assert chosen["dht_block_ratelimit"] > lt.default_settings()["dht_block_ratelimit"]


def test_a_test_network_on_this_machine_puts_commands_on_their_own_address_and_out_of_each_others_way():
    chosen = params(Network(ON_THIS_MACHINE, test=True), peer_wire=True)

    assert chosen.settings["listen_interfaces"] == f"{endpoints.COMMAND_ADDRESS}:0"
    assert chosen.ip_filter.access(endpoints.COMMAND_ADDRESS) == 1
    assert chosen.settings["allow_multiple_connections_per_ip"]


def test_a_test_network_elsewhere_binds_no_loopback_address():
    """A lab's test network spans hosts: commands there listen on every interface."""
    chosen = params(Network(ON_A_LAN, test=True))

    assert chosen.settings["listen_interfaces"].startswith("0.0.0.0:")
    assert chosen.ip_filter.access(endpoints.COMMAND_ADDRESS) == 0


@pytest.mark.parametrize(
    "network, routers",
    [
        (endpoints.PUBLIC, ",".join(f"{host}:{port}" for host, port in endpoints.DEFAULT_BOOTSTRAP)),
        (Network(ON_A_LAN), ""),
        (Network(ON_THIS_MACHINE, test=True), ""),
    ],
    ids=["public", "private", "test"],
)
def test_only_the_internets_bootstrap_nodes_are_given_to_libtorrent_as_routers(network, routers):
    """libtorrent never files a router in its routing table; other bootstrap nodes are pinged as ordinary nodes."""
    assert settings(network)["dht_bootstrap_nodes"] == routers


# --- address families ---------------------------------------------------------------------


def can_bind(host: str) -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind((host, 0))
    except OSError:
        return False
    return True


def listening(network: Network, port: int | None = None) -> list[tuple[str, int]]:
    entries = settings(network, peer_wire=True, port=port)["listen_interfaces"].split(",")
    return [(host.strip("[]"), int(port)) for host, _, port in (entry.rpartition(":") for entry in entries)]


def test_a_test_network_on_ipv6_loopback_puts_commands_on_it():
    assert listening(Network((("::1", 6881),), test=True)) == [("::1", 0)]


@pytest.mark.skipif(not can_bind("::1"), reason="no IPv6 loopback here")
def test_a_dual_stack_test_network_puts_commands_on_both_loopbacks_at_one_port():
    (v4, port4), (v6, port6) = listening(Network((*ON_THIS_MACHINE, ("::1", 6881)), test=True))

    assert (v4, v6) == (endpoints.COMMAND_ADDRESS, "::1")
    assert port4 == port6 != 0


@pytest.mark.skipif(not can_bind("::"), reason="no IPv6 here")
@pytest.mark.parametrize("network", [endpoints.PUBLIC, Network(ON_A_LAN), Network(ON_A_LAN, test=True)])
def test_elsewhere_commands_listen_on_ipv4_and_ipv6_at_one_port(network):
    (v4, port4), (v6, port6) = listening(network)

    assert (v4, v6) == ("0.0.0.0", "::")
    assert port4 == port6 != 0


# --- reaching the seeder ----------------------------------------------------------------------


def a_network_without_nodes() -> Network:
    """A test network on this machine whose bootstrap port nobody listens on: hints are the only way to a peer."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return Network((("127.0.0.1", port),), test=True)


def with_tick(milliseconds: int):
    """command_session_params, but libtorrent ticks (and so makes connection attempts) only every milliseconds."""
    original = lt_session.command_session_params

    def params(*args, **kwargs) -> lt.session_params:
        chosen = original(*args, **kwargs)
        settings = chosen.settings
        settings["tick_interval"] = milliseconds
        chosen.settings = settings
        return chosen

    return params


def test_a_picker_connects_to_a_hinted_seeder_before_libtorrents_first_tick(tmp_path: Path, monkeypatch) -> None:
    """libtorrent makes most connection attempts on its tick, which comes long after a pickup starts (issue 17)."""
    network, data = a_network_without_nodes(), os.urandom(1 << 20)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "carry.age").write_bytes(data)
    with bittorrent.Seeder(network) as seeder:
        seeder.seed(tmp_path / "out" / "carry.age")
        monkeypatch.setattr(lt_session, "command_session_params", with_tick(3_600_000))
        hints = seeder.listen_endpoints()
        with bittorrent.Fetcher(seeder.info_hash, seeder.size, tmp_path / "in", network, hints) as fetcher:
            deadline = time.monotonic() + WAIT  # a guard against hangs: the next tick is an hour away
            while not fetcher.poll(0.2).finished:
                assert time.monotonic() < deadline, "the picker never reached the seeder"
            fetcher.flush()

            assert fetcher.path.read_bytes() == data


# --- the port a record's hints name (the agent taking over a command's seeding) -----------------


def a_free_port(host: str = endpoints.COMMAND_ADDRESS) -> int:
    with socket.socket(endpoints.family_of(host), socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


@pytest.mark.skipif(not can_bind("::"), reason="no IPv6 here")
def test_commands_elsewhere_listen_on_the_port_asked_for_when_it_is_free():
    port = a_free_port("0.0.0.0")
    assert listening(endpoints.PUBLIC, port) == [("0.0.0.0", port), ("::", port)]


def test_a_seeder_listens_on_the_port_it_is_asked_for_and_names_it_in_its_hints() -> None:
    network, port = a_network_without_nodes(), a_free_port()
    with bittorrent.Seeder(network, port) as seeder:
        assert seeder.port == port
        assert {hinted for _, hinted in seeder.listen_endpoints()} == {port}


@pytest.mark.parametrize("kind", [socket.SOCK_STREAM, socket.SOCK_DGRAM], ids=["tcp", "udp"])
def test_a_seeder_whose_port_is_taken_listens_on_another(kind: socket.SocketKind) -> None:
    network = a_network_without_nodes()
    with socket.socket(socket.AF_INET, kind) as taken:
        taken.bind((endpoints.COMMAND_ADDRESS, 0))
        port = taken.getsockname()[1]
        with bittorrent.Seeder(network, port) as seeder:
            assert seeder.port not in (0, port)
            assert {hinted for _, hinted in seeder.listen_endpoints()} == {seeder.port}
