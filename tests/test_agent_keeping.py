"""The agent's keeping (flows/keeping.py) in process: which items are due, what a put finds, expiry, supersession,
the kept list saved and read back (and read as hostile input), and what the flows hand over.

A real RecordStore over MemoryItems (BEP 44's seq rules) stands in for the DHT, and the clock is the test's.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest
from support.keepers import MemoryKeeper, as_kept, handoff_item, revocation_item
from support.records import MemoryItems
from support.ui import ScriptedUI

from cclink.flows import manage, pickup, publish
from cclink.flows.keeping import REPUBLISH_EVERY, SOONER, WANTED_NODES, Keeping
from cclink.net import agent
from cclink.net.record_store import verifier
from cclink.wire import agent_protocol, packet
from cclink.wire.agent_protocol import MAX_KEPT, Item
from cclink.wire.keys import Identity

NOW = 1_800_000_000.0
HOUR = 3600.0


class Saved:
    """The kept list as the agent last saved it."""

    def __init__(self) -> None:
        self.items: list[Item] | None = None
        self.times = 0

    def __call__(self, items: list[Item]) -> None:
        self.items = list(items)
        self.times += 1


def keeping_over(items: MemoryItems, saved: Saved | None = None, **options) -> Keeping:
    # A jitter of 0.5 makes every wait exactly its nominal length.
    return Keeping(items, saved or Saved(), jitter=lambda: 0.5, **options)


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_kept_handoff_is_put_again_about_hourly_unchanged() -> None:
    items, clock, identity = MemoryItems(), Clock(), Identity.generate()
    item = handoff_item(identity, items, NOW)
    kept = keeping_over(items)
    assert kept.keep(item, NOW) is None
    puts = items.puts

    clock.now = NOW + REPUBLISH_EVERY - 60
    kept.work(clock)
    assert items.puts == puts  # not due yet

    clock.now = NOW + REPUBLISH_EVERY
    kept.work(clock)
    assert items.puts == puts + 1
    held = items.items[identity.public_key.raw]
    assert (held.seq, held.signature, held.value) == (item.seq, item.signature, item.value)
    (entry,) = kept.entries(clock.now)
    assert (entry.kind, entry.nodes, entry.last_put) == ("handoff", items.nodes, int(clock.now))
    assert entry.next_put == int(clock.now + REPUBLISH_EVERY)


def test_nodes_that_dropped_the_item_hold_it_again_after_the_next_put() -> None:
    items, clock, identity = MemoryItems(), Clock(), Identity.generate()
    kept = keeping_over(items)
    kept.keep(handoff_item(identity, items, NOW), NOW)
    del items.items[identity.public_key.raw]  # every node dropped it

    clock.now += REPUBLISH_EVERY
    kept.work(clock)

    store_found = items.get(identity.public_key.raw, verifier(identity.public_key), timeout=1)
    assert store_found is not None and packet.record_from_message(store_found.value, identity.public_key) is not None


def test_a_put_too_few_nodes_acknowledged_is_made_again_sooner() -> None:
    items, clock, identity = MemoryItems(nodes=WANTED_NODES - 1), Clock(), Identity.generate()
    kept = keeping_over(items)
    kept.keep(handoff_item(identity, items, NOW), NOW)
    clock.now += REPUBLISH_EVERY
    kept.work(clock)
    puts = items.puts

    clock.now += SOONER
    kept.work(clock)

    assert items.puts == puts + 1


def test_an_unreachable_dht_keeps_the_item_and_tries_again_sooner() -> None:
    items, clock, identity = MemoryItems(), Clock(), Identity.generate()
    kept = keeping_over(items)
    kept.keep(handoff_item(identity, items, NOW), NOW)
    items.reachable = False
    clock.now += REPUBLISH_EVERY
    kept.work(clock)
    (entry,) = kept.entries(clock.now)
    assert entry.nodes is None and entry.next_put == int(clock.now + SOONER)

    items.reachable = True
    clock.now += SOONER
    kept.work(clock)
    (entry,) = kept.entries(clock.now)
    assert entry.nodes == items.nodes


def test_the_interval_can_be_shorter_and_sooner_is_never_later_than_it() -> None:
    items, clock, identity = MemoryItems(nodes=1), Clock(), Identity.generate()
    kept = keeping_over(items, every=2.0)
    kept.keep(handoff_item(identity, items, NOW), NOW)
    puts = items.puts
    for _ in range(3):
        clock.now += 2.0
        kept.work(clock)
    assert items.puts == puts + 3


def test_an_item_is_kept_until_its_record_expires_and_then_dropped_and_forgotten() -> None:
    items, saved, identity = MemoryItems(), Saved(), Identity.generate()
    kept = keeping_over(items, saved)
    item = handoff_item(identity, items, NOW, ttl=int(3 * HOUR))
    kept.keep(item, NOW)
    assert saved.items == [item]

    assert kept.next_due(NOW + 3 * HOUR - 1) is not None
    assert kept.next_due(NOW + 3 * HOUR) is None
    assert kept.entries(NOW + 3 * HOUR) == ()
    assert saved.items == []


def test_a_handoffs_expiry_is_its_signed_records_not_what_it_was_handed_with() -> None:
    items, identity = MemoryItems(), Identity.generate()
    item = handoff_item(identity, items, NOW, ttl=int(HOUR))
    lying = Item(item.publisher, item.seq, item.signature, item.value, int(NOW + 100 * HOUR))
    kept = keeping_over(items)
    kept.keep(lying, NOW)
    (entry,) = kept.entries(NOW)
    assert entry.expires_at == int(NOW + HOUR)


def test_a_newer_handoff_under_the_key_ends_the_keeping() -> None:
    items, clock, saved, identity = MemoryItems(), Clock(), Saved(), Identity.generate()
    kept = keeping_over(items, saved)
    kept.keep(handoff_item(identity, items, NOW), NOW)
    handoff_item(identity, items, NOW + 60)  # published again elsewhere with the same key
    puts = items.puts

    clock.now += REPUBLISH_EVERY
    kept.work(clock)

    assert kept.entries(clock.now) == () and saved.items == []
    assert items.puts == puts  # the older one was not put over it


def test_a_newer_revocation_takes_the_handoffs_place_until_the_handoff_would_have_expired() -> None:
    items, clock, identity = MemoryItems(), Clock(), Identity.generate()
    kept = keeping_over(items)
    handoff = handoff_item(identity, items, NOW, ttl=int(5 * HOUR))
    kept.keep(handoff, NOW)
    revocation = revocation_item(identity, items, expires_at=0)  # revoked from another machine

    clock.now += REPUBLISH_EVERY
    kept.work(clock)  # finds the revocation, and keeps it instead
    kept.work(clock)  # and puts it again at once

    (entry,) = kept.entries(clock.now)
    assert (entry.kind, entry.seq, entry.expires_at) == ("revocation", revocation.seq, handoff.expires_at)
    del items.items[identity.public_key.raw]
    clock.now += REPUBLISH_EVERY
    kept.work(clock)
    assert items.items[identity.public_key.raw].seq == revocation.seq
    assert kept.entries(NOW + 5 * HOUR) == ()


def test_a_revocation_handed_over_replaces_the_handoff_and_lives_at_least_as_long() -> None:
    items, identity = MemoryItems(), Identity.generate()
    kept = keeping_over(items)
    handoff = handoff_item(identity, items, NOW, ttl=int(5 * HOUR))
    kept.keep(handoff, NOW)
    revocation = revocation_item(identity, items, expires_at=int(NOW + HOUR))

    assert kept.keep(revocation, NOW) is None

    (entry,) = kept.entries(NOW)
    assert (entry.kind, entry.expires_at) == ("revocation", handoff.expires_at)


def test_keep_refuses_what_it_cannot_or_need_not_keep() -> None:
    items, identity = MemoryItems(), Identity.generate()
    kept = keeping_over(items)
    old = handoff_item(identity, items, NOW)
    new = handoff_item(identity, items, NOW + 1)
    forged = Item(new.publisher, new.seq, bytes(64), new.value, new.expires_at)
    other_key = Item(Identity.generate().public_key.raw, new.seq, new.signature, new.value, new.expires_at)
    expired = handoff_item(Identity.generate(), items, NOW - 2 * HOUR, ttl=int(HOUR))

    assert kept.keep(new, NOW) is None
    assert "newer" in (kept.keep(old, NOW) or "")
    assert "signed" in (kept.keep(forged, NOW) or "")
    assert "signed" in (kept.keep(other_key, NOW) or "")
    assert "expired" in (kept.keep(expired, NOW) or "")
    assert [entry.seq for entry in kept.entries(NOW)] == [new.seq]


def test_the_same_item_handed_twice_is_kept_once_on_its_schedule() -> None:
    items, identity = MemoryItems(), Identity.generate()
    kept = keeping_over(items)
    item = handoff_item(identity, items, NOW)
    kept.keep(item, NOW)
    kept.keep(item, NOW + 600)
    (entry,) = kept.entries(NOW + 600)
    assert entry.next_put == int(NOW + REPUBLISH_EVERY)


def test_it_keeps_items_of_at_most_max_kept_keys() -> None:
    items = MemoryItems()
    kept = keeping_over(items)
    for _ in range(MAX_KEPT):
        assert kept.keep(handoff_item(Identity.generate(), items, NOW), NOW) is None
    assert "at most" in (kept.keep(handoff_item(Identity.generate(), items, NOW), NOW) or "")
    assert len(kept.entries(NOW)) == MAX_KEPT


def test_a_resumed_list_keeps_what_is_live_and_puts_it_at_once() -> None:
    items, clock, saved = MemoryItems(), Clock(NOW + 2 * HOUR), Saved()
    live = handoff_item(Identity.generate(), items, NOW, ttl=int(5 * HOUR))
    gone = handoff_item(Identity.generate(), items, NOW, ttl=int(HOUR))
    items.items.clear()  # the machine was off; the nodes dropped both
    kept = keeping_over(items, saved)

    kept.resume([live, gone], clock.now)
    kept.work(clock)

    assert [entry.seq for entry in kept.entries(clock.now)] == [live.seq]
    assert saved.items == [live]
    assert items.items[live.publisher].seq == live.seq and gone.publisher not in items.items


# --- the kept list's file -------------------------------------------------------------


@pytest.fixture
def place(tmp_path: Path) -> agent.Place:
    return agent.Place(
        tmp_path / "agent.sock",
        tmp_path / "agent.lock",
        tmp_path / "kept.json",
        tmp_path / "agent.log",
        tmp_path / "carry",
    )


def test_the_kept_list_is_saved_privately_and_read_back(place: agent.Place) -> None:
    items = MemoryItems()
    saved = [handoff_item(Identity.generate(), items, NOW) for _ in range(3)]
    agent.save_kept(place, saved)
    assert agent.read_kept(place) == saved
    assert place.kept.stat().st_mode & 0o777 == 0o600

    extra = handoff_item(Identity.generate(), items, NOW)
    agent.add_kept(place, extra)
    assert agent.read_kept(place) == [*saved, extra]


def test_a_kept_list_keeps_its_newest_max_kept_items(place: agent.Place) -> None:
    items = MemoryItems()
    item = handoff_item(Identity.generate(), items, NOW)
    for seq in range(MAX_KEPT + 5):
        agent.add_kept(place, Item(item.publisher, seq, item.signature, item.value, item.expires_at))
    assert [kept.seq for kept in agent.read_kept(place)] == list(range(5, MAX_KEPT + 5))


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"\x00\xff garbage",
        b"[]",
        b'{"version":2,"kept":[]}',
        b'{"version":1,"kept":{}}',
        b'{"version":1,"version":1,"kept":[]}',
        b'{"version":1,"kept":[' + b"[" * 100_000 + b"]" * 100_000 + b"]}",
        b'{"version":1,"kept":[NaN]}',
    ],
    ids=["empty", "binary", "not-an-object", "other-version", "kept-not-a-list", "repeated-key", "deep", "nan"],
)
def test_a_damaged_kept_list_is_read_as_empty(place: agent.Place, content: bytes) -> None:
    place.kept.write_bytes(content)
    assert agent.read_kept(place) == []


def test_a_kept_list_that_is_too_large_a_link_or_a_fifo_is_not_read(place: agent.Place, tmp_path: Path) -> None:
    good = agent_protocol.encode_kept([handoff_item(Identity.generate(), MemoryItems(), NOW)])
    place.kept.write_bytes(good[:-2] + b" " * agent_protocol.MAX_KEPT_FILE + b"}\n")
    assert agent.read_kept(place) == []

    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_bytes(good)
    place.kept.unlink()
    place.kept.symlink_to(elsewhere)
    assert agent.read_kept(place) == []

    place.kept.unlink()
    os.mkfifo(place.kept)
    assert agent.read_kept(place) == []  # and did not block


def test_one_bad_entry_costs_only_itself(place: agent.Place) -> None:
    items = MemoryItems()
    good = handoff_item(Identity.generate(), items, NOW)
    document = agent_protocol.encode_kept([good, good, good]).decode()
    parsed = json.loads(document)
    fields = parsed["kept"][0]
    bad_entries = [
        {**fields, "seq": True},
        {**fields, "seq": 1.5},
        {**fields, "signature": fields["signature"].upper()},
        {**fields, "publisher": "not a key"},
        {**fields, "extra": 1},
        "a string",
    ]
    parsed["kept"] = [bad_entries[0], parsed["kept"][0], *bad_entries[1:]]
    place.kept.write_text(json.dumps(parsed))
    assert agent.read_kept(place) == [good]


# --- what the flows hand over ---------------------------------------------------------


def test_publish_hands_the_signed_item_it_put_to_the_keeper(desks) -> None:
    laptop = desks("laptop")
    identity = laptop.make_key()
    session_id = laptop.add_session()
    keeper = MemoryKeeper()
    env = dataclasses.replace(laptop.env(), keeper=keeper)

    publication = publish.publish(publish.PublishRequest(), ScriptedUI(), env)

    (handed,) = keeper.handed
    held = laptop.items.items[identity.public_key.raw]
    assert handed.publisher == identity.public_key and handed.item == held
    assert handed.expires_at == publication.outcome.record.expires_at
    assert publication.outcome.session_id == session_id and publication.outcome.notes == []


def test_publish_says_when_the_keeper_will_not_keep_it(desks) -> None:
    laptop = desks("laptop")
    laptop.make_key()
    laptop.add_session()
    env = dataclasses.replace(laptop.env(), keeper=MemoryKeeper(refusal="The agent is elsewhere."))

    publication = publish.publish(publish.PublishRequest(), ScriptedUI(), env)

    assert publication.outcome.notes == ["The agent is elsewhere."]


def test_revoke_hands_the_revocation_over_for_as_long_as_the_revoked_handoff_lived(desks) -> None:
    laptop = desks("laptop")
    identity = laptop.make_key()
    laptop.add_session()
    keeper = MemoryKeeper()
    env = dataclasses.replace(laptop.env(), keeper=keeper)
    publication = publish.publish(publish.PublishRequest(ttl=7200), ScriptedUI(), env)

    manage.revoke(ScriptedUI(), env, assume_yes=True)

    handed = keeper.handed[-1]
    assert handed.item == laptop.items.items[identity.public_key.raw]
    assert packet.record_from_message(handed.item.value, identity.public_key) is None
    assert handed.expires_at == publication.outcome.record.expires_at


def test_picking_up_ones_own_burn_record_hands_the_revocation_over(desks) -> None:
    laptop = desks("laptop")
    identity = laptop.make_key()
    laptop.add_session()
    keeper = MemoryKeeper()
    env = dataclasses.replace(laptop.env(), keeper=keeper)
    publication = publish.publish(publish.PublishRequest(burn=True), ScriptedUI(), env)

    outcome = pickup.pickup(None, ScriptedUI(), env, assume_yes=True, confirm=False)

    assert outcome.revoked
    handed = keeper.handed[-1]
    assert handed.item == laptop.items.items[identity.public_key.raw]
    assert handed.expires_at == publication.outcome.record.expires_at


def test_what_publish_hands_over_is_what_the_agent_keeps(desks) -> None:
    """The flow's item and the keeping fit together: kept, and back on nodes that dropped it."""
    laptop = desks("laptop")
    identity = laptop.make_key()
    laptop.add_session()
    keeper = MemoryKeeper()
    env = dataclasses.replace(laptop.env(), keeper=keeper)
    publish.publish(publish.PublishRequest(), ScriptedUI(), env)
    (handed,) = keeper.handed
    kept = keeping_over(laptop.items)
    now = laptop.clock.now
    assert kept.keep(as_kept(identity, laptop.items, int(handed.expires_at)), now) is None
    del laptop.items.items[identity.public_key.raw]

    kept.work(Clock(now + REPUBLISH_EVERY))

    assert laptop.items.items[identity.public_key.raw] == handed.item
