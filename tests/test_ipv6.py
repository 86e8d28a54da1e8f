"""IPv6 (BEP 32): IPv6 testnets, IPv6 bootstrap nodes, dual-stack lookups, and a machine with no network at all."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import libtorrent as lt
import pytest
from support.carry import READY, finish, short_project, wait_for_line
from support.machines import Machine

from cclink.dev.testnet import HOST6, Testnet
from cclink.errors import NetworkError
from cclink.net import dht_client, endpoints
from cclink.net.endpoints import Network
from cclink.net.record_store import verifier
from cclink.wire import packet
from cclink.wire.keys import Identity


def ipv6_loopback_missing() -> str | None:
    """Why this machine cannot run an IPv6 test on ::1, or None when it can."""
    if not socket.has_ipv6:
        return "Python was built without IPv6"
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
            sock.bind((HOST6, 0))
    except OSError as error:
        return f"this machine has no IPv6 loopback: {error}"
    return None


needs_ipv6 = pytest.mark.skipif(ipv6_loopback_missing() is not None, reason=ipv6_loopback_missing() or "")


@pytest.fixture(autouse=True)
def private_cache_dir(tmp_path, monkeypatch) -> None:
    """The contacts a lookup saves (warm starts) go to a cache of the test's own."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def testnet6() -> Iterator[Testnet]:
    if ipv6_loopback_missing():
        pytest.skip(ipv6_loopback_missing() or "")
    with Testnet(4, host=HOST6) as net:
        yield net


def put_message(network: Network, identity: Identity, value: bytes) -> int:
    def sign(seq: int) -> bytes:
        return packet.SignedPacket.create(identity, seq, value).signature

    return dht_client.put(network, identity.public_key.raw, value, sign, verifier(identity.public_key), timeout=20).seq


# --- an IPv6-only testnet, end to end ------------------------------------------------------------


@pytest.mark.e2e
@needs_ipv6
def test_a_handoff_crosses_an_ipv6_only_testnet_named_by_its_bracketed_bootstrap(
    tmp_path: Path, testnet6: Testnet
) -> None:
    assert testnet6.bootstrap == f"[::1]:{testnet6.port}"
    network = Network.from_environment({"CCLINK_NETWORK": "test", "CCLINK_BOOTSTRAP": f"[::1]:{testnet6.port}"})
    laptop, desktop = Machine(tmp_path, "laptop", network), Machine(tmp_path, "desktop", network)
    laptop.init()
    desktop.init(import_from=laptop.key_file)
    session_id = str(uuid.uuid4())

    laptop.ok(session_id, "--missing-ok", "--json", cwd=laptop.home)
    picked = desktop.ok("pickup", "--json")

    assert session_id in picked.stdout


@pytest.mark.e2e
@needs_ipv6
def test_cclink_testnet_ipv6_prints_a_bracketed_bootstrap(tmp_path: Path) -> None:
    machine = Machine(tmp_path, "host", Network((("::1", 1),), test=True))
    process = subprocess.Popen(
        machine.command("testnet", "--ipv6", "--nodes", "2"),
        env=machine.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
    finally:
        process.terminate()
        process.wait(timeout=30)

    assert line.startswith("export CCLINK_NETWORK=test CCLINK_BOOTSTRAP='[::1]:")


# --- a carried session on hosts with IPv6 alone ---------------------------------------------------


@pytest.fixture
def namespaces() -> Iterator[Callable[[], str]]:
    """A factory of network namespaces whose loopback has ::1 alone (no IPv4 address); all deleted afterwards."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and `ip` to make a network namespace")
    made: list[str] = []

    def make() -> str:
        name = f"cclink-v6-{uuid.uuid4().hex[:8]}"
        added = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
        if added.returncode != 0:
            pytest.skip(f"`ip netns add` failed: {added.stderr.strip()}")
        made.append(name)
        for command in (["link", "set", "lo", "up"], ["addr", "del", "127.0.0.1/8", "dev", "lo"]):
            subprocess.run(["ip", "-n", name, *command], check=True, capture_output=True)
        return name

    yield make
    for name in made:
        subprocess.run(["ip", "netns", "delete", name], capture_output=True)


def ipv6_only_lan(make: Callable[[], str]) -> tuple[str, str]:
    """Two namespaces joined by a veth pair, with the addresses fd0c::1 and fd0c::2 and no IPv4 address at all."""
    first = make()
    veth = f"v6{uuid.uuid4().hex[:8]}"
    second = make()
    subprocess.run(
        ["ip", "-n", first, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", second], check=True
    )
    for namespace, device, address in ((first, veth, "fd0c::1/64"), (second, "eth0", "fd0c::2/64")):
        # nodad: usable at once, not after duplicate address detection
        subprocess.run(["ip", "-n", namespace, "addr", "add", address, "dev", device, "nodad"], check=True)
        subprocess.run(["ip", "-n", namespace, "link", "set", device, "up"], check=True)
    return first, second


def in_namespace(namespace: str) -> list[str]:
    return ["ip", "netns", "exec", namespace]


@contextlib.contextmanager
def dht_node(namespace: str, host: str) -> Iterator[Network]:
    """One DHT node (netlab's) bound to host in namespace, as a test network; it ends when its stdin closes."""
    argv = [*in_namespace(namespace), sys.executable, "-m", "cclink.dev.netlab", "node", "--host", host]
    with subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as node:
        assert node.stdout is not None and node.stdin is not None
        ready = node.stdout.readline().split()
        try:
            assert ready[:1] == ["ready"], ready
            yield Network.from_environment({"CCLINK_NETWORK": "test", "CCLINK_BOOTSTRAP": ready[1]})
        finally:
            node.stdin.close()
            node.wait(timeout=30)


def carry_across(tmp_path: Path, short_dir: Path, network: Network, publisher_at: str, picker_at: str) -> None:
    """Publish a session with --carry in namespace publisher_at; pick it up in picker_at; claude starts with it."""
    laptop, desktop = Machine(tmp_path, "laptop", network), Machine(tmp_path, "desktop", network)
    laptop.prefix, desktop.prefix = in_namespace(publisher_at), in_namespace(picker_at)
    laptop.init()
    desktop.init(import_from=laptop.key_file)
    project, session_id = short_project(short_dir), str(uuid.uuid4())
    laptop.session_file(project, session_id).write_text(json.dumps({"cwd": str(project), "type": "user"}) + "\n")
    publisher = laptop.spawn("--carry", cwd=project)
    try:
        wait_for_line(publisher, READY)

        desktop.ok("pickup", "-y", "--project-dir", str(desktop.project("app")))

        assert [launch.argv for launch in desktop.launches()] == [[f"--resume={session_id}"]]
        assert finish(publisher)[0] == 0
    finally:
        if publisher.poll() is None:
            publisher.kill()
            publisher.communicate()


@pytest.mark.e2e
def test_a_carried_session_crosses_a_test_network_on_a_host_with_ipv6_alone(
    tmp_path: Path, short_dir: Path, namespaces: Callable[[], str]
) -> None:
    host = namespaces()

    with dht_node(host, HOST6) as network:
        carry_across(tmp_path, short_dir, network, host, host)


@pytest.mark.e2e
def test_a_carried_session_crosses_a_lan_with_ipv6_alone(
    tmp_path: Path, short_dir: Path, namespaces: Callable[[], str]
) -> None:
    laptop_host, desktop_host = ipv6_only_lan(namespaces)

    with dht_node(laptop_host, "fd0c::1") as network:
        carry_across(tmp_path, short_dir, network, laptop_host, desktop_host)


# --- dual stack: IPv6 contacts learnt from an IPv4 node ---------------------------------------------


class IPv4Introducer:
    """A node on 127.0.0.1 that answers every get and find_node with nodes6 alone, and records the wants it was sent."""

    def __init__(self, contacts6: list[tuple[str, int]]) -> None:
        self.nodes6 = b"".join(
            os.urandom(20) + socket.inet_pton(socket.AF_INET6, h) + p.to_bytes(2, "big") for h, p in contacts6
        )
        self.wants: list[object] = []
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._socket.bind(("127.0.0.1", 0))
        self._socket.settimeout(0.1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def network(self) -> Network:
        return Network((self._socket.getsockname()[:2],), test=True)

    def __enter__(self) -> IPv4Introducer:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self._socket.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                datagram, sender = self._socket.recvfrom(65536)
            except TimeoutError:
                continue
            query: Any = lt.bdecode(datagram)
            if not isinstance(query, dict) or query.get(b"y") != b"q":
                continue
            self.wants.append(query[b"a"].get(b"want"))
            body: Any = {b"id": os.urandom(20), b"nodes6": self.nodes6, b"token": b"tok"}
            self._socket.sendto(lt.bencode({b"t": query[b"t"], b"y": b"r", b"r": body}), sender)


@pytest.mark.e2e
@needs_ipv6
def test_a_dual_stack_lookup_finds_an_item_held_only_by_ipv6_nodes_an_ipv4_node_named(testnet6: Testnet) -> None:
    identity = Identity.generate()
    seq = put_message(testnet6.network, identity, b"over IPv6")

    with IPv4Introducer(testnet6.endpoints) as introducer:
        found = dht_client.get(introducer.network, identity.public_key.raw, verifier(identity.public_key), timeout=20)

    assert found is not None and (found.seq, found.value) == (seq, b"over IPv6")
    assert introducer.wants and all(want == [b"n4", b"n6"] for want in introducer.wants)


@needs_ipv6
def test_a_family_found_to_have_no_route_is_tried_once_not_for_every_contact(monkeypatch: pytest.MonkeyPatch) -> None:
    sends6: list[object] = []

    class NoIPv6Route(socket.socket):
        def sendto(self, data, *args):
            if self.family == socket.AF_INET6:
                sends6.append(args[-1])
                raise OSError(errno.ENETUNREACH, "Network is unreachable")
            return super().sendto(data, *args)

    monkeypatch.setattr(dht_client.socket, "socket", NoIPv6Route)
    contacts6 = [(HOST6, port) for port in range(20_001, 20_009)]

    with IPv4Introducer(contacts6) as introducer:
        found = dht_client.get(introducer.network, bytes(32), lambda _: True, timeout=20)

    assert found is None
    assert len(sends6) == 1


# --- neither family ---------------------------------------------------------------------------------


def test_a_machine_whose_sockets_all_fail_gets_one_sentence(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_socket(*_: object, **__: object) -> socket.socket:
        raise OSError("Address family not supported by protocol")

    monkeypatch.setattr(dht_client.socket, "socket", no_socket)
    network = Network((("127.0.0.1", 6881), ("::1", 6881)), test=True)

    with pytest.raises(NetworkError) as raised:
        dht_client.get(network, bytes(32), lambda _: True, timeout=5)

    assert str(raised.value) == "this machine has no IPv4 or IPv6 network to reach the DHT"


@pytest.fixture
def namespace_without_network() -> Iterator[str]:
    """A network namespace whose only interface, loopback, is down: neither IPv4 nor IPv6 reaches anything."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and `ip` to make a network namespace")
    name = f"cclink-v6-{uuid.uuid4().hex[:8]}"
    made = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"`ip netns add` failed: {made.stderr.strip()}")
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], capture_output=True)


@pytest.mark.e2e
@pytest.mark.parametrize("bootstrap", ["127.0.0.1:6881", "[::1]:6881", "127.0.0.1:6881,[::1]:6881"])
def test_pickup_on_a_machine_with_no_network_says_so_in_one_sentence(
    tmp_path: Path, namespace_without_network: str, bootstrap: str
) -> None:
    network = Network.from_environment({"CCLINK_NETWORK": "test", "CCLINK_BOOTSTRAP": bootstrap})
    island = Machine(tmp_path, "island", network)
    island.init()
    island.prefix = ["ip", "netns", "exec", namespace_without_network]

    result = island.run("pickup", "--json")

    assert result.stderr == "cclink: error: This machine has no IPv4 or IPv6 network to reach the DHT.\n"
    assert result.returncode != 0


# --- IPv6 contacts in the contacts file, within the scope -------------------------------------------


def saved_contacts(tmp_path: Path, network: Network, hosts: list[str]) -> list[str]:
    """The hosts of the entries a contacts file holding hosts gives back on network."""
    path = tmp_path / "contacts.json"
    entries = [[f"{n + 1:040x}", host, 6881, 0.01] for n, host in enumerate(hosts)]
    path.write_text(json.dumps({"version": 1, "contacts": entries}))
    loaded = dht_client.load_contacts(path, dht_client._contact_filter(network), bytes(20))
    return [contact.address[0] for contact in loaded.contacts]


def test_saved_ipv6_contacts_are_kept_within_the_scope_in_canonical_text(tmp_path: Path) -> None:
    hosts = ["0:0::1", "2001:4860:4860:0::8888", "fd00::1", "fe80::1", "::ffff:8.8.8.8", "127.0.0.1"]
    loopback = Network((("::1", 6881),), test=True)

    assert saved_contacts(tmp_path, loopback, hosts) == ["::1", "127.0.0.1"]
    assert saved_contacts(tmp_path, endpoints.PUBLIC, hosts) == ["2001:4860:4860::8888"]
    assert saved_contacts(tmp_path, Network((("fd00::2", 6881),)), hosts) == ["fd00::1"]
