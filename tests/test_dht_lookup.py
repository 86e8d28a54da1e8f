"""How cclink's DHT client times a lookup, when it ends, where a put lands, and where the next one starts.

Against real nodes: the DHT lab (cclink.dev.dhtlab), a few libtorrent nodes
with our test nodes (tests/support/hostile_node.py), and UDP ports that
never answer. docs/design.md, "When a lookup ends", argues the rules tested
here.
"""

from __future__ import annotations

import contextlib
import json
import select
import socket
import struct
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from support.hostile_node import HostileNode, Misbehaviour, bencoded_string
from support.hostile_node import Item as NodeItem

from cclink.dev.dhtlab import Lab
from cclink.dev.testnet import HOST, Testnet
from cclink.errors import NetworkError
from cclink.net import dht_client, krpc
from cclink.net.endpoints import COMMAND_ADDRESS, Network
from cclink.net.record_store import RecordStore, verifier
from cclink.net.seq_memory import SeqMemory
from cclink.wire import packet
from cclink.wire.keys import Identity

pytestmark = pytest.mark.e2e  # real nodes, and replies waited for

TIMEOUT = 20.0  # a lookup's deadline: a guard, never a measurement
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux's value; Python names it on few builds


@pytest.fixture(autouse=True)
def private_cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The contacts a lookup saves go to a cache of the test's own."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    return cache / "cclink"


@pytest.fixture(scope="module")
def honest() -> Iterator[Testnet]:
    with Testnet(4) as swarm:
        yield swarm


def a_message(identity: Identity, text: str) -> bytes:
    return packet.record_message(identity.public_key, text.encode())


@dataclass(frozen=True)
class _Named:
    """What HostileNode.meet reads of a node: its id and address."""

    node_id: bytes
    address: tuple[str, int]


def near(target: bytes, distance: int) -> bytes:
    """A node id at exactly this XOR distance from target."""
    return (int.from_bytes(target, "big") ^ distance).to_bytes(krpc.ID_SIZE, "big")


# --- timing: a late node gives up its place ----------------------------------------------------


@dataclass
class Listener:
    """UDP ports that never answer, with the kernel's receive time of every datagram each was sent."""

    sockets: list[socket.socket]
    node_ids: list[bytes]
    arrivals: dict[int, list[float]] = field(default_factory=dict)  # port -> receive times, in order

    @property
    def addresses(self) -> list[tuple[str, int]]:
        return [sock.getsockname() for sock in self.sockets]

    def drain(self) -> None:
        for sock in self.sockets:
            port = sock.getsockname()[1]
            while select.select([sock], [], [], 0)[0]:
                _, ancillary, _, _ = sock.recvmsg(65536, socket.CMSG_SPACE(16))
                for level, kind, data in ancillary:
                    if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                        seconds, nanoseconds = struct.unpack("qq", data[:16])
                        self.arrivals.setdefault(port, []).append(seconds + nanoseconds / 1e9)


@pytest.fixture
def silent_near_target() -> Iterator[tuple[Identity, Listener]]:
    """PARALLEL silent nodes closest to a key's target, and one more a little farther."""
    identity = Identity.generate()
    target = krpc.target_of(identity.public_key.raw)
    ids = [near(target, distance) for distance in range(1, dht_client.PARALLEL + 1)] + [near(target, 1 << 40)]
    sockets = []
    try:
        for _ in ids:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            sock.bind((HOST, 0))
        yield identity, Listener(sockets, ids)
    finally:
        for sock in sockets:
            sock.close()


@pytest.mark.skipif(sys.platform != "linux", reason="reads the kernel's receive times (SO_TIMESTAMPNS)")
def test_a_late_node_gives_its_place_to_the_next_candidate_at_once(
    silent_near_target: tuple[Identity, Listener],
) -> None:
    """The farther node is asked once the closest are late, not once they are given up after their last send."""
    identity, listener = silent_near_target
    contacts = list(zip(listener.node_ids, listener.addresses, strict=True))
    # A node lists at most 8 contacts, itself among them: entry nodes list 7 each.
    with contextlib.ExitStack() as stack:
        entries = [stack.enter_context(HostileNode()) for _ in range(0, len(contacts), 7)]
        for index, (node_id, address) in enumerate(contacts):
            entries[index // 7].meet(_Named(node_id, address))  # type: ignore[arg-type]  # reads node_id, address
        network = Network(tuple(entry.address for entry in entries), test=True)

        assert dht_client.get(network, identity.public_key.raw, verifier(identity.public_key), timeout=TIMEOUT) is None

    listener.drain()
    closest, farther = listener.addresses[: dht_client.PARALLEL], listener.addresses[-1]
    assert all(len(listener.arrivals[port]) == dht_client.SENDS for _, port in closest)
    farther_first = listener.arrivals[farther[1]][0]
    assert all(farther_first < listener.arrivals[port][-1] for _, port in closest), (
        "the farther node waited until the closest had had every send"
    )


# --- the end rule: the newest item on the slowest of the closest nodes ---------------------------


def test_the_newest_item_on_the_slowest_of_the_closest_nodes_is_still_found(honest: Testnet) -> None:
    """The closest node loses every querier's first get; its answer to the resend comes late, and still counts."""
    identity = Identity.generate()
    public_key = identity.public_key.raw
    older = dht_client.put(
        Network(tuple(honest.endpoints), test=True),
        public_key,
        a_message(identity, "older"),
        lambda seq: packet.SignedPacket.create(identity, seq, a_message(identity, "older")).signature,
        verifier(identity.public_key),
        timeout=TIMEOUT,
    )
    newer_message = a_message(identity, "newer")
    newer = packet.SignedPacket.create(identity, older.seq + 1, newer_message)
    with HostileNode() as entry, HostileNode(node_id=krpc.target_of(public_key)) as slowest:
        entry.join(honest.ports)
        entry.meet(slowest)
        slowest.remember(NodeItem(public_key, newer.seq, newer.signature, bencoded_string(newer_message)))
        slowest.arm(public_key, Misbehaviour.LATE_NEWEST)

        found = dht_client.get(entry.network, public_key, verifier(identity.public_key), timeout=TIMEOUT)

        assert slowest.gets_received(public_key, COMMAND_ADDRESS) >= 2, "its first get went unanswered"
    assert found is not None
    assert (found.seq, found.value) == (newer.seq, newer_message)


# --- durable records: STORE_ON nodes ------------------------------------------------------------

LAB = {"median_rtt": 0.002, "slow": 0.0, "port": 0}  # nodes that answer at once, on ports free at the time


def test_a_put_stores_on_the_store_on_closest_live_nodes_and_says_how_many_acknowledged() -> None:
    identity = Identity.generate()
    with Lab(300, dead=0.3, seed=21, **LAB) as lab:  # type: ignore[arg-type]
        stored = RecordStore.on_dht(lab.network, SeqMemory.in_memory()).put_message(
            identity, a_message(identity, "on twenty")
        )
        closest = lab.closest_live(krpc.target_of(identity.public_key.raw), dht_client.STORE_ON)
        holders = _holders_once_settled(lab, identity)

    assert stored.nodes >= dht_client.ENOUGH_STORED
    assert stored.nodes <= len(holders)
    assert set(closest) <= set(holders), "every one of the closest live nodes holds it"


def _holders_once_settled(lab: Lab, identity: Identity) -> dict[tuple[str, int], int]:
    """The nodes holding the item once the puts still under way in the background have settled."""
    for thread in threading.enumerate():
        if thread.name == "cclink-dht-puts":
            thread.join(TIMEOUT)
    return lab.holders(identity.public_key.raw)


# --- warm starts ------------------------------------------------------------------------------------


def test_a_second_lookup_starts_from_the_contacts_that_answered_the_first(honest: Testnet) -> None:
    """With its only bootstrap node gone, a command still finds the item through the contacts saved last time."""
    identity = Identity.generate()
    published = dht_client.put(
        Network(tuple(honest.endpoints), test=True),
        identity.public_key.raw,
        a_message(identity, "warm"),
        lambda seq: packet.SignedPacket.create(identity, seq, a_message(identity, "warm")).signature,
        verifier(identity.public_key),
        timeout=TIMEOUT,
    )
    with HostileNode() as entry:
        entry.join(honest.ports)
        network = entry.network
        assert (
            dht_client.get(network, identity.public_key.raw, verifier(identity.public_key), timeout=TIMEOUT) is not None
        )

    found = dht_client.get(network, identity.public_key.raw, verifier(identity.public_key), timeout=TIMEOUT)

    assert found is not None and found.seq == published.seq


def test_a_node_silent_in_the_last_lookup_is_asked_again_but_not_waited_for(honest: Testnet) -> None:
    identity = Identity.generate()
    target = krpc.target_of(identity.public_key.raw)
    with HostileNode() as entry, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind((HOST, 0))
        entry.join(honest.ports)
        entry.meet(_Named(target, silent.getsockname()))  # type: ignore[arg-type]  # the closest node of all

        dht_client.get(entry.network, identity.public_key.raw, verifier(identity.public_key), timeout=TIMEOUT)
        first = len(datagrams(silent))
        dht_client.get(entry.network, identity.public_key.raw, verifier(identity.public_key), timeout=TIMEOUT)
        second = len(datagrams(silent))

    assert first == dht_client.SENDS, "a node never heard from before is waited for until given up"
    assert 1 <= second < dht_client.SENDS, "asked once more, but the lookup ended without giving it up again"


def datagrams(sock: socket.socket) -> list[bytes]:
    received = []
    while select.select([sock], [], [], 0)[0]:
        received.append(sock.recv(65536))
    return received


def test_contacts_are_kept_per_network(honest: Testnet, private_cache_dir: Path) -> None:
    """A test network's contacts never reach a run on another network, public or test."""
    test_network = Network(tuple(honest.endpoints), test=True)
    dht_client.get(test_network, Identity.generate().public_key.raw, lambda item: True, timeout=TIMEOUT)
    saved = dht_client.contacts_file_for(test_network)

    assert saved.parent == private_cache_dir and saved.exists()
    others = [Network(tuple(honest.endpoints)), Network(tuple(honest.endpoints[:2]), test=True), Network(())]
    assert all(dht_client.contacts_file_for(other) != saved for other in others)
    # Even a file copied across: a public run accepts no loopback contact from it.
    public = Network((("router.example", 6881),))
    assert dht_client.load_contacts(saved, dht_client._contact_filter(public), bytes(20)).contacts == []


def test_a_corrupt_or_hostile_contacts_file_costs_only_its_bad_entries(
    honest: Testnet, private_cache_dir: Path
) -> None:
    network = Network(tuple(honest.endpoints), test=True)
    path = dht_client.contacts_file_for(network)
    path.parent.mkdir(parents=True)
    good = ["ab" * 20, HOST, honest.ports[0], 0.001]
    entries = [
        ["cd" * 20, "8.8.8.8", 6881, 0.01],  # out of the network's scope
        ["cd" * 20, COMMAND_ADDRESS, 6881, 0.01],  # where commands live on a test swarm
        [dht_client.TEST_SWARM_NODE_ID.hex(), HOST, 7000, 0.01],  # the commands' own id
        ["zz" * 20, HOST, 7001, 0.01],  # not hex
        ["cd" * 20, HOST, 0, 0.01],  # no port
        ["cd" * 20, HOST, True, 0.01],  # not a number
        ["cd" * 20, "::1::2", 7002, 0.01],  # no address
        ["cd" * 20, HOST, 7003],  # too short
        "not a list",
        good,
    ]
    silent = [["8.8.8.8", 6881], [HOST, 0], [HOST, 7004, 1], "x", [HOST, 7005]]
    path.write_text(json.dumps({"version": 1, "contacts": entries, "silent": silent}))
    accept = dht_client._contact_filter(network)

    saved = dht_client.load_contacts(path, accept, dht_client.TEST_SWARM_NODE_ID)
    assert saved.contacts == [krpc.Contact(bytes.fromhex(good[0]), (HOST, honest.ports[0]))]  # type: ignore[arg-type]
    assert saved.silent == {(HOST, 7005)}

    for garbage in (b"\xff\xfe not json", b"[]", b'{"version": 2, "contacts": []}', b"[" * 10_000, b"[" * 100_000):
        path.write_bytes(garbage)
        assert dht_client.load_contacts(path, accept, dht_client.TEST_SWARM_NODE_ID) == dht_client.SavedContacts()
        assert dht_client.get(network, Identity.generate().public_key.raw, lambda item: True, timeout=TIMEOUT) is None


def test_the_contacts_file_is_bounded_and_private(honest: Testnet) -> None:
    network = Network(tuple(honest.endpoints), test=True)
    path = dht_client.contacts_file_for(network)
    many = [[f"{n:040x}", HOST, 10_000 + n, 0.001] for n in range(1, 3 * dht_client.SAVED_CONTACTS)]
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"version": 1, "contacts": many}))

    dht_client.get(network, Identity.generate().public_key.raw, lambda item: True, timeout=TIMEOUT)

    saved = json.loads(path.read_text())["contacts"]
    assert len(honest.ports) <= len(saved) <= dht_client.SAVED_CONTACTS
    assert {(host, port) for _, host, port, _ in saved[: len(honest.ports)]} == {(HOST, p) for p in honest.ports}
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.stat().st_size <= dht_client.CONTACTS_FILE_LIMIT


def test_a_lookup_with_only_dead_contacts_saved_still_bootstraps(honest: Testnet) -> None:
    network = Network(tuple(honest.endpoints), test=True)
    path = dht_client.contacts_file_for(network)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as dead:
        dead.bind((HOST, 0))
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps({"version": 1, "contacts": [["ab" * 20, HOST, dead.getsockname()[1], 0.001]]}))

        assert dht_client.get(network, Identity.generate().public_key.raw, lambda item: True, timeout=TIMEOUT) is None


def test_no_contacts_and_no_bootstrap_node_is_still_one_clear_failure() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as dead:
        dead.bind((HOST, 0))
        with pytest.raises(NetworkError, match="no DHT node answered"):
            dht_client.get(
                Network((dead.getsockname(),), test=True), Identity.generate().public_key.raw, lambda i: True, timeout=5
            )


def test_only_nodes_given_up_on_are_remembered_as_silent() -> None:
    """A live node still on its way to answering when a get ends is not marked silent for the next lookup."""
    # Round trips long beside any scheduling delay of a loaded machine: a live node is never given up.
    with Lab(300, dead=0.3, loss=0.0, slow=0.0, median_rtt=0.3, seed=7) as lab:
        live = {node.address for node in lab.nodes()}
        for _ in range(3):
            key = Identity.generate().public_key
            dht_client.get(lab.network, key.raw, verifier(key), timeout=TIMEOUT)
        saved = dht_client.load_contacts(
            dht_client.contacts_file_for(lab.network), dht_client._contact_filter(lab.network), bytes(20)
        )

    assert saved.silent, "the lab's dead entries are remembered"
    assert not saved.silent & live
