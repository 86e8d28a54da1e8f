"""pkarr's HTTP relays (cclink.net.relays): records through relays alone, and beside the DHT.

In process: a RecordStore over DhtAndRelays, its DHT in memory
(tests/support/records.py) and its relays real HTTP servers on 127.0.0.1
(tests/support/relays.py): an honest one, one that is down, and liars whose
answers must all be ignored. End to end (e2e): the real `cclink` command
publishes and picks up through npm pkarr's relay server on the local swarm,
with the DHT unreachable, the relay unreachable, or both.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.machines import Machine
from support.records import MemoryItems
from support.relays import DEAD_RELAY, Answer, HonestRelay, LyingRelay, dead_port, pkarr_relay

from cclink.errors import NetworkError, NotFound, Rollback
from cclink.net import relays
from cclink.net.dht_client import Stored
from cclink.net.endpoints import Network
from cclink.net.record_store import DhtItems, RecordStore, Resolved, Revocation
from cclink.net.relays import DhtAndRelays, RelayItems
from cclink.net.seq_memory import SeqMemory
from cclink.wire import packet, payload
from cclink.wire.keys import Identity
from cclink.wire.payload import Payload
from cclink.wire.record import Record, new_record

NETWORK_ERROR_EXIT = 8
DEAD_BOOTSTRAP = (("127.0.0.1", dead_port(socket.SOCK_DGRAM)),)  # a bootstrap node that never answers: UDP blocked


# --- helpers ------------------------------------------------------------------------------


def handoff(identity: Identity, session_id: str = "session-1") -> Record:
    """A handoff of session_id, signed by identity and sealed to it."""
    body = Payload(session_id=session_id, hostname="laptop", project="/home/someone/app")
    return new_record(identity, payload.seal(body, identity.public_key.age_recipient()), ttl=3600, now=time.time())


def store(dht: MemoryItems, *relay_urls: str) -> RecordStore:
    """A machine's record store: the DHT in memory, and the relays at relay_urls beside it."""
    return RecordStore(DhtAndRelays(dht, RelayItems(relay_urls)), SeqMemory.in_memory())


def relay_payload(identity: Identity, seq: int, message: bytes) -> bytes:
    return packet.SignedPacket.create(identity, seq, message).relay_payload()


def session_of(found: Resolved | Revocation | None) -> str:
    assert isinstance(found, Resolved), f"expected a record, found {found!r}"
    return payload.open_payload(found.record.blob, IDENTITY.age_identity()).session_id


IDENTITY = Identity.generate()


@pytest.fixture
def honest() -> Iterator[HonestRelay]:
    with HonestRelay() as relay:
        yield relay


@pytest.fixture
def short_relay_timeouts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Relays that stall are given up sooner than a command would: the tests need not wait seconds for them."""
    monkeypatch.setattr(relays, "GET_TIMEOUT", 0.5)
    monkeypatch.setattr(relays, "PUT_TIMEOUT", 0.5)


# --- which items a network uses ---------------------------------------------------------------


def test_a_network_without_relays_keeps_its_records_on_the_dht_alone() -> None:
    assert isinstance(relays.items_for(Network((("127.0.0.1", 7000),), test=True)), DhtItems)


def test_a_network_with_relays_asks_the_dht_and_the_relays() -> None:
    network = Network((("127.0.0.1", 7000),), test=True, relays=("http://127.0.0.1:8080",))
    items = relays.items_for(network)

    assert isinstance(items, DhtAndRelays)
    assert items.relays == RelayItems(("http://127.0.0.1:8080",))


# --- one path down: the other carries the handoff ------------------------------------------------


def test_with_the_dht_unreachable_a_handoff_goes_through_a_relay(honest: HonestRelay) -> None:
    publisher_dht, picker_dht = MemoryItems(reachable=False), MemoryItems(reachable=False)

    stored = store(publisher_dht, honest.url).publish(IDENTITY, handoff(IDENTITY))
    found = store(picker_dht, honest.url).newest(IDENTITY.public_key)

    assert stored == Stored(stored.seq, nodes=0, relays=1)
    assert session_of(found) == "session-1" and found is not None and found.seq == stored.seq


class CountedItems(MemoryItems):
    """A DHT in memory that counts the lookups asked of it."""

    gets: int = 0

    def get(self, public_key, verify, *, timeout):
        self.gets += 1
        return super().get(public_key, verify, timeout=timeout)


def test_after_the_dht_failed_and_a_relay_answered_lookups_ask_the_relay_alone_for_a_while(
    honest: HonestRelay, monkeypatch: pytest.MonkeyPatch
) -> None:
    store(MemoryItems(reachable=False), honest.url).publish(IDENTITY, handoff(IDENTITY))
    blocked = CountedItems(reachable=False)
    picker = store(blocked, honest.url)

    found = [picker.newest(IDENTITY.public_key, retry_for=0) for _ in range(3)]
    monkeypatch.setattr(relays, "DHT_DOWN_FOR", 0.0)
    picker.items.dht_down.until = 0.0  # the while has passed
    blocked.reachable = True
    picker.newest(IDENTITY.public_key, retry_for=0)

    assert [session_of(one) for one in found] == ["session-1"] * 3
    assert blocked.gets == 2  # the first lookup, and the first after the while


def test_with_the_relay_unreachable_the_dht_carries_the_handoff() -> None:
    dht = MemoryItems()

    stored = store(dht, DEAD_RELAY).publish(IDENTITY, handoff(IDENTITY))
    found = store(dht, DEAD_RELAY).newest(IDENTITY.public_key)

    assert stored == Stored(stored.seq, nodes=20, relays=0)
    assert session_of(found) == "session-1"


def test_both_paths_up_hold_the_same_item(honest: HonestRelay) -> None:
    dht = MemoryItems()

    stored = store(dht, honest.url).publish(IDENTITY, handoff(IDENTITY))

    held = honest.held[f"/{IDENTITY.public_key.z32}"]
    assert stored == Stored(stored.seq, nodes=20, relays=1)
    assert int.from_bytes(held[64:72], "big") == dht.items[IDENTITY.public_key.raw].seq == stored.seq


def test_with_both_paths_down_a_publish_fails_in_one_sentence() -> None:
    with pytest.raises(NetworkError) as failed:
        store(MemoryItems(reachable=False), DEAD_RELAY).publish(IDENTITY, handoff(IDENTITY))

    assert str(failed.value) == relays.NEITHER_STORED


def test_with_both_paths_down_a_lookup_fails_in_one_sentence() -> None:
    with pytest.raises(NetworkError) as failed:
        store(MemoryItems(reachable=False), DEAD_RELAY).find_item(IDENTITY.public_key)

    assert str(failed.value) == relays.NEITHER_ANSWERED


def test_nothing_published_is_not_found_through_a_relay_alone(honest: HonestRelay) -> None:
    assert store(MemoryItems(reachable=False), honest.url).newest(IDENTITY.public_key) is None


def test_the_newest_of_the_two_paths_wins(honest: HonestRelay) -> None:
    """The relay holds a newer handoff than the DHT (the DHT's nodes lost it): the relay's is taken."""
    dht = MemoryItems()
    store(dht, DEAD_RELAY).publish(IDENTITY, handoff(IDENTITY, "old"))
    store(MemoryItems(reachable=False), honest.url).publish(IDENTITY, handoff(IDENTITY, "new"))

    assert session_of(store(dht, honest.url).newest(IDENTITY.public_key)) == "new"


def test_a_revocation_through_the_relay_supersedes_the_record_on_the_dht(honest: HonestRelay) -> None:
    dht = MemoryItems()
    store(dht, honest.url).publish(IDENTITY, handoff(IDENTITY))
    store(MemoryItems(reachable=False), honest.url).revoke(IDENTITY)

    with pytest.raises(NotFound, match="revoked"):
        store(dht, honest.url).resolve(IDENTITY.public_key)


def test_a_put_refused_as_older_is_signed_again_above_what_the_relay_holds(honest: HonestRelay) -> None:
    """Another machine with the same key and a clock ahead put a newer item: ours must still supersede it."""
    ahead = time.time_ns() // 1000 + 3600 * 1_000_000
    honest.hold(IDENTITY.public_key.z32, relay_payload(IDENTITY, ahead, packet.revocation_message()))

    stored = store(MemoryItems(reachable=False), honest.url).publish(IDENTITY, handoff(IDENTITY))

    assert stored.seq > ahead
    assert session_of(store(MemoryItems(reachable=False), honest.url).newest(IDENTITY.public_key)) == "session-1"


# --- relays that lie: ignored, the DHT's answer wins -----------------------------------------------

OTHER = Identity.generate()
AHEAD = 10**6  # µs: what a lie claims to be newer by
REVOCATION = packet.revocation_message()


def lie_for(kind: str, seq: int, redirect_to: str) -> Answer:
    """A relay's lie about IDENTITY's key when the genuine newest item has seq: each would win if believed."""
    newer = relay_payload(IDENTITY, seq + AHEAD, REVOCATION)  # genuine, newer: believed, it would revoke
    if kind == "another key":
        return Answer(200, relay_payload(OTHER, seq + AHEAD, REVOCATION))
    if kind == "a bad signature":
        return Answer(200, newer[:10] + bytes([newer[10] ^ 1]) + newer[11:])
    if kind == "a seq that is not the one signed":
        return Answer(200, newer[:64] + (seq + 2 * AHEAD).to_bytes(8, "big") + newer[72:])
    if kind == "garbage":
        return Answer(200, b"\x00" * 40)
    if kind == "an empty body":
        return Answer(200, b"")
    if kind == "a huge body":
        return Answer(200, newer + b"\x00" * 100_000)
    if kind == "a huge body without a length":
        return Answer(200, newer + b"\x00" * 100_000, length=False)
    if kind == "an error status":
        return Answer(500, newer)
    if kind == "a redirect":
        return Answer(307, b"", headers={"Location": f"{redirect_to}/{IDENTITY.public_key.z32}"})
    if kind == "a slow answer":
        return Answer(200, newer, stall=3.0)
    if kind == "a dripped answer":
        return Answer(200, newer, drip=True)
    raise AssertionError(kind)


LIES = [
    "another key",
    "a bad signature",
    "a seq that is not the one signed",
    "garbage",
    "an empty body",
    "a huge body",
    "a huge body without a length",
    "an error status",
    "a redirect",
    "a slow answer",
    "a dripped answer",
]


@pytest.mark.parametrize("kind", LIES)
def test_a_lying_relay_is_ignored_and_the_dhts_answer_wins(
    kind: str, honest: HonestRelay, short_relay_timeouts: None
) -> None:
    dht = MemoryItems()
    stored = store(dht, DEAD_RELAY).publish(IDENTITY, handoff(IDENTITY))
    # Where a redirect points: a relay holding a genuine newer item, which must never be asked.
    honest.hold(IDENTITY.public_key.z32, relay_payload(IDENTITY, stored.seq + AHEAD, REVOCATION))

    with LyingRelay(lambda *_: lie_for(kind, stored.seq, honest.url)) as liar:
        found = store(dht, liar.url).newest(IDENTITY.public_key)

    assert session_of(found) == "session-1" and found is not None and found.seq == stored.seq
    assert liar.requests == [("GET", f"/{IDENTITY.public_key.z32}")]
    assert honest.requests == []


@pytest.mark.parametrize("kind", LIES)
def test_with_the_dht_down_a_lying_relay_is_no_answer(
    kind: str, honest: HonestRelay, short_relay_timeouts: None
) -> None:
    with LyingRelay(lambda *_: lie_for(kind, time.time_ns() // 1000, honest.url)) as liar:
        with pytest.raises(NetworkError) as failed:
            store(MemoryItems(reachable=False), liar.url).find_item(IDENTITY.public_key)

    assert str(failed.value) == relays.NEITHER_ANSWERED
    assert honest.requests == []


def test_an_older_item_from_a_relay_loses_to_the_dhts_newer_one(honest: HonestRelay) -> None:
    dht = MemoryItems()
    old = store(MemoryItems(reachable=False), honest.url).publish(IDENTITY, handoff(IDENTITY, "old"))
    store(dht, DEAD_RELAY).publish(IDENTITY, handoff(IDENTITY, "new"))

    found = store(dht, honest.url).newest(IDENTITY.public_key)

    assert session_of(found) == "new" and found is not None and found.seq > old.seq


def test_a_relay_replaying_an_item_older_than_one_seen_is_refused_as_a_rollback(honest: HonestRelay) -> None:
    """With the DHT out of reach, a relay serves an item older than this machine has already seen."""
    old = relay_payload(IDENTITY, time.time_ns() // 1000, REVOCATION)
    picker = store(MemoryItems(reachable=False), honest.url)
    store(MemoryItems(reachable=False), honest.url).publish(IDENTITY, handoff(IDENTITY))
    picker.newest(IDENTITY.public_key)  # seen: the handoff
    honest.hold(IDENTITY.public_key.z32, old)

    with pytest.raises(Rollback):
        picker.newest(IDENTITY.public_key)


def test_a_relay_that_accepts_nothing_leaves_the_dhts_put_standing() -> None:
    with LyingRelay(lambda *_: Answer(400, b"no")) as refusing:
        stored = store(MemoryItems(), refusing.url).publish(IDENTITY, handoff(IDENTITY))

    assert stored == Stored(stored.seq, nodes=20, relays=0)


# --- end to end: the real command and npm pkarr's relay server ----------------------------------------

e2e = pytest.mark.e2e


@pytest.fixture
def js_relay(swarm, tmp_path: Path) -> Iterator[str]:
    """npm pkarr's relay server on the test swarm (or a skip, saying what is missing)."""
    with pkarr_relay(swarm.bootstrap, tmp_path / "pkarr-relay") as url:
        yield url


def pair(tmp_path: Path, laptop_network: Network, desktop_network: Network) -> tuple[Machine, Machine]:
    """Two machines with one key, each on a network of its own making."""
    laptop = Machine(tmp_path, "laptop", laptop_network)
    desktop = Machine(tmp_path, "desktop", desktop_network)
    laptop.init()
    desktop.init(import_from=laptop.key_file)
    return laptop, desktop


def publish(machine: Machine) -> tuple[str, dict]:
    project = machine.project()
    session_id = machine.add_session(project)
    return session_id, json.loads(machine.ok(session_id, "--json", cwd=project).stdout)


def picked_up(machine: Machine) -> str:
    return json.loads(machine.ok("pickup", "--json").stdout)["session_id"]


@e2e
def test_cclink_publishes_and_picks_up_through_pkarrs_relay_with_the_dht_unreachable(
    tmp_path: Path, js_relay: str
) -> None:
    cut_off = Network(DEAD_BOOTSTRAP, test=True, relays=(js_relay,))
    laptop, desktop = pair(tmp_path, cut_off, cut_off)

    session_id, published = publish(laptop)

    assert (published["nodes"], published["relays"]) == (0, 1)
    assert picked_up(desktop) == session_id
    shown = laptop.ok(session_id, cwd=laptop.project()).stdout
    assert "Published! Stored on 1 relay." in shown


@e2e
def test_what_cclink_put_on_the_dht_is_picked_up_through_pkarrs_relay(tmp_path: Path, swarm, js_relay: str) -> None:
    """The relay finds on the swarm what the laptop put there without relays."""
    laptop, desktop = pair(tmp_path, swarm.network, Network(DEAD_BOOTSTRAP, test=True, relays=(js_relay,)))

    session_id, published = publish(laptop)

    assert published["nodes"] > 0
    assert picked_up(desktop) == session_id


@e2e
def test_what_cclink_put_through_pkarrs_relay_is_on_the_dht(tmp_path: Path, swarm, js_relay: str) -> None:
    laptop, desktop = pair(tmp_path, Network(DEAD_BOOTSTRAP, test=True, relays=(js_relay,)), swarm.network)

    session_id, _ = publish(laptop)

    assert picked_up(desktop) == session_id


@e2e
def test_with_the_relay_unreachable_the_dht_still_carries_the_handoff(tmp_path: Path, swarm) -> None:
    network = Network(swarm.network.bootstrap, test=True, relays=(DEAD_RELAY,))
    laptop, desktop = pair(tmp_path, network, network)

    session_id, published = publish(laptop)

    assert published["nodes"] > 0
    assert picked_up(desktop) == session_id


@e2e
def test_with_the_dht_and_the_relay_unreachable_a_publish_fails_in_one_sentence(tmp_path: Path) -> None:
    laptop = Machine(tmp_path, "laptop", Network(DEAD_BOOTSTRAP, test=True, relays=(DEAD_RELAY,)))
    laptop.init()
    project = laptop.project()
    session_id = laptop.add_session(project)

    result = laptop.run(session_id, cwd=project)

    assert result.returncode == NETWORK_ERROR_EXIT
    assert result.stderr == f"cclink: error: {relays.NEITHER_STORED[0].upper()}{relays.NEITHER_STORED[1:]}.\n"


@e2e
@pytest.mark.slow  # each look at a mailbox waits for the dead DHT first
def test_machines_with_keys_of_their_own_pair_and_hand_off_through_pkarrs_relay_alone(
    tmp_path: Path, js_relay: str
) -> None:
    """pkarr's relays take only signed DNS packets: pairing's messages are such packets, so they go through too."""
    cut_off = Network(DEAD_BOOTSTRAP, test=True, relays=(js_relay,))
    laptop, desktop = Machine(tmp_path, "laptop", cut_off), Machine(tmp_path, "desktop", cut_off)
    laptop.init()
    desktop.init()

    offering = laptop.spawn("pair", "-y", "--name", "desktop")
    assert offering.stdout is not None
    code = offering.stdout.readline().strip()
    joined = desktop.ok("pair", code, "-y", "--name", "laptop")
    offered = offering.communicate(timeout=120)
    session_id, _ = publish(laptop)

    assert offering.returncode == 0, offered
    assert "Paired with laptop" in joined.stdout
    assert picked_up(desktop) == session_id
