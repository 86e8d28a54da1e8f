"""The libtorrent settings a command's session gets (cclink.net.lt_session.command_session_params); nothing is sent."""

from __future__ import annotations

import pytest

from cclink.net import endpoints, lt_session


def settings(bootstrap, **flags):
    return lt_session.command_session_params(bootstrap, None, **flags).settings


def test_a_seeder_on_the_public_dht_asks_the_router_to_forward_its_port():
    chosen = settings(endpoints.DEFAULT_BOOTSTRAP, peer_wire=True, map_port=True)
    assert chosen["enable_upnp"] and chosen["enable_natpmp"]


@pytest.mark.parametrize("bootstrap", [[("127.0.0.1", 6881)], [("10.1.2.3", 6881)]])
def test_no_port_mapping_on_a_test_swarm(bootstrap):
    chosen = settings(bootstrap, peer_wire=True, map_port=True)
    assert not chosen["enable_upnp"] and not chosen["enable_natpmp"]


def test_a_picker_maps_no_port():
    chosen = settings(endpoints.DEFAULT_BOOTSTRAP, peer_wire=True)
    assert not chosen["enable_upnp"] and not chosen["enable_natpmp"]


def test_every_command_is_a_read_only_dht_node():
    assert settings(endpoints.DEFAULT_BOOTSTRAP)["dht_read_only"]
    assert settings([("127.0.0.1", 6881)], peer_wire=True)["dht_read_only"]
