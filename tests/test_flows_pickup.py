"""The pickup flow in process: real keys, session files and age under temp HOMEs, a scripted UI, and an
in-memory DHT (tests/support/desks.py). Fetching a carried session needs BitTorrent: test_e2e_carry.py.
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import replace
from pathlib import Path

import pytest
from support.desks import UNUSED_NETWORK, Desk
from support.keepers import MemoryKeeper
from support.ui import ScriptedUI

from cclink.errors import (
    CannotDecrypt,
    Declined,
    Expired,
    KeyFileError,
    NetworkError,
    NotFound,
    Rollback,
    SessionError,
    UsageError,
    WrongPin,
)
from cclink.flows import lookup, manage, pickup, publish
from cclink.flows.environment import Environment
from cclink.flows.keeping import REPUBLISH_EVERY, Keeping
from cclink.flows.pickup import PickupOutcome, Resumption
from cclink.flows.publish import PublishOutcome, PublishRequest
from cclink.net.record_store import Revocation
from cclink.wire import contacts, device_items, payload
from cclink.wire.agent_protocol import Item
from cclink.wire.contacts import Contact, ContactBook
from cclink.wire.keys import Identity

PIN = "correct horse battery"


@pytest.fixture
def laptop(desks) -> Desk:
    desk = desks("laptop")
    desk.make_key()
    return desk


@pytest.fixture
def desktop(desks, laptop: Desk) -> Desk:
    """A second machine holding the laptop's key, as after `cclink init --import`."""
    desk = desks("desktop")
    desk.use_key(laptop.keys.load(ScriptedUI.answering()))
    return desk


def pick_up(desk: Desk, ui: ScriptedUI, publisher: Identity | None = None, **options) -> PickupOutcome:
    options.setdefault("assume_yes", False)
    options.setdefault("confirm", True)
    key = publisher.public_key if publisher else None
    return pickup.pickup(key, ui, desk.env(), **options)


def test_ones_own_handoff_is_confirmed_then_resumed_in_its_project(laptop: Desk) -> None:
    published = laptop.publish_new_session()
    ui = ScriptedUI.answering(answers=[True])

    outcome = pick_up(laptop, ui)
    resumption = pickup.resume(outcome, ui, laptop.env())

    assert outcome.payload.session_id == published.session_id and not outcome.revoked
    [question] = ui.asked
    assert question.startswith(f"Resume session {published.session_id} ({published.project} on laptop, published")
    assert resumption == Resumption(published.session_id, Path(published.project))
    assert ui.said[-1] == f"Resuming session {published.session_id}..."


def test_declining_leaves_the_handoff_published(laptop: Desk) -> None:
    laptop.publish_new_session(PublishRequest(burn=True))

    with pytest.raises(Declined, match="not resumed; the handoff is still published"):
        pick_up(laptop, ScriptedUI.answering(answers=[False]))
    assert pick_up(laptop, ScriptedUI.answering(), confirm=False).record.burn


def test_an_expired_handoff_is_refused(laptop: Desk) -> None:
    laptop.publish_new_session(PublishRequest(ttl=60))
    laptop.clock.advance(61)

    with pytest.raises(Expired, match=r"expired \d+s ago"):
        pick_up(laptop, ScriptedUI.answering(answers=[True]))


def test_a_session_not_on_this_machine_is_refused_before_asking_or_revoking(laptop: Desk, desktop: Desk) -> None:
    laptop.publish_new_session(PublishRequest(burn=True))
    ui = ScriptedUI.answering()

    with pytest.raises(SessionError, match="is not on this machine"):
        pick_up(desktop, ui)
    assert ui.asked == []
    assert pick_up(desktop, ScriptedUI.answering(), confirm=False).record.burn  # still there


def test_without_claude_on_path_nothing_is_asked(laptop: Desk, monkeypatch: pytest.MonkeyPatch) -> None:
    laptop.publish_new_session()
    env = laptop.env()
    monkeypatch.setenv("PATH", str(laptop.home))  # no claude there
    ui = ScriptedUI.answering()

    with pytest.raises(SessionError, match="the claude command was not found"):
        pickup.pickup(None, ui, env, assume_yes=False, confirm=True)
    assert ui.asked == []


def test_a_project_dir_that_is_not_a_directory_is_refused_before_asking(laptop: Desk) -> None:
    laptop.publish_new_session()
    ui = ScriptedUI.answering()

    with pytest.raises(UsageError, match="is not a directory"):
        pick_up(laptop, ui, project_dir=laptop.home / "nowhere")
    assert ui.asked == []


def test_a_relative_project_dir_is_taken_from_the_current_directory(laptop: Desk) -> None:
    published = laptop.publish_new_session()
    other = laptop.machine.project("other")
    ui = ScriptedUI.answering(answers=[True])
    env = laptop.env(cwd=other.parent)

    outcome = pickup.pickup(None, ui, env, assume_yes=False, confirm=True, project_dir=Path("other"))
    resumption = pickup.resume(outcome, ui, env, project_dir=Path("other"))

    assert resumption == Resumption(published.session_id, other)


def test_ones_own_burn_handoff_is_revoked_on_pickup(laptop: Desk) -> None:
    laptop.publish_new_session(PublishRequest(burn=True))

    outcome = pick_up(laptop, ScriptedUI.answering(), assume_yes=True)

    assert outcome.revoked
    assert isinstance(laptop.records.newest(outcome.publisher), Revocation)
    with pytest.raises(NotFound, match="the last one was revoked"):
        pick_up(laptop, ScriptedUI.answering(), assume_yes=True)


def test_a_burn_handoff_picked_up_with_a_pin_from_another_key_stays(laptop: Desk, desks) -> None:
    published = laptop.publish_new_session(PublishRequest(burn=True, pin=True), secrets=(PIN,))
    stranger = desks("stranger")
    stranger.make_key()
    stranger.add_session(session_id=published.session_id)
    publisher = laptop.keys.load(ScriptedUI.answering())

    outcome = pick_up(stranger, ScriptedUI.answering(secrets=[PIN]), publisher, assume_yes=True)

    assert not outcome.revoked
    assert any("only its publisher's key can revoke it" in note for note in outcome.notes)


def test_a_pin_handoff_from_another_key_asks_for_the_pin_and_not_this_machines_passphrase(laptop: Desk, desks) -> None:
    published = laptop.publish_new_session(PublishRequest(pin=True), secrets=(PIN,))
    desktop = desks("desktop")
    desktop.make_key(passphrase="desktop passphrase")
    desktop.add_session(session_id=published.session_id)
    publisher = laptop.keys.load(ScriptedUI.answering())
    ui = ScriptedUI.answering(secrets=[PIN])

    assert pick_up(desktop, ui, publisher, assume_yes=True).payload.session_id == published.session_id
    assert ui.asked == ["PIN: "]


def test_a_handoff_shared_with_this_machine_asks_for_its_passphrase_once_found(laptop: Desk, desks) -> None:
    desktop = desks("desktop")
    me = desktop.make_key(passphrase="desktop passphrase")
    published = laptop.publish_new_session(PublishRequest(share=me.public_key))
    desktop.add_session(session_id=published.session_id)
    publisher = laptop.keys.load(ScriptedUI.answering())
    ui = ScriptedUI.answering(secrets=["desktop passphrase"])

    assert pick_up(desktop, ui, publisher, assume_yes=True).payload.session_id == published.session_id
    assert len(ui.asked) == 1 and "Passphrase" in ui.asked[0]


def test_a_wrong_pin_is_refused_after_three_tries_at_a_terminal_and_at_once_without_one(laptop: Desk, desks) -> None:
    laptop.publish_new_session(PublishRequest(pin=True), secrets=(PIN,))
    keyless = desks("keyless")
    publisher = laptop.keys.load(ScriptedUI.answering())
    typed = ScriptedUI.answering(secrets=["incorrect horse"] * 3)
    unattended = ScriptedUI.answering(secrets=["incorrect horse"], interactive=False)

    for ui in (typed, unattended):
        with pytest.raises(WrongPin, match="incorrect PIN"):
            pick_up(keyless, ui, publisher, confirm=False)
    assert typed.said == ["Incorrect PIN; try again."] * 2 and unattended.said == []


def test_a_mistyped_pin_can_be_typed_again(laptop: Desk, desks) -> None:
    laptop.publish_new_session(PublishRequest(pin=True), secrets=(PIN,))
    publisher = laptop.keys.load(ScriptedUI.answering())
    ui = ScriptedUI.answering(secrets=["incorrect horse", PIN])

    assert pick_up(desks("keyless"), ui, publisher, confirm=False).record.pin_salt
    assert ui.asked == ["PIN: ", "PIN: "]


def test_a_handoff_for_a_key_needs_a_key_here(laptop: Desk, desks) -> None:
    laptop.publish_new_session()
    publisher = laptop.keys.load(ScriptedUI.answering())

    with pytest.raises(KeyFileError, match="there is no key here; run `cclink init` first"):
        pick_up(desks("keyless"), ScriptedUI.answering(), publisher, confirm=False)


def test_another_key_is_told_how_to_get_a_handoff_it_can_open(laptop: Desk, desks) -> None:
    laptop.publish_new_session()
    other = desks("other")
    other_key = other.make_key()
    publisher = laptop.keys.load(ScriptedUI.answering())

    with pytest.raises(CannotDecrypt, match=f"cclink --share {other_key.public_key.z32}"):
        pick_up(other, ScriptedUI.answering(), publisher, confirm=False)


def test_a_shared_handoff_opens_for_its_recipient_only(laptop: Desk, desks) -> None:
    colleague, bystander = desks("colleague"), desks("bystander")
    colleague_key = colleague.make_key()
    bystander.make_key()
    published = laptop.publish_new_session(PublishRequest(share=colleague_key.public_key))
    publisher = laptop.keys.load(ScriptedUI.answering())

    outcome = pick_up(colleague, ScriptedUI.answering(), publisher, confirm=False)
    assert outcome.payload.session_id == published.session_id
    with pytest.raises(CannotDecrypt, match="was shared with"):
        pick_up(bystander, ScriptedUI.answering(), publisher, confirm=False)


def test_fetch_is_refused_for_a_handoff_without_the_session_data(laptop: Desk) -> None:
    laptop.publish_new_session()

    with pytest.raises(UsageError, match="does not carry the session data"):
        pick_up(laptop, ScriptedUI.answering(), force_fetch=True)


def test_nothing_under_ones_own_key_without_devices_says_how_to_pair(laptop: Desk) -> None:
    with pytest.raises(
        NotFound,
        match=r"no handoff is published under pk:\w+, your key; .* pair the two once: "
        r"run `cclink pair` here and `cclink pair CODE` .* on the other machine",
    ):
        pick_up(laptop, ScriptedUI.answering())


def test_nothing_under_anothers_key_is_just_not_found(laptop: Desk) -> None:
    other = Identity.generate()
    with pytest.raises(NotFound) as nothing:
        pick_up(laptop, ScriptedUI.answering(), other, confirm=False)
    assert nothing.value.message == f"no handoff is published under {other.public_key.display}"


def test_an_older_item_than_one_seen_before_is_refused_as_a_replay(laptop: Desk) -> None:
    first = laptop.publish_new_session()
    publisher = first.publisher
    replay = laptop.items.items[publisher.raw]
    laptop.publish_new_session()
    pick_up(laptop, ScriptedUI.answering(), confirm=False)  # this machine has now seen the newer one
    laptop.items.plant(publisher.raw, replay)

    with pytest.raises(Rollback, match="may be a replay"):
        pick_up(laptop, ScriptedUI.answering(), confirm=False)


def test_a_dht_unreachable_for_a_moment_is_retried_with_word_of_it(laptop: Desk, monkeypatch) -> None:
    laptop.publish_new_session()
    ui = ScriptedUI.answering()
    monkeypatch.setattr(laptop.items, "reachable", False)

    def back_after_one_retry(message: str) -> None:
        ScriptedUI.update(ui, message)
        laptop.items.reachable = True

    monkeypatch.setattr(ui, "update", back_after_one_retry)
    outcome = pick_up(laptop, ui, confirm=False)

    assert outcome.payload.session_id
    assert "DHT unreachable; retrying in 1s" in ui.shown


# --- pickup --wait ------------------------------------------------------------------------


def test_waiting_takes_the_first_handoff_newer_than_the_last_picked_up(laptop: Desk, desktop: Desk) -> None:
    first = laptop.publish_new_session()
    desktop.add_session(session_id=first.session_id)
    pick_up(desktop, ScriptedUI.answering(), assume_yes=True)  # the desktop has picked this one up
    later: list[PublishOutcome] = []
    laptop.clock.after(5, lambda: later.append(laptop.publish_new_session()))
    ui = ScriptedUI.answering()

    outcome = pick_up(desktop, ui, confirm=False, wait=600)

    assert outcome.payload.session_id == later[0].session_id != first.session_id
    assert ui.shown[0].startswith("Waiting for a new handoff from")
    assert laptop.clock.slept[:2] == [lookup.WAIT_FIRST_POLL, lookup.WAIT_FIRST_POLL * lookup.WAIT_BACKOFF]


def test_a_handoff_never_picked_up_here_is_taken_at_once(laptop: Desk, desktop: Desk) -> None:
    published = laptop.publish_new_session()

    outcome = pick_up(desktop, ScriptedUI.answering(), confirm=False, wait=600)

    assert outcome.payload.session_id == published.session_id and laptop.clock.slept == []


def test_waiting_polls_less_and_less_often_and_gives_up_at_its_time(laptop: Desk, desktop: Desk) -> None:
    laptop.publish_new_session()
    pick_up(desktop, ScriptedUI.answering(), confirm=False)

    with pytest.raises(NotFound, match=r"no new handoff from .* appeared within 10m"):
        pick_up(desktop, ScriptedUI.answering(), confirm=False, wait=600)
    slept = desktop.clock.slept
    assert sum(slept) == pytest.approx(600)
    assert max(slept) == lookup.WAIT_LONGEST_POLL
    assert slept[:-1] == sorted(slept[:-1])  # never more often than before, until the last, cut short


def test_waiting_rides_out_an_unreachable_dht(laptop: Desk, desktop: Desk) -> None:
    laptop.items.reachable = False
    laptop.clock.after(3, lambda: setattr(laptop.items, "reachable", True))
    laptop.clock.after(10, lambda: laptop.publish_new_session())
    ui = ScriptedUI.answering()

    outcome = pick_up(desktop, ui, confirm=False, wait=600)

    assert outcome.payload.session_id
    assert any("the DHT did not answer" in shown for shown in ui.shown)


# --- paired devices: one handoff for one's own key and every device -------------------------------


def pair(*desks: Desk) -> None:
    """Make every desk a device of every other, as `cclink pair` leaves their contacts files."""
    for desk in desks:
        book = ContactBook(desk.keys.path.parent / contacts.FILE_NAME)
        for other in desks:
            if other is not desk:
                key = other.keys.load(ScriptedUI.answering()).public_key
                book.add(Contact(other.machine.name, key, "device", int(desk.clock())))


@pytest.fixture
def three(desks, short_dir: Path) -> tuple[Desk, Desk, Desk]:
    """Three machines with keys of their own, each paired with the others, publishing from a short project path.

    A DHT item has room for one's own key and about two devices (docs/performance.md), and less for the
    long paths of pytest's temporary directories.
    """
    made = tuple(ShortDesk(desks(name), short_dir) for name in ("alpha", "beta", "gamma"))
    for desk in made:
        desk.make_key()
    pair(*made)
    return made  # type: ignore[return-value]


class ShortDesk(Desk):
    """A desk whose sessions have short ids and live in a short project path, so that two devices fit."""

    _ids = itertools.count(1)

    def __init__(self, desk: Desk, short_dir: Path) -> None:
        self.__dict__.update(desk.__dict__)
        self.short_project = short_dir / "app"
        self.short_project.mkdir(exist_ok=True)

    def add_session(self, project: Path | None = None, session_id: str | None = None, **options) -> str:  # type: ignore[override]
        return super().add_session(project or self.short_project, session_id or f"s{next(self._ids)}", **options)

    def env(self, cwd: Path | None = None, network=UNUSED_NETWORK) -> Environment:  # type: ignore[override]
        return super().env(cwd or self.short_project, network)


def test_a_handoff_reaches_every_paired_device_and_says_from_where(three: tuple[Desk, Desk, Desk]) -> None:
    alpha, beta, gamma = three
    published = alpha.publish_new_session()

    for desk in (beta, gamma):
        desk.add_session(session_id=published.session_id)
        ui = ScriptedUI.answering(answers=[True])
        outcome = pick_up(desk, ui)
        resumption = pickup.resume(outcome, ui, desk.env())

        assert (outcome.payload.session_id, outcome.sender) == (published.session_id, "alpha")
        assert outcome.publisher == published.publisher
        assert ui.asked[0].startswith(f"Resume session {published.session_id} from alpha (")
        assert ui.said[-1] == f"Resuming session {published.session_id} from alpha..."
        assert resumption.session_id == published.session_id


def test_an_unpaired_machine_cannot_open_it_and_is_told_it_was_not_addressed_to_it(
    three: tuple[Desk, Desk, Desk], desks
) -> None:
    alpha = three[0]
    alpha.publish_new_session()
    outsider = desks("outsider")
    outsider.make_key()
    publisher = alpha.keys.load(ScriptedUI.answering())

    with pytest.raises(CannotDecrypt, match="not to this machine; pair the two machines"):
        pick_up(outsider, ScriptedUI.answering(), publisher, confirm=False)
    # Paired on its side only (alpha never added it), it is told that what alpha published is not for it.
    book = ContactBook(outsider.keys.path.parent / contacts.FILE_NAME)
    book.add(Contact("alpha", publisher.public_key, "device", int(outsider.clock())))
    with pytest.raises(NotFound, match="there are handoffs under alpha, but none addressed to this machine"):
        pick_up(outsider, ScriptedUI.answering(), confirm=False)


def test_the_newest_handoff_under_any_of_the_keys_wins(three: tuple[Desk, Desk, Desk]) -> None:
    alpha, beta, gamma = three
    alpha.publish_new_session()
    alpha.clock.advance(60)
    newer = beta.publish_new_session()

    for desk, sender in ((gamma, "beta"), (alpha, "beta"), (beta, None)):
        outcome = pick_up(desk, ScriptedUI.answering(), confirm=False)
        assert (outcome.payload.session_id, outcome.sender) == (newer.session_id, sender)


def test_a_handoff_this_machine_cannot_open_is_passed_over_for_an_older_one_it_can(
    three: tuple[Desk, Desk, Desk], desks
) -> None:
    alpha, beta, _ = three
    colleague = desks("colleague").make_key()
    for_beta = alpha.publish_new_session()
    alpha.clock.advance(60)
    beta.publish_new_session(PublishRequest(share=colleague.public_key))  # beta's own key: not for beta

    outcome = pick_up(beta, ScriptedUI.answering(), confirm=False)

    assert (outcome.payload.session_id, outcome.sender) == (for_beta.session_id, "alpha")


def test_an_expired_handoff_under_a_device_gives_way_to_a_live_one_and_is_refused_when_alone(
    three: tuple[Desk, Desk, Desk],
) -> None:
    alpha, beta, gamma = three
    live = alpha.publish_new_session()
    alpha.clock.advance(10)
    beta.publish_new_session(PublishRequest(ttl=60))
    alpha.clock.advance(61)

    assert pick_up(gamma, ScriptedUI.answering(), confirm=False).payload.session_id == live.session_id
    alpha.clock.advance(86400)
    with pytest.raises(Expired):
        pick_up(gamma, ScriptedUI.answering(), confirm=False)


def test_nothing_under_any_key_names_the_devices_looked_up(three: tuple[Desk, Desk, Desk]) -> None:
    with pytest.raises(NotFound, match="no handoff is published under your key and beta, gamma"):
        pick_up(three[0], ScriptedUI.answering(), confirm=False)


def test_a_key_whose_lookup_fails_is_a_note_when_another_has_the_handoff(three: tuple[Desk, Desk, Desk]) -> None:
    alpha, beta, gamma = three
    first = beta.publish_new_session()
    replay = beta.items.items[first.publisher.raw]
    beta.publish_new_session()
    pick_up(gamma, ScriptedUI.answering(), confirm=False)  # gamma has now seen beta's newer one
    beta.items.plant(first.publisher.raw, replay)
    alpha.clock.advance(60)
    published = alpha.publish_new_session()

    outcome = pick_up(gamma, ScriptedUI.answering(), confirm=False)

    assert outcome.payload.session_id == published.session_id
    assert any(note.startswith("beta's handoffs could not be looked up") for note in outcome.notes)


def test_a_burn_handoff_picked_up_on_a_device_stays_and_says_where_it_can_be_revoked(
    three: tuple[Desk, Desk, Desk],
) -> None:
    alpha, beta, _ = three
    published = alpha.publish_new_session(PublishRequest(burn=True))
    assert any("picked up on beta, gamma, it stays" in note for note in published.notes)
    beta.add_session(session_id=published.session_id)

    outcome = pick_up(beta, ScriptedUI.answering(), assume_yes=True)

    assert not outcome.revoked
    assert any(
        "only alpha's key can revoke it" in note and "until `cclink revoke` there" in note for note in outcome.notes
    )
    assert pick_up(alpha, ScriptedUI.answering(), confirm=False).record.burn  # still there


def test_a_device_can_be_picked_up_from_by_its_key_alone(three: tuple[Desk, Desk, Desk]) -> None:
    alpha, beta, _ = three
    published = alpha.publish_new_session()
    alpha.clock.advance(60)
    beta.publish_new_session()  # newer, but not asked for

    outcome = pick_up(beta, ScriptedUI.answering(), alpha.keys.load(ScriptedUI.answering()), confirm=False)

    assert (outcome.payload.session_id, outcome.sender) == (published.session_id, "alpha")


def test_waiting_takes_the_first_new_handoff_under_any_of_the_keys(three: tuple[Desk, Desk, Desk]) -> None:
    alpha, beta, gamma = three
    first = alpha.publish_new_session()
    pick_up(gamma, ScriptedUI.answering(), confirm=False)  # gamma has picked this one up
    later: list[PublishOutcome] = []
    alpha.clock.after(5, lambda: later.append(beta.publish_new_session()))
    ui = ScriptedUI.answering()

    outcome = pick_up(gamma, ui, confirm=False, wait=600)

    assert (outcome.payload.session_id, outcome.sender) == (later[0].session_id, "beta") != (first.session_id, "beta")
    assert ui.shown[0] == "Waiting for a new handoff from your key and alpha, beta (Ctrl-C stops)"


# --- devices the record has no room for: an item of their own under a pairwise key -------------------

LONG_PATH = 70  # characters: with a UUID session id, one device fits in the record beside one's own key


class LongPathDesk(Desk):
    """A desk whose sessions live in a project path of LONG_PATH characters."""

    def __init__(self, desk: Desk, short_dir: Path) -> None:
        self.__dict__.update(desk.__dict__)
        self.long_project = short_dir / ("p" * (LONG_PATH - len(str(short_dir)) - 1))
        self.long_project.mkdir(exist_ok=True)

    def add_session(self, project: Path | None = None, session_id: str | None = None, **options) -> str:  # type: ignore[override]
        return super().add_session(project or self.long_project, session_id, **options)

    def env(self, cwd: Path | None = None, network=UNUSED_NETWORK) -> Environment:  # type: ignore[override]
        return super().env(cwd or self.long_project, network)


@pytest.fixture
def four(desks, short_dir: Path) -> tuple[LongPathDesk, ...]:
    """Four machines with keys of their own, all paired, publishing from a long project path."""
    made = tuple(LongPathDesk(desks(name), short_dir) for name in ("alpha", "beta", "gamma", "delta"))
    for desk in made:
        desk.make_key()
    pair(*made)
    return made


def key_of(desk: Desk) -> Identity:
    return desk.keys.load(ScriptedUI.answering())


def test_devices_the_record_has_no_room_for_get_an_item_each_and_every_one_picks_up(four) -> None:
    alpha, beta, gamma, delta = four

    published = alpha.publish_new_session()

    assert published.devices == ("beta", "gamma", "delta")
    assert [(item.device, item.stored.nodes) for item in published.device_items] == [  # type: ignore[union-attr]
        ("gamma", alpha.items.nodes),
        ("delta", alpha.items.nodes),
    ]
    opened = payload.open_payload(published.record.blob, key_of(beta).age_identity())
    assert opened.session_id == published.session_id  # beta has room in the record itself
    with pytest.raises(CannotDecrypt):
        payload.open_payload(published.record.blob, key_of(gamma).age_identity())
    for desk in (beta, gamma, delta):
        desk.add_session(session_id=published.session_id)
        ui = ScriptedUI.answering(answers=[True])
        outcome = pick_up(desk, ui)
        pickup.resume(outcome, ui, desk.env())

        assert (outcome.payload.session_id, outcome.sender) == (published.session_id, "alpha")
        assert outcome.publisher == published.publisher
        assert ui.asked[0].startswith(f"Resume session {published.session_id} from alpha (")
        assert ui.said[-1] == f"Resuming session {published.session_id} from alpha..."


def test_an_item_is_under_a_key_that_names_neither_machine_and_holds_an_ordinary_record(four) -> None:
    alpha, _, _, delta = four
    published = alpha.publish_new_session()
    item_key = device_items.item_identity(key_of(alpha), key_of(delta).public_key).public_key

    found = alpha.records.resolve(item_key)

    assert found.record.pubkey == item_key.z32 and found.record.recipient is None
    assert found.record.expires_at == published.record.expires_at
    body = payload.open_payload(found.record.blob, key_of(delta).age_identity())
    assert body.session_id == published.session_id
    with pytest.raises(CannotDecrypt):
        payload.open_payload(found.record.blob, key_of(alpha).age_identity())


def test_a_machine_alpha_is_not_paired_with_finds_no_item_for_it(four, desks) -> None:
    alpha = four[0]
    alpha.publish_new_session()
    outsider = desks("outsider")
    outsider.make_key()
    # Paired on its side only: it looks up alpha's key and the item alpha would have left for it.
    book = ContactBook(outsider.keys.path.parent / contacts.FILE_NAME)
    book.add(Contact("alpha", key_of(alpha).public_key, "device", int(outsider.clock())))

    with pytest.raises(NotFound, match="there are handoffs under alpha, but none addressed to this machine"):
        pick_up(outsider, ScriptedUI.answering(), confirm=False)


def test_a_burn_handoff_picked_up_through_an_item_revokes_the_item(four) -> None:
    alpha, beta, _, delta = four
    published = alpha.publish_new_session(PublishRequest(burn=True))
    assert any("picked up on beta, it stays" in note for note in published.notes)
    delta.add_session(session_id=published.session_id)

    outcome = pick_up(delta, ScriptedUI.answering(), assume_yes=True)

    assert outcome.revoked and outcome.sender == "alpha"
    assert any("left for this machine was revoked" in note and "alpha's own key" in note for note in outcome.notes)
    item_key = device_items.item_from(key_of(alpha).public_key, key_of(delta)).public_key
    assert isinstance(delta.records.newest(item_key), Revocation)
    assert pick_up(beta, ScriptedUI.answering(), confirm=False).record.burn  # the record itself stays
    with pytest.raises(NotFound):
        pick_up(delta, ScriptedUI.answering(), confirm=False)


def test_waiting_covers_the_items_left_for_this_machine(four) -> None:
    alpha, _, _, delta = four
    first = alpha.publish_new_session()
    pick_up(delta, ScriptedUI.answering(), confirm=False)  # delta has picked this one up, through its item
    later: list[PublishOutcome] = []
    alpha.clock.after(5, lambda: later.append(alpha.publish_new_session()))
    ui = ScriptedUI.answering()

    outcome = pick_up(delta, ui, confirm=False, wait=600)

    assert (outcome.payload.session_id, outcome.sender) == (later[0].session_id, "alpha") != (first.session_id, "alpha")
    assert ui.shown[0] == "Waiting for a new handoff from your key and alpha, beta, gamma (Ctrl-C stops)"


def test_an_item_that_could_not_be_stored_is_a_note_and_the_record_is_published(four, monkeypatch) -> None:
    alpha, beta, gamma, _ = four
    gamma_item = device_items.item_identity(key_of(alpha), key_of(gamma).public_key).public_key
    put = alpha.items.put

    def refusing_gammas_item(public_key: bytes, *args, **options):
        if public_key == gamma_item.raw:
            raise NetworkError("no DHT node answered")
        return put(public_key, *args, **options)

    monkeypatch.setattr(alpha.items, "put", refusing_gammas_item)
    published = alpha.publish_new_session()

    assert [(item.device, item.stored is None) for item in published.device_items] == [
        ("gamma", True),
        ("delta", False),
    ]
    assert "The handoff for gamma could not be published (no DHT node answered)." in published.notes
    assert pick_up(beta, ScriptedUI.answering(), confirm=False).payload.session_id == published.session_id


def test_ones_own_burn_pickup_revokes_the_items_left_for_devices_too(four) -> None:
    alpha, beta, gamma, delta = four
    keeper = MemoryKeeper()
    published = alpha.publish_new_session(PublishRequest(burn=True))
    alpha.clock.advance(60)
    gamma_item = device_items.item_identity(key_of(alpha), key_of(gamma).public_key).public_key
    delta_item = device_items.item_identity(key_of(alpha), key_of(delta).public_key).public_key

    outcome = pickup.pickup(
        None, ScriptedUI.answering(), replace(alpha.env(), keeper=keeper), assume_yes=True, confirm=False
    )

    assert outcome.revoked and outcome.payload.session_id == published.session_id
    assert "The copies left for gamma, delta were revoked too." in outcome.notes
    for key in (published.publisher, gamma_item, delta_item):
        assert isinstance(alpha.records.newest(key), Revocation)
    assert {handed.publisher for handed in keeper.handed} == {published.publisher, gamma_item, delta_item}
    for desk in (beta, gamma, delta):
        with pytest.raises(NotFound):
            pick_up(desk, ScriptedUI.answering(), confirm=False)


def test_an_item_of_a_later_handoff_is_not_revoked_by_the_burn_pickup_of_an_earlier_one(four) -> None:
    alpha, _, gamma, _ = four
    burnt = alpha.publish_new_session(PublishRequest(burn=True))
    alpha.clock.advance(60)
    later = alpha.publish_new_session()  # its items replace the burn handoff's

    revoked = manage.revoke_items_of_burnt(key_of(alpha), burnt.record, ScriptedUI.answering(), alpha.env())

    assert revoked == ()

    assert pick_up(gamma, ScriptedUI.answering(), confirm=False).payload.session_id == later.session_id


def test_picking_up_by_a_devices_name_finds_its_item_for_this_machine(four, desks) -> None:
    alpha, _, gamma, _ = four
    alpha_key = key_of(alpha)
    published = alpha.publish_new_session(PublishRequest(burn=True))
    gamma.add_session(session_id=published.session_id)

    outcome = pick_up(gamma, ScriptedUI.answering(), alpha_key, assume_yes=True)

    assert (outcome.payload.session_id, outcome.sender, outcome.publisher) == (
        published.session_id,
        "alpha",
        alpha_key.public_key,
    )
    assert outcome.revoked  # its item, which gamma can revoke
    item_key = device_items.item_from(alpha_key.public_key, key_of(gamma)).public_key
    assert isinstance(gamma.records.newest(item_key), Revocation)
    # What is under alpha's own key and not for gamma is explained as when alpha's key alone is looked up.
    colleague = desks("colleague").make_key()
    alpha.clock.advance(60)
    alpha.publish_new_session(PublishRequest(share=colleague.public_key))
    with pytest.raises(CannotDecrypt, match="was shared with"):
        pick_up(gamma, ScriptedUI.answering(), alpha_key, confirm=False)


def test_waiting_by_a_devices_name_covers_its_item_for_this_machine(four) -> None:
    alpha, _, gamma, _ = four
    later: list[PublishOutcome] = []
    alpha.clock.after(5, lambda: later.append(alpha.publish_new_session()))
    ui = ScriptedUI.answering()

    outcome = pick_up(gamma, ui, key_of(alpha), confirm=False, wait=600)

    assert (outcome.payload.session_id, outcome.sender) == (later[0].session_id, "alpha")
    assert ui.shown[0] == "Waiting for a new handoff from alpha (Ctrl-C stops)"


@pytest.fixture
def two(desks, short_dir: Path) -> tuple[LongPathDesk, LongPathDesk]:
    """Two paired machines with keys of their own, publishing from a long project path: with --carry the record
    has no room for the other, which gets an item of its own."""
    made = tuple(LongPathDesk(desks(name), short_dir) for name in ("alpha", "beta"))
    for desk in made:
        desk.make_key()
    pair(*made)
    return made  # type: ignore[return-value]


def test_a_burn_handoff_carried_through_an_item_is_revoked_by_the_device_once_the_session_is_here(
    two: tuple[LongPathDesk, LongPathDesk], swarm
) -> None:
    alpha, beta = two
    publisher_keeper, keeper = MemoryKeeper(), MemoryKeeper()
    alpha.add_session()
    publishing = replace(alpha.env(network=swarm.network), keeper=publisher_keeper)
    with publish.publish(PublishRequest(carry=True, burn=True), ScriptedUI.answering(), publishing) as publication:
        published = publication.outcome
        assert [item.device for item in published.device_items] == ["beta"]
        seeding = threading.Thread(target=publication.serve_carry, args=(ScriptedUI.answering(), 120), daemon=True)
        seeding.start()
        env = replace(beta.env(network=swarm.network), keeper=keeper)
        ui = ScriptedUI.answering()

        outcome = pickup.pickup(None, ui, env, assume_yes=True, confirm=True)
        assert outcome.fetch and not outcome.revoked
        assert any("this machine revokes the one alpha left for it" in note for note in outcome.notes)
        resumption = pickup.resume(outcome, ui, env, assume_yes=True)
        seeding.join(120)

    assert resumption.session_id == published.session_id
    assert "Burn-after-read: the handoff alpha left for this machine was revoked." in ui.said
    item_key = device_items.item_from(key_of(alpha).public_key, key_of(beta)).public_key
    assert isinstance(beta.records.newest(item_key), Revocation)
    assert isinstance(beta.records.newest(published.publisher), Revocation)  # alpha's, on the acknowledgement
    [handed] = keeper.handed
    assert handed.publisher == item_key and handed.expires_at == outcome.record.expires_at
    # The publisher's agent, keeping the item, finds the revocation and keeps that instead.
    [kept_item] = [handed for handed in publisher_keeper.handed if handed.publisher == item_key]
    kept = Keeping(alpha.items, lambda items: None, jitter=lambda: 0.5)
    now = alpha.clock.now
    assert (
        kept.keep(Item(item_key.raw, kept_item.item.seq, kept_item.item.signature, kept_item.item.value, 0), now)
        is None
    )
    kept.work(lambda: now + REPUBLISH_EVERY)
    [entry] = kept.entries(now + REPUBLISH_EVERY)
    assert entry.kind == "revocation" and entry.seq == handed.item.seq
    assert isinstance(beta.records.newest(item_key), Revocation)
    with pytest.raises(NotFound):
        pick_up(beta, ScriptedUI.answering(), confirm=False)
