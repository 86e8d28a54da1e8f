"""Pickup against DHT nodes that lie: forged, oversized, garbled and replayed items (issue 3).

A small honest swarm holds the genuine records; a `HostileNode` of our own
joins it, claims to store every put, and answers `get` for the key under test
with one misbehaviour or another. The machines list the hostile node first in
CCLINK_BOOTSTRAP, and every test checks that it was really asked, so none
passes merely because the liar was never reached.
"""

from __future__ import annotations

import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import libtorrent as lt
import pytest
from support.hostile_node import HostileNode, Item, Misbehaviour, bencoded_string
from support.machines import Machine

from cclink.dev.testnet import Testnet
from cclink.net.endpoints import Network
from cclink.net.record_store import GET_TIMEOUT, RETRY_FOR
from cclink.wire import keyfile, packet
from cclink.wire.keys import PublicKey

pytestmark = pytest.mark.e2e

HONEST_NODES = 4  # with the hostile node, under K = 8: every lookup visits every node
COMMAND_IP = "127.0.0.2"  # where cclink commands on a test swarm query from (endpoints.COMMAND_ADDRESS)
# resolve() stops retrying after RETRY_FOR, but an attempt under way may take
# GET_TIMEOUT more; anything past that (and process start-up) is a hang.
PICKUP_DEADLINE = RETRY_FOR + GET_TIMEOUT + 15

# Items no honest publisher could have made. A replay of an old, genuine
# item (STALE) is no forgery, so it has tests of its own below.
FORGED_ITEMS = [Misbehaviour.FORGED_SIGNATURE, Misbehaviour.HIGHER_SEQ_BAD_SIGNATURE, Misbehaviour.OVERSIZED_VALUE]
LIES = [*FORGED_ITEMS, Misbehaviour.GARBAGE]
DAY_IN_MICROSECONDS = 86_400 * 10**6
MAX_SEQ = 2**63  # libtorrent keeps seq in a signed 64-bit integer


def now_in_microseconds() -> int:
    """The clock as pkarr clients, the Rust cclink and cclink sign it as seq."""
    return time.time_ns() // 1000


@dataclass
class HostileSwarm:
    """Honest libtorrent nodes plus one hostile node they know as a confirmed contact."""

    honest: Testnet
    hostile: HostileNode

    @property
    def network(self) -> Network:
        """The hostile node first, then an honest one."""
        return Network((self.hostile.address, *self.honest.network.bootstrap), test=True)


@pytest.fixture(scope="module")
def hostile_swarm() -> Iterator[HostileSwarm]:
    with Testnet(HONEST_NODES) as honest, HostileNode() as hostile:
        hostile.join(honest.ports)
        yield HostileSwarm(honest, hostile)
        assert_handled_every_packet(hostile)


@pytest.fixture
def eclipse() -> Iterator[HostileNode]:
    """A hostile node that knows no honest node, only a hostile accomplice (which it lists as a contact).

    The accomplice matters: libtorrent never puts a bootstrap node in its
    routing table, so a command bootstrapped from one node alone would see no
    DHT at all. With the accomplice the command has joined "a DHT", and every
    node of it lies.
    """
    with HostileNode() as entry, HostileNode() as accomplice:
        entry.meet(accomplice)
        accomplice.meet(entry)
        yield entry
        assert_handled_every_packet(entry)
        assert_handled_every_packet(accomplice)


@dataclass
class Pair:
    """A laptop and a desktop holding the same key, both bootstrapping from the hostile node first."""

    laptop: Machine
    desktop: Machine
    public_key: bytes


@pytest.fixture
def pair(tmp_path: Path, hostile_swarm: HostileSwarm) -> Pair:
    laptop = Machine(tmp_path, "laptop", hostile_swarm.network)
    desktop = Machine(tmp_path, "desktop", hostile_swarm.network)
    public_key = PublicKey.parse(laptop.init()).raw
    desktop.ok("init", "--no-passphrase", "--import", str(laptop.key_file))
    return Pair(laptop, desktop, public_key)


# --- helpers ------------------------------------------------------------------------


def publish_session(pair: Pair) -> str:
    """Publish a new session from the laptop (the desktop has a copy of it); return its id."""
    session_id = pair.laptop.add_session(pair.laptop.project(), str(uuid.uuid4()))
    pair.desktop.add_session(pair.desktop.project(), session_id)
    pair.laptop.ok(cwd=pair.laptop.project())
    return session_id


def pickup(machine: Machine, network: Network | None = None) -> subprocess.CompletedProcess:
    """`cclink pickup -y`, failing the test if it runs past its deadline."""
    env = network.environment() if network else None
    try:
        return machine.run("pickup", "-y", env=env, timeout=PICKUP_DEADLINE)
    except subprocess.TimeoutExpired:
        pytest.fail(f"cclink pickup was still running after {PICKUP_DEADLINE:.0f}s against hostile nodes")


def launched_sessions(machine: Machine) -> list[str]:
    """The session ids the fake claude was asked to resume."""
    return [launch.argv[0].removeprefix("--resume=") for launch in machine.launches()]


def assert_one_sentence_error(result: subprocess.CompletedProcess) -> None:
    assert result.returncode != 0, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert re.fullmatch(r"cclink: error: [A-Z][^\n]*[^.]\.", lines[0]), lines[0]
    assert ". " not in lines[0], f"more than one sentence: {lines[0]}"
    assert "internal error" not in lines[0]


def assert_handled_every_packet(node: HostileNode) -> None:
    """Our own test node did not trip over what libtorrent sent it."""
    assert not node.errors, f"the hostile node could not handle some packets: {node.errors}"


def assert_hostile_asked(node: HostileNode, public_key: bytes) -> None:
    """The command's lookup reached the hostile node (else the test proves nothing)."""
    assert node.gets_received(public_key, from_ip=COMMAND_IP) > 0, "the hostile node was never asked for the record"


# --- tests ------------------------------------------------------------------------------


@pytest.mark.parametrize("misbehaviour", LIES, ids=lambda m: m.value)
def test_pickup_launches_the_genuine_session_despite_a_lying_node(
    pair: Pair, hostile_swarm: HostileSwarm, misbehaviour: Misbehaviour
) -> None:
    desktop, public_key = pair.desktop, pair.public_key
    publish_session(pair)  # an older record: what the lies carry, so taking one shows
    genuine = publish_session(pair)
    hostile = hostile_swarm.hostile
    assert len(hostile.captured(public_key)) == 2, (
        "the hostile node was not sent both records, so it has none to lie with"
    )
    hostile.arm(public_key, misbehaviour)

    result = pickup(desktop)

    assert result.returncode == 0, result.stderr
    assert launched_sessions(desktop) == [genuine]
    assert_hostile_asked(hostile, public_key)


# Garbage among liars alone is the lone-node test below: each costs a 15 s libtorrent timeout.
@pytest.mark.parametrize("misbehaviour", FORGED_ITEMS, ids=lambda m: m.value)
def test_pickup_with_only_lying_nodes_fails_cleanly(
    pair: Pair, hostile_swarm: HostileSwarm, eclipse: HostileNode, misbehaviour: Misbehaviour
) -> None:
    desktop, public_key = pair.desktop, pair.public_key
    publish_session(pair)
    for item in hostile_swarm.hostile.captured(public_key):
        eclipse.remember(item)  # the genuine item, for the liars to tamper with
    eclipse.arm(public_key, misbehaviour)

    result = pickup(desktop, eclipse.network)

    assert_one_sentence_error(result)
    assert desktop.launches() == []
    assert_hostile_asked(eclipse, public_key)


def test_pickup_with_a_lone_garbling_bootstrap_node_fails_cleanly(pair: Pair) -> None:
    """One node as the whole of CCLINK_BOOTSTRAP, answering garbage.

    The slowest way to fail (timeouts, then retries).
    """
    desktop, public_key = pair.desktop, pair.public_key
    publish_session(pair)
    with HostileNode() as lone:
        lone.arm(public_key, Misbehaviour.GARBAGE)

        result = pickup(desktop, lone.network)

        assert_one_sentence_error(result)
        assert desktop.launches() == []
        assert_hostile_asked(lone, public_key)
        assert_handled_every_packet(lone)


def test_a_replayed_older_record_loses_to_a_newer_publish(
    pair: Pair, hostile_swarm: HostileSwarm, eclipse: HostileNode
) -> None:
    desktop, public_key = pair.desktop, pair.public_key
    older = publish_session(pair)
    newer = publish_session(pair)
    hostile = hostile_swarm.hostile
    captured = hostile.captured(public_key)
    assert len(captured) == 2 and captured[0].seq < captured[1].seq, "the hostile node was not sent both records"
    hostile.arm(public_key, Misbehaviour.STALE)
    # The replay is a genuine, valid record: a pickup that meets nothing else takes it.
    eclipse.remember(captured[0])
    eclipse.arm(public_key, Misbehaviour.STALE)
    assert pickup(desktop, eclipse.network).returncode == 0
    assert launched_sessions(desktop) == [older]

    result = pickup(desktop)

    assert result.returncode == 0, result.stderr
    assert launched_sessions(desktop) == [older, newer]
    assert_hostile_asked(hostile, public_key)


def test_a_replayed_record_loses_to_a_revocation(pair: Pair, hostile_swarm: HostileSwarm) -> None:
    desktop, public_key = pair.desktop, pair.public_key
    publish_session(pair)
    pair.laptop.ok("revoke", "-y")
    hostile = hostile_swarm.hostile
    captured = hostile.captured(public_key)
    assert len(captured) == 2 and captured[0].seq < captured[1].seq, (
        "the hostile node was not sent the record and its revocation"
    )
    hostile.arm(public_key, Misbehaviour.STALE)  # replays the record from before the revocation

    result = pickup(desktop)

    assert_one_sentence_error(result)
    assert "revoked" in result.stderr
    assert desktop.launches() == []
    assert_hostile_asked(hostile, public_key)


def test_a_publish_supersedes_a_higher_seq_record_its_first_lookup_missed(
    pair: Pair, hostile_swarm: HostileSwarm
) -> None:
    """A record signed under a seq above the clock (a publisher whose clock runs a day ahead) must still lose.

    The node holding that record loses each querier's first query, as under
    packet loss; publish must still learn of it and sign above it.
    """
    laptop, desktop, public_key = pair.laptop, pair.desktop, pair.public_key
    older = publish_session(pair)
    hostile = hostile_swarm.hostile
    message = lt.bdecode(hostile.captured(public_key)[-1].value)
    identity = keyfile.load_identity(laptop.key_file, lambda: "")
    ahead = packet.SignedPacket.create(identity, now_in_microseconds() + DAY_IN_MICROSECONDS, message)
    hostile.remember(Item(public_key, ahead.seq, ahead.signature, bencoded_string(message)))
    hostile.arm(public_key, Misbehaviour.LATE_NEWEST)

    newer = publish_session(pair)
    result = pickup(desktop)

    assert result.returncode == 0, result.stderr
    assert launched_sessions(desktop) == [newer], f"pickup resumed {older}, the record publish failed to supersede"
    assert max(item.seq for item in hostile.captured(public_key)) > ahead.seq
    assert_hostile_asked(hostile, public_key)


def test_a_publish_is_not_pushed_up_by_a_seq_it_cannot_verify(pair: Pair, hostile_swarm: HostileSwarm) -> None:
    """A liar's seq near the top of the range, under a bad signature, must not become the floor of ours."""
    desktop, public_key = pair.desktop, pair.public_key
    publish_session(pair)
    hostile = hostile_swarm.hostile
    # It serves its highest seq + 1 (here MAX_SEQ - 1) under another item's signature.
    bogus = Item(public_key, MAX_SEQ - 2, bytes(64), hostile.captured(public_key)[-1].value)
    hostile.remember(bogus)
    hostile.arm(public_key, Misbehaviour.HIGHER_SEQ_BAD_SIGNATURE)

    newer = publish_session(pair)
    assert_hostile_asked(hostile, public_key)
    result = pickup(desktop)

    assert result.returncode == 0, result.stderr
    assert launched_sessions(desktop) == [newer]
    ours = [item.seq for item in hostile.captured(public_key) if item != bogus]
    assert max(ours) < now_in_microseconds() + DAY_IN_MICROSECONDS


# --- rollback: a record put back once its revocation is gone (issue 13) ----------------------
#
# DHT nodes drop an item some time after its last put. Once a revocation is
# gone, anyone holding the older record (every node it passed through) can
# put it back. The `eclipse` nodes play the DHT of that moment: they hold the
# old record and nothing newer.

ROLLBACK_SENTENCE = (
    "The DHT returned an older handoff from pk:{z32} than this machine has already seen "
    "(it was revoked or replaced); it may be a replay."
)
NOT_FOUND_EXIT = 7


def fresh_machine(tmp_path: Path, pair: Pair, name: str, session_id: str) -> Machine:
    """A machine with the pair's key and a copy of session_id, which has never looked the key up."""
    machine = Machine(tmp_path, name, pair.laptop.network)
    machine.ok("init", "--no-passphrase", "--import", str(pair.laptop.key_file))
    machine.add_session(machine.project(), session_id)
    return machine


def test_a_record_put_back_after_its_revocation_is_gone_is_refused_where_the_revocation_was_seen(
    tmp_path: Path, pair: Pair, hostile_swarm: HostileSwarm, eclipse: HostileNode
) -> None:
    laptop, desktop, public_key = pair.laptop, pair.desktop, pair.public_key
    replayed = publish_session(pair)
    laptop.ok("revoke", "-y")
    record, revocation = hostile_swarm.hostile.captured(public_key)
    assert record.seq < revocation.seq
    assert pickup(desktop).returncode == NOT_FOUND_EXIT  # the desktop sees the revocation
    eclipse.remember(record)
    eclipse.arm(public_key, Misbehaviour.STALE)
    sentence = ROLLBACK_SENTENCE.format(z32=laptop.public_key_z32())

    refused = pickup(desktop, eclipse.network)
    listed = laptop.run("list", env=eclipse.network.environment(), timeout=PICKUP_DEADLINE)

    for result in (refused, listed):  # the desktop saw the revocation; the laptop signed it
        assert result.returncode == NOT_FOUND_EXIT, result.stderr
        assert_one_sentence_error(result)
        assert result.stderr.strip() == f"cclink: error: {sentence}"
    assert desktop.launches() == []
    assert_hostile_asked(eclipse, public_key)
    # The limit: a machine that never saw the key has nothing to compare with, and takes the replay.
    fresh = fresh_machine(tmp_path, pair, "fresh", replayed)
    assert pickup(fresh, eclipse.network).returncode == 0
    assert launched_sessions(fresh) == [replayed]


def test_revoke_puts_a_new_revocation_over_a_record_put_back(
    pair: Pair, hostile_swarm: HostileSwarm, eclipse: HostileNode
) -> None:
    """`revoke` withdraws again a record its publisher finds put back, for machines that never saw the revocation."""
    laptop, public_key = pair.laptop, pair.public_key
    publish_session(pair)
    laptop.ok("revoke", "-y")
    record, revocation = hostile_swarm.hostile.captured(public_key)
    eclipse.remember(record)
    eclipse.arm(public_key, Misbehaviour.STALE)
    assert laptop.run("pickup", "-y", env=eclipse.network.environment()).returncode == NOT_FOUND_EXIT

    result = laptop.run("revoke", "-y", env=eclipse.network.environment())

    assert result.returncode == 0, result.stderr
    newest = max(eclipse.captured(public_key), key=lambda item: item.seq)
    assert newest.seq > revocation.seq
    assert lt.bdecode(newest.value) == packet.revocation_message()


def revoked(pair: Pair, hostile: HostileNode) -> tuple[Item, int]:
    """Publish and revoke under the pair's key; the revocation the hostile node holds, and how many puts it had."""
    publish_session(pair)
    pair.laptop.ok("revoke", "-y")
    return hostile.captured(pair.public_key)[-1], hostile.puts_received(pair.public_key)


def test_revoke_of_a_revoked_handoff_puts_the_revocation_again(pair: Pair, hostile_swarm: HostileSwarm) -> None:
    """The publisher online keeps its revocation alive: the same item, not a new one, so it supersedes nothing newer."""
    laptop, public_key, hostile = pair.laptop, pair.public_key, hostile_swarm.hostile
    revocation, puts = revoked(pair, hostile)

    result = laptop.run("revoke", "-y")

    assert result.returncode == 0, result.stderr
    assert "already revoked; its revocation was put on the DHT again" in result.stderr
    assert hostile.puts_received(public_key) > puts
    assert hostile.captured(public_key)[-1] == revocation


def test_list_finding_a_revocation_puts_it_again(pair: Pair, hostile_swarm: HostileSwarm) -> None:
    laptop, public_key, hostile = pair.laptop, pair.public_key, hostile_swarm.hostile
    revocation, puts = revoked(pair, hostile)

    result = laptop.run("list")

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("(the last one was revoked).")
    assert hostile.puts_received(public_key) > puts
    assert hostile.captured(public_key)[-1] == revocation
