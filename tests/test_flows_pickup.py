"""The pickup flow in process: real keys, session files and age under temp HOMEs, a scripted UI, and an
in-memory DHT (tests/support/desks.py). Fetching a carried session needs BitTorrent: test_e2e_carry.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from support.desks import Desk
from support.ui import ScriptedUI

from cclink.errors import (
    CannotDecrypt,
    Declined,
    Expired,
    KeyFileError,
    NotFound,
    Rollback,
    SessionError,
    UsageError,
    WrongPin,
)
from cclink.flows import pickup
from cclink.flows.pickup import PickupOutcome, Resumption
from cclink.flows.publish import PublishOutcome, PublishRequest
from cclink.net.record_store import Revocation
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


def test_nothing_under_ones_own_key_says_that_the_other_machine_may_use_another_key(laptop: Desk) -> None:
    with pytest.raises(NotFound, match=r"no handoff is published under pk:\w+, your key; .* `cclink init --import`"):
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
    assert laptop.clock.slept[:2] == [pickup.WAIT_FIRST_POLL, pickup.WAIT_FIRST_POLL * pickup.WAIT_BACKOFF]


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
    assert max(slept) == pickup.WAIT_LONGEST_POLL
    assert slept[:-1] == sorted(slept[:-1])  # never more often than before, until the last, cut short


def test_waiting_rides_out_an_unreachable_dht(laptop: Desk, desktop: Desk) -> None:
    laptop.items.reachable = False
    laptop.clock.after(3, lambda: setattr(laptop.items, "reachable", True))
    laptop.clock.after(10, lambda: laptop.publish_new_session())
    ui = ScriptedUI.answering()

    outcome = pick_up(desktop, ui, confirm=False, wait=600)

    assert outcome.payload.session_id
    assert any("the DHT did not answer" in shown for shown in ui.shown)
