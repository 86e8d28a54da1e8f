"""list and revoke in process: a real key and real age under a temp HOME, a scripted UI, an in-memory DHT."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.desks import Desk
from support.ui import ScriptedUI

from cclink.errors import Declined, NetworkError, NoInput, NothingDone
from cclink.flows import manage, publish
from cclink.flows.publish import PublishRequest
from cclink.net.record_store import Resolved, Revocation
from cclink.wire import contacts, device_items
from cclink.wire.contacts import Contact, ContactBook
from cclink.wire.keys import Identity

PIN = "correct horse battery"


@pytest.fixture
def laptop(desks) -> Desk:
    desk = desks("laptop")
    desk.make_key()
    return desk


def test_list_shows_the_active_handoff_and_what_it_holds(laptop: Desk) -> None:
    published = laptop.publish_new_session()

    listed = manage.list_active(ScriptedUI.answering(), laptop.env())

    assert (listed.record, listed.seq) == (published.record, published.published.seq)
    assert listed.payload is not None and listed.payload.session_id == published.session_id


def test_list_of_a_pin_handoff_shows_the_record_but_not_its_contents(laptop: Desk) -> None:
    laptop.publish_new_session(PublishRequest(pin=True), secrets=(PIN,))

    listed = manage.list_active(ScriptedUI.answering(), laptop.env())

    assert listed.record.pin_salt is not None and listed.payload is None


def test_revoke_asks_then_supersedes_the_record(laptop: Desk) -> None:
    published = laptop.publish_new_session()
    ui = ScriptedUI.answering(answers=[True])

    revoked = manage.revoke(ui, laptop.env(), assume_yes=False)

    assert revoked == manage.RevokeOutcome(published.record)
    assert ui.asked[0].startswith("Revoke the handoff published")
    assert isinstance(laptop.records.newest(published.publisher), Revocation)


@pytest.mark.parametrize(
    ("interactive", "refusal", "words"),
    [(True, Declined, "nothing revoked"), (False, NoInput, "no terminal to ask on; pass -y")],
    ids=["declined", "no-terminal"],
)
def test_revoke_without_a_yes_changes_nothing(
    laptop: Desk, interactive: bool, refusal: type[Exception], words: str
) -> None:
    published = laptop.publish_new_session()
    ui = ScriptedUI.answering(answers=[False], interactive=interactive)

    with pytest.raises(refusal, match=words):
        manage.revoke(ui, laptop.env(), assume_yes=False)
    assert laptop.records.newest(published.publisher).record == published.record  # type: ignore[union-attr]


def test_list_after_a_revocation_says_none_and_keeps_the_revocation_alive(laptop: Desk) -> None:
    laptop.publish_new_session()
    manage.revoke(ScriptedUI.answering(), laptop.env(), assume_yes=True)
    puts = laptop.items.puts

    listed = manage.list_active(ScriptedUI.answering(), laptop.env())

    assert (listed.record, listed.revoked) == (None, True)
    assert laptop.items.puts == puts + 1


def test_list_with_nothing_published_says_so(laptop: Desk) -> None:
    listed = manage.list_active(ScriptedUI.answering(), laptop.env())

    assert (listed.record, listed.payload, listed.revoked) == (None, None, False)


def test_revoke_with_nothing_published_does_nothing_and_says_so(laptop: Desk) -> None:
    with pytest.raises(NothingDone, match="so there is nothing to revoke"):
        manage.revoke(ScriptedUI.answering(), laptop.env(), assume_yes=True)
    assert laptop.items.items == {}


def test_revoking_again_puts_the_revocation_again(laptop: Desk) -> None:
    laptop.publish_new_session()
    manage.revoke(ScriptedUI.answering(), laptop.env(), assume_yes=True)
    puts = laptop.items.puts

    with pytest.raises(NothingDone, match="already revoked; its revocation was put on the DHT again"):
        manage.revoke(ScriptedUI.answering(), laptop.env(), assume_yes=True)
    assert laptop.items.puts == puts + 1
    laptop.items.nodes = 0
    with pytest.raises(NetworkError, match="no DHT node stored the revocation again"):
        manage.revoke(ScriptedUI.answering(), laptop.env(), assume_yes=True)


def test_an_unreachable_dht_shows_that_it_is_tried_again(laptop: Desk, monkeypatch: pytest.MonkeyPatch) -> None:
    laptop.publish_new_session()
    ui = ScriptedUI.answering()
    laptop.items.reachable = False
    monkeypatch.setattr(
        ui, "update", lambda message: setattr(laptop.items, "reachable", True) or ui.shown.append(message)
    )

    manage.list_active(ui, laptop.env())

    assert "Looking up your handoff on the DHT: no answer yet, trying again in 1s" in ui.shown


def test_an_older_handoff_than_seen_before_can_still_be_revoked(laptop: Desk) -> None:
    first = laptop.publish_new_session()
    replay = laptop.items.items[first.publisher.raw]
    laptop.publish_new_session()
    laptop.items.plant(first.publisher.raw, replay)
    ui = ScriptedUI.answering(answers=[True])

    assert manage.revoke(ui, laptop.env(), assume_yes=False).record is None
    assert "maybe a replay" in ui.asked[0]
    assert isinstance(laptop.records.newest(first.publisher), Revocation)


# --- the items left for paired devices the record had no room for ----------------------------------


def with_devices(desk: Desk, short_dir: Path, *names: str) -> tuple[Path, list[Identity]]:
    """Paired devices for desk, and a project path (70 characters) long enough that only one fits in the record."""
    book = ContactBook(desk.keys.path.parent / contacts.FILE_NAME)
    keys = [Identity.generate() for _ in names]
    for name, key in zip(names, keys, strict=True):
        book.add(Contact(name, key.public_key, "device", int(desk.clock())))
    project = short_dir / ("p" * (70 - len(str(short_dir)) - 1))
    project.mkdir()
    desk.add_session(project)
    return project, keys


def item_key(desk: Desk, device: Identity):
    return device_items.item_identity(desk.keys.load(ScriptedUI.answering()), device.public_key).public_key


def test_revoke_revokes_the_items_left_for_devices_too_and_list_counts_them(laptop: Desk, short_dir: Path) -> None:
    project, [_, gamma, delta] = with_devices(laptop, short_dir, "beta", "gamma", "delta")
    with publish.publish(PublishRequest(), ScriptedUI.answering(), laptop.env(cwd=project)) as publication:
        published = publication.outcome
    assert isinstance(laptop.records.newest(item_key(laptop, gamma)), Resolved)

    assert manage.list_active(ScriptedUI.answering(), laptop.env()).device_items == 2
    ui = ScriptedUI.answering(answers=[True])
    revoked = manage.revoke(ui, laptop.env(), assume_yes=False)

    assert revoked == manage.RevokeOutcome(published.record, ("gamma", "delta"))
    assert ui.asked[0].endswith("ago (and the copies left for gamma, delta)?")
    for key in (published.publisher, item_key(laptop, gamma), item_key(laptop, delta)):
        assert isinstance(laptop.records.newest(key), Revocation)
    assert manage.list_active(ScriptedUI.answering(), laptop.env()).device_items == 0


def test_device_items_alone_are_still_revoked(laptop: Desk, short_dir: Path) -> None:
    project, [_, gamma] = with_devices(laptop, short_dir, "beta", "gamma")
    with publish.publish(PublishRequest(), ScriptedUI.answering(), laptop.env(cwd=project)):
        pass
    manage.revoke(ScriptedUI.answering(), laptop.env(), assume_yes=True)
    # Published again, then revoked again elsewhere: only the item is live now.
    with publish.publish(PublishRequest(), ScriptedUI.answering(), laptop.env(cwd=project)) as publication:
        laptop.records.revoke(laptop.keys.load(ScriptedUI.answering()))
        published = publication.outcome

    revoked = manage.revoke(ScriptedUI.answering(), laptop.env(), assume_yes=True)

    assert revoked == manage.RevokeOutcome(None, ("gamma",))
    assert isinstance(laptop.records.newest(item_key(laptop, gamma)), Revocation)
    assert isinstance(laptop.records.newest(published.publisher), Revocation)
    with pytest.raises(NothingDone, match="already revoked"):
        manage.revoke(ScriptedUI.answering(), laptop.env(), assume_yes=True)
