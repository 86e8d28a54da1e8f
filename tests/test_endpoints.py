"""The network a command joins (cclink.net.endpoints.Network): from the environment, its scope, its test behaviour."""

from __future__ import annotations

import pytest

from cclink.errors import UsageError
from cclink.net import endpoints
from cclink.net.endpoints import Network, Scope

LOOPBACK = (("127.0.0.1", 6881),)
PRIVATE = (("10.1.2.3", 6881), ("192.168.1.2", 6881))
PUBLIC_ADDRESS = (("198.51.100.7", 6881),)  # a documentation address: only parsed, never sent to


# --- CCLINK_NETWORK and CCLINK_BOOTSTRAP -------------------------------------------------------


def test_with_neither_variable_set_it_is_the_public_dht_from_its_routers() -> None:
    network = Network.from_environment({})

    assert network == endpoints.PUBLIC
    assert network.bootstrap == endpoints.DEFAULT_BOOTSTRAP and not network.test


@pytest.mark.parametrize("value", ["public", " public ", ""])
def test_public_or_empty_is_the_ordinary_behaviour(value: str) -> None:
    network = Network.from_environment({"CCLINK_NETWORK": value, "CCLINK_BOOTSTRAP": "127.0.0.1:7000"})

    assert network == Network((("127.0.0.1", 7000),), test=False, relays=endpoints.DEFAULT_RELAYS)


def test_test_with_bootstrap_nodes_is_a_test_network() -> None:
    network = Network.from_environment({"CCLINK_NETWORK": "test", "CCLINK_BOOTSTRAP": "127.0.0.1:7000,[::1]:7001"})

    assert network == Network((("127.0.0.1", 7000), ("::1", 7001)), test=True)


@pytest.mark.parametrize("value", ["lab", "TEST", "testing", "1", "true", "public,test"])
def test_any_other_value_is_refused_in_one_sentence(value: str) -> None:
    with pytest.raises(UsageError) as refused:
        Network.from_environment({"CCLINK_NETWORK": value, "CCLINK_BOOTSTRAP": "127.0.0.1:7000"})

    assert str(refused.value) == f"CCLINK_NETWORK must be 'public' or 'test', not '{value}'"


@pytest.mark.parametrize("bootstrap", [None, "", "  "])
def test_a_test_network_without_bootstrap_nodes_is_refused(bootstrap: str | None) -> None:
    """A test network is one cclink built: never the public routers."""
    environment = {"CCLINK_NETWORK": "test"} | ({"CCLINK_BOOTSTRAP": bootstrap} if bootstrap is not None else {})

    with pytest.raises(
        UsageError, match=r"^CCLINK_NETWORK=test needs CCLINK_BOOTSTRAP \(.*\): .*never the public DHT$"
    ):
        Network.from_environment(environment)


def test_a_bad_bootstrap_list_is_refused_on_either_network() -> None:
    for kind in ("public", "test"):
        with pytest.raises(UsageError, match="CCLINK_BOOTSTRAP must be host:port"):
            Network.from_environment({"CCLINK_NETWORK": kind, "CCLINK_BOOTSTRAP": "127.0.0.1"})


@pytest.mark.parametrize(
    "network",
    [
        endpoints.PUBLIC,
        Network(LOOPBACK, test=True),
        Network((("::1", 7001), ("10.0.0.1", 7002)), test=True),
        Network(LOOPBACK, test=True, relays=("http://127.0.0.1:8080", "http://[::1]:8081/pkarr")),
        Network(PUBLIC_ADDRESS),
    ],
    ids=["public", "test", "ipv6", "test-with-relays", "public-without-relays"],
)
def test_a_networks_environment_reads_back_as_the_same_network(network: Network) -> None:
    assert Network.from_environment(network.environment()) == network


def test_the_environment_is_read_from_the_process_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CCLINK_NETWORK", "test")
    monkeypatch.setenv("CCLINK_BOOTSTRAP", "127.0.0.1:7000")

    assert Network.from_environment() == Network((("127.0.0.1", 7000),), test=True)


# --- CCLINK_RELAYS -----------------------------------------------------------------------------


def test_unset_relays_are_pkarrs_public_ones_on_the_public_network() -> None:
    assert (
        Network.from_environment({}).relays
        == endpoints.DEFAULT_RELAYS
        == (
            "https://pkarr.pubky.app",
            "https://pkarr.pubky.org",
        )
    )


@pytest.mark.parametrize("value", [None, "", "  "])
def test_a_test_network_has_no_relays_unless_it_names_them(value: str | None) -> None:
    """Tests and labs never reach the internet by default."""
    environment = {"CCLINK_NETWORK": "test", "CCLINK_BOOTSTRAP": "127.0.0.1:7000"}
    environment |= {"CCLINK_RELAYS": value} if value is not None else {}

    assert Network.from_environment(environment).relays == ()


def test_none_turns_relays_off() -> None:
    assert Network.from_environment({"CCLINK_RELAYS": "none"}).relays == ()
    assert Network.from_environment({"CCLINK_RELAYS": " NONE "}).relays == ()


@pytest.mark.parametrize(
    ("value", "relays"),
    [
        ("http://127.0.0.1:8080", ("http://127.0.0.1:8080",)),
        ("https://relay.example/", ("https://relay.example",)),
        ("HTTPS://Relay.Example:443/Pkarr/", ("https://relay.example:443/Pkarr",)),
        (" http://[::1]:9/a/b , http://127.0.0.1:8080 ", ("http://[::1]:9/a/b", "http://127.0.0.1:8080")),
        ("http://127.0.0.1:8080,http://127.0.0.1:8080/", ("http://127.0.0.1:8080",)),
    ],
)
def test_relays_are_read_as_urls_in_one_form(value: str, relays: tuple[str, ...]) -> None:
    environment = {"CCLINK_NETWORK": "test", "CCLINK_BOOTSTRAP": "127.0.0.1:7000", "CCLINK_RELAYS": value}

    assert Network.from_environment(environment).relays == relays


@pytest.mark.parametrize(
    "value",
    [
        "relay.example",
        "ftp://relay.example",
        "http://",
        "http://user@relay.example",
        "http://user:secret@relay.example",
        "http://relay.example?x=1",
        "http://relay.example/?",
        "http://relay.example#top",
        "http://relay.example:0",
        "http://relay.example:65536",
        "http://relay.example:port",
        "http://[not-ipv6]:80",
        "http://relay example",
        "http://relay.example/a b",
        "http://relay.example,",
        "none,http://relay.example",
        "http://relay.example/\x7f",
    ],
)
def test_a_malformed_relay_list_is_refused_in_one_sentence(value: str) -> None:
    with pytest.raises(UsageError) as refused:
        Network.from_environment({"CCLINK_RELAYS": value})

    message = str(refused.value)
    assert message.startswith("CCLINK_RELAYS must be 'none' or http(s)://host[:port][/path][,...]")
    assert message.count(". ") == 0 and message.isprintable()


def test_relays_go_into_the_environment_only_when_not_the_default() -> None:
    assert "CCLINK_RELAYS" not in endpoints.PUBLIC.environment()
    assert "CCLINK_RELAYS" not in Network(LOOPBACK, test=True).environment()
    assert Network(PUBLIC_ADDRESS).environment()["CCLINK_RELAYS"] == "none"
    named = Network(LOOPBACK, test=True, relays=("http://127.0.0.1:8080", "https://relay.example/p"))
    assert named.environment()["CCLINK_RELAYS"] == "http://127.0.0.1:8080,https://relay.example/p"


# --- scope: where the DHT is, whether or not it is a test network ------------------------------


@pytest.mark.parametrize(
    "bootstrap, scope",
    [
        (LOOPBACK, Scope.THIS_MACHINE),
        ((("::1", 6881),), Scope.THIS_MACHINE),
        (PRIVATE, Scope.PRIVATE),
        ((("fd00::1", 6881),), Scope.PRIVATE),
        (LOOPBACK + PRIVATE, Scope.PRIVATE),
        (PUBLIC_ADDRESS, Scope.PUBLIC),
        (PRIVATE + PUBLIC_ADDRESS, Scope.PUBLIC),
        (endpoints.DEFAULT_BOOTSTRAP, Scope.PUBLIC),
        ((("my-dht-node.lan", 6881),), Scope.PUBLIC),  # a name could stand for anything; the public rules stand
    ],
)
@pytest.mark.parametrize("test", [False, True], ids=["real", "test"])
def test_the_scope_follows_the_bootstrap_addresses(bootstrap, scope, test) -> None:
    assert Network(bootstrap, test=test).scope is scope


@pytest.mark.parametrize(
    "bootstrap, allowed, refused",
    [
        (LOOPBACK, ["127.0.0.1", "127.0.0.2", "::1"], ["10.0.0.1", "8.8.8.8", "name.example"]),
        (PRIVATE, ["10.9.9.9", "172.16.0.1", "192.168.0.1", "fd00::1"], ["127.0.0.1", "8.8.8.8", "169.254.1.1"]),
        (
            endpoints.DEFAULT_BOOTSTRAP,
            ["8.8.8.8", "2606:4700::1111"],
            ["127.0.0.1", "10.0.0.1", "100.64.0.1", "169.254.1.1", "224.0.0.1", "::1", "fd00::1"],
        ),
    ],
    ids=["this-machine", "private", "public"],
)
def test_nodes_and_peers_are_allowed_only_within_the_scope(bootstrap, allowed, refused) -> None:
    network = Network(bootstrap)

    assert [host for host in allowed if network.allows(host)] == allowed
    assert [host for host in refused if network.allows(host)] == []


def test_on_the_public_dht_an_ipv6_node_must_have_a_global_unicast_address() -> None:
    """Only 2000::/3: never unique local, link-local or multicast, nor IPv4 dressed as IPv6 (mapped, NAT64)."""
    allowed = ["2001:4860:4860::8888", "2a00:1450:4001::1"]
    refused = ["::1", "fd12:3456::1", "fe80::1", "ff0e::1", "::ffff:8.8.8.8", "::8.8.8.8", "64:ff9b::808:808"]

    assert [host for host in allowed if endpoints.PUBLIC.allows(host)] == allowed
    assert [host for host in refused if endpoints.PUBLIC.allows(host)] == []


def test_an_ipv6_bootstrap_node_in_brackets_is_read_and_written_back_alike() -> None:
    network = Network.from_environment({"CCLINK_NETWORK": "test", "CCLINK_BOOTSTRAP": "[::1]:6881,127.0.0.1:7000"})

    assert network.bootstrap == (("::1", 6881), ("127.0.0.1", 7000))
    assert network.scope is Scope.THIS_MACHINE and network.binds_command_address
    assert network.environment()["CCLINK_BOOTSTRAP"] == "[::1]:6881,127.0.0.1:7000"


# --- test behaviour: declared, never guessed ------------------------------------------------------


@pytest.mark.parametrize("bootstrap", [LOOPBACK, PRIVATE], ids=["loopback", "private"])
def test_loopback_or_private_bootstrap_nodes_alone_make_no_test_network(bootstrap) -> None:
    """A real DHT on a LAN (or on this machine) behaves as any real DHT does."""
    network = Network(bootstrap)

    assert not network.commands_share_node_id
    assert not network.binds_command_address
    assert not network.lifts_crowding_limits


def test_a_test_network_on_this_machine_has_all_of_the_test_behaviour() -> None:
    network = Network(LOOPBACK, test=True)

    assert network.commands_share_node_id and network.lifts_crowding_limits
    assert network.binds_command_address


def test_a_test_network_spread_over_a_lab_shares_the_node_id_but_binds_no_loopback_address() -> None:
    network = Network(PRIVATE, test=True)

    assert network.commands_share_node_id and network.lifts_crowding_limits
    assert not network.binds_command_address


@pytest.mark.parametrize(
    "network, internet",
    [
        (endpoints.PUBLIC, True),
        (Network(PUBLIC_ADDRESS), True),
        (Network(PUBLIC_ADDRESS, test=True), False),
        (Network(PRIVATE), False),
        (Network(LOOPBACK), False),
    ],
)
def test_only_a_real_dht_on_the_internet_has_routers_and_mapped_ports(network: Network, internet: bool) -> None:
    assert network.bootstrap_nodes_are_routers is internet
    assert network.maps_ports is internet
