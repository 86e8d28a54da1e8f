"""Getting and putting items with cclink's own KRPC client (cclink.net.dht_client), on a local swarm.

The swarm is a few honest libtorrent nodes plus one of our test nodes, which
joins them and can name contacts that do not exist or never answer.
"""

from __future__ import annotations

import os
import resource
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass

import libtorrent as lt
import pytest
from support.hostile_node import HostileNode

from cclink.dev.testnet import HOST, Testnet
from cclink.errors import NetworkError, WireError
from cclink.net import dht_client, krpc
from cclink.net.endpoints import COMMAND_ADDRESS, Network
from cclink.net.record_store import RecordStore
from cclink.net.seq_memory import SeqMemory
from cclink.wire import packet
from cclink.wire.keys import Identity

pytestmark = pytest.mark.e2e  # a real local swarm, and nodes waited for

HONEST_NODES = 4  # with the test node, under K = 8: a put reaches every node


@dataclass(frozen=True)
class SilentNode:
    """A UDP port that takes datagrams and never answers: a node that is gone, as others still list it."""

    node_id: bytes
    address: tuple[str, int]


@dataclass
class Swarm:
    honest: Testnet
    entry: HostileNode

    @property
    def network(self) -> Network:
        return self.entry.network


@pytest.fixture(scope="module")
def swarm() -> Iterator[Swarm]:
    with Testnet(HONEST_NODES) as honest, HostileNode() as entry:
        entry.join(honest.ports)
        yield Swarm(honest, entry)


def listed_silent_node(swarm: Swarm, node_id: bytes) -> Iterator[tuple[socket.socket, SilentNode]]:
    """A silent node that the swarm's entry node lists among its contacts."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((HOST, 0))
        node = SilentNode(node_id, sock.getsockname())
        swarm.entry.meet(node)  # type: ignore[arg-type]  # meet reads only node_id and address
        yield sock, node


@pytest.fixture
def silent(swarm: Swarm) -> Iterator[tuple[socket.socket, SilentNode]]:
    yield from listed_silent_node(swarm, bytes(20))


@pytest.fixture
def finished_command(swarm: Swarm) -> Iterator[tuple[socket.socket, SilentNode]]:
    """What a test swarm's nodes keep of a command that put an item and ended: a contact with the commands' id."""
    yield from listed_silent_node(swarm, dht_client.TEST_SWARM_NODE_ID)


def rendezvous(network: Network, seen: SeqMemory | None = None) -> RecordStore:
    """A RecordStore with a memory of its own: tests must not write to the user's state directory."""
    return RecordStore.on_dht(network, seen or SeqMemory.in_memory())


def publish(network: Network, identity: Identity, message: bytes) -> int:
    """Put message as identity's packet; return its seq."""
    published = rendezvous(network).put_message(identity, message)
    assert published.nodes > 0
    return published.seq


def read_back(swarm: Swarm, identity: Identity) -> tuple[int, bytes]:
    """The item as a lookup through the honest nodes alone finds it."""
    item = rendezvous(Network(tuple(swarm.honest.endpoints), test=True)).find_item(identity.public_key)
    assert item is not None, "nothing found under the key"
    return item.seq, item.value


def a_message(identity: Identity, text: str) -> bytes:
    return packet.record_message(identity.public_key, text.encode())


def datagrams_waiting(sock: socket.socket) -> list[bytes]:
    sock.setblocking(False)
    received = []
    while True:
        try:
            received.append(sock.recv(65536))
        except BlockingIOError:
            return received


def test_a_put_is_stored_on_every_node_of_a_small_swarm_and_read_back(swarm: Swarm) -> None:
    identity = Identity.generate()
    message = a_message(identity, "first")

    published = rendezvous(swarm.network).put_message(identity, message)

    assert published.nodes == HONEST_NODES + 1
    assert read_back(swarm, identity) == (published.seq, message)


def test_a_process_with_more_than_a_thousand_files_open_still_puts_and_gets(swarm: Swarm) -> None:
    """A relay serving a thousand clients holds descriptors above 1023, where select() cannot go."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1200:
        pytest.skip(f"this process may open only {hard} files")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1200), hard))
    held = [open(os.devnull, "rb") for _ in range(1100)]  # noqa: SIM115 - held open on purpose
    try:
        identity = Identity.generate()
        message = a_message(identity, "with many files open")

        published = rendezvous(swarm.network).put_message(identity, message)

        assert read_back(swarm, identity) == (published.seq, message)
    finally:
        for file in held:
            file.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_seq_is_the_clock_in_microseconds_as_pkarr_signs_it(swarm: Swarm) -> None:
    identity = Identity.generate()
    before = time.time_ns() // 1000

    seq = publish(swarm.network, identity, a_message(identity, "timed"))

    assert before <= seq <= time.time_ns() // 1000


def test_each_put_supersedes_the_one_before(swarm: Swarm) -> None:
    identity = Identity.generate()
    messages = [a_message(identity, f"version {n}") for n in range(4)]

    seqs = [publish(swarm.network, identity, message) for message in messages]

    assert seqs == sorted(set(seqs))
    assert read_back(swarm, identity) == (seqs[-1], messages[-1])


def test_a_listed_node_that_never_answers_is_asked_three_times_then_left(
    swarm: Swarm, silent: tuple[socket.socket, SilentNode]
) -> None:
    sock, _ = silent
    identity = Identity.generate()
    message = a_message(identity, "despite a dead contact")

    seq = publish(swarm.network, identity, message)

    # The swarm's libtorrent nodes may ping it too; count the publisher's queries.
    queries = [query for query in datagrams_waiting(sock) if dht_client.TEST_SWARM_NODE_ID in query]
    assert len(queries) == dht_client.SENDS, "a lost query is sent again, a bounded number of times"
    assert all(b"1:q3:get" in query for query in queries)
    assert read_back(swarm, identity) == (seq, message)


def test_a_finished_command_listed_as_a_contact_is_not_asked(
    swarm: Swarm, finished_command: tuple[socket.socket, SilentNode]
) -> None:
    sock, _ = finished_command
    identity = Identity.generate()

    publish(swarm.network, identity, a_message(identity, "past a finished command"))

    assert [query for query in datagrams_waiting(sock) if dht_client.TEST_SWARM_NODE_ID in query] == []


def test_a_put_where_no_node_answers_fails_cleanly(silent: tuple[socket.socket, SilentNode]) -> None:
    _, node = silent
    identity = Identity.generate()

    with pytest.raises(NetworkError, match="no DHT node answered"):
        rendezvous(Network((node.address,), test=True)).put_message(identity, a_message(identity, "nobody home"))


def test_a_get_for_a_key_nobody_published_finds_nothing(swarm: Swarm) -> None:
    assert rendezvous(swarm.network).find_item(Identity.generate().public_key) is None


def test_a_get_where_no_node_answers_fails_cleanly(silent: tuple[socket.socket, SilentNode]) -> None:
    _, node = silent

    with pytest.raises(NetworkError, match="no DHT node answered"):
        rendezvous(Network((node.address,), test=True)).find_item(Identity.generate().public_key)


# --- what a node or anyone else sends is bounded ----------------------------------------------


def test_a_flood_of_datagrams_is_read_a_bounded_number_at_a_time() -> None:
    """Anyone can flood the socket; the lookup must get back to its deadline between reads."""
    flood = dht_client.MAX_DATAGRAMS_PER_WAKE + dht_client.MAX_DATAGRAMS_PER_WAKE // 2
    with (
        dht_client._Wire(Network(((HOST, 6881),), test=True), bytes(20), bytes(32)) as wire,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as flooder,
    ):
        wire_socket = wire._sockets[socket.AF_INET]
        for _ in range(flood):
            flooder.sendto(b"noise, not bencoding", wire_socket.getsockname())

        assert wire.exchange(time.monotonic() + 5) == []

        assert len(datagrams_waiting(wire_socket)) == flood - dht_client.MAX_DATAGRAMS_PER_WAKE


# --- the floor a publisher signs above ----------------------------------------------------------


def test_a_put_signs_above_a_seq_remembered_even_when_the_dht_no_longer_holds_it(swarm: Swarm) -> None:
    """What the rollback memory relies on: its own puts must still supersede the newest it saw."""
    identity = Identity.generate()
    seen = SeqMemory.in_memory()
    ahead = time.time_ns() // 1000 + 86_400 * 10**6  # seen from a publisher whose clock ran a day ahead
    seen.remember(identity.public_key.raw, ahead)

    seq = rendezvous(swarm.network, seen).put_message(identity, a_message(identity, "after a dropped item")).seq

    assert seq > ahead
    assert seen.floor(identity.public_key.raw) == seq
    assert read_back(swarm, identity)[0] == seq


def test_putting_an_item_again_keeps_it_and_never_supersedes_a_newer_one(swarm: Swarm) -> None:
    identity = Identity.generate()
    older = a_message(identity, "older")
    older_seq = publish(swarm.network, identity, older)
    signed = packet.SignedPacket.create(identity, older_seq, older)
    older_item = krpc.Item(older_seq, signed.signature, older)

    def verify(item: krpc.Item) -> bool:
        try:
            packet.SignedPacket(identity.public_key, item.signature, item.seq, item.value).verify()
        except WireError:
            return False
        return True

    again = dht_client.put_again(swarm.network, identity.public_key.raw, older_item, verify, timeout=20)
    assert (again.seq, again.nodes) == (older_seq, HONEST_NODES + 1)

    newer = a_message(identity, "newer")
    newer_seq = publish(swarm.network, identity, newer)
    refused = dht_client.put_again(swarm.network, identity.public_key.raw, older_item, verify, timeout=20)

    assert refused.nodes == 1  # the test node, which acknowledges every put; the honest ones hold the newer item
    assert read_back(swarm, identity) == (newer_seq, newer)


def test_a_value_nodes_would_refuse_is_refused_before_any_lookup(silent: tuple[socket.socket, SilentNode]) -> None:
    """BEP 44 bounds v as bencoded: 997 bytes are 1001 with their "997:" prefix."""
    sock, node = silent
    identity = Identity.generate()

    with pytest.raises(NetworkError, match="at most 1000 bytes as bencoded, not 1001"):
        dht_client.put(
            Network((node.address,), test=True),
            identity.public_key.raw,
            b"x" * 997,
            lambda seq: bytes(64),
            lambda item: True,
            timeout=20,
        )

    assert datagrams_waiting(sock) == []


# --- test behaviour is declared, never guessed from the addresses ----------------------------


@dataclass(frozen=True)
class Query:
    sender: tuple[str, int]
    node_id: bytes


def queries_from_one_lookup(*, test: bool) -> list[Query]:
    """The queries a get sends to a lone loopback node that never answers, on a network with the test flag or not."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as node:
        node.bind((HOST, 0))
        with pytest.raises(NetworkError, match="no DHT node answered"):
            dht_client.get(
                Network((node.getsockname(),), test=test),
                Identity.generate().public_key.raw,
                lambda item: True,
                timeout=10,
            )
        node.setblocking(False)
        queries = []
        while True:
            try:
                datagram, sender = node.recvfrom(65536)
            except BlockingIOError:
                return queries
            queries.append(Query(sender, lt.bdecode(datagram)[b"a"][b"id"]))


def test_on_a_test_network_on_this_machine_commands_share_one_node_id_and_their_own_address() -> None:
    first, second = queries_from_one_lookup(test=True), queries_from_one_lookup(test=True)

    assert first and second
    assert {query.node_id for query in first + second} == {dht_client.TEST_SWARM_NODE_ID}
    assert {query.sender[0] for query in first + second} == {COMMAND_ADDRESS}


def test_a_dht_on_loopback_without_the_test_flag_gets_no_test_behaviour() -> None:
    """A loopback bootstrap address alone is no test network: a random node id, the ordinary local address."""
    first, second = queries_from_one_lookup(test=False), queries_from_one_lookup(test=False)

    assert first and second
    first_ids, second_ids = {query.node_id for query in first}, {query.node_id for query in second}
    assert len(first_ids) == len(second_ids) == 1, "one id for the whole of a lookup"
    assert first_ids != second_ids
    assert dht_client.TEST_SWARM_NODE_ID not in first_ids | second_ids
    assert COMMAND_ADDRESS not in {query.sender[0] for query in first + second}
