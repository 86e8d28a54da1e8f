"""The publish flow in process: a real key, real session files and real age under a temp HOME, a scripted UI,
and an in-memory DHT (tests/support/desks.py). Carrying the session itself needs BitTorrent: test_e2e_carry.py.
"""

from __future__ import annotations

import pytest
from support.desks import Desk
from support.ui import ScriptedUI

from cclink.errors import (
    CannotDecrypt,
    NetworkError,
    RecordTooLarge,
    SessionError,
    UnknownSession,
    UsageError,
    WeakSecret,
)
from cclink.flows import publish
from cclink.flows.publish import PublishOutcome, PublishRequest
from cclink.wire import contacts, device_items, kdf, payload
from cclink.wire.contacts import Contact, ContactBook
from cclink.wire.keys import Identity

PIN = "correct horse battery"


@pytest.fixture
def laptop(desks) -> Desk:
    desk = desks("laptop")
    desk.make_key()
    return desk


def published(desk: Desk, request: PublishRequest | None = None, ui: ScriptedUI | None = None) -> PublishOutcome:
    """What publishing request (the default: cclink with no options) on desk returned."""
    with publish.publish(request or PublishRequest(), ui or ScriptedUI.answering(), desk.env()) as publication:
        assert not publication.carrying
        return publication.outcome


def test_the_newest_session_of_the_directory_is_published_to_ones_own_key(laptop: Desk) -> None:
    laptop.add_session(age=60)
    newest = laptop.add_session(age=5)
    ui = ScriptedUI.answering(interactive=False)

    outcome = published(laptop, ui=ui)

    assert (outcome.session_id, outcome.mode, outcome.pickup_command) == (newest, "self", "cclink pickup")
    assert outcome.project == str(laptop.machine.project())
    assert outcome.published.nodes == laptop.items.nodes
    body = payload.open_payload(outcome.record.blob, laptop.keys.load(ui).age_identity())
    assert (body.session_id, body.hostname, body.project) == (newest, "laptop", outcome.project)
    assert "Publishing to the DHT" in ui.shown and ui.asked == []


def test_with_several_sessions_a_person_chooses_from_a_menu_of_what_they_were_about(laptop: Desk) -> None:
    older = laptop.add_session(age=60, summary=None, messages=(("user", "Fix the flaky upload test\nplease"),))
    below = laptop.machine.project("app", "api")
    newest = laptop.add_session(below, age=5, summary="Rename the config loader")
    ui = ScriptedUI.answering(choices=[1])

    outcome = published(laptop, ui=ui)

    assert outcome.session_id == older
    assert ui.menus == [
        [
            f"Rename the config loader  (5s ago, in api/, {newest[:8]})",
            f"Fix the flaky upload test  (1m ago, {older[:8]})",
        ]
    ]


def test_with_no_recent_session_nothing_is_published_and_no_passphrase_is_asked(desks) -> None:
    laptop = desks("laptop")
    laptop.make_key(passphrase="correct horse battery")
    laptop.add_session(age=2 * 86400)
    ui = ScriptedUI.answering()

    with pytest.raises(SessionError, match="no Claude Code session from the last 24 hours"):
        published(laptop, ui=ui)
    assert laptop.items.items == {} and ui.asked == []


def test_a_named_session_must_be_on_this_machine_unless_missing_is_allowed(laptop: Desk) -> None:
    elsewhere = "3f2a9c3e-1d5b-4a8e-9f00-5b1b2c3d4e5f"

    with pytest.raises(UnknownSession) as refused:
        published(laptop, PublishRequest(session_id=elsewhere))
    assert refused.value.session_id == elsewhere
    with pytest.raises(SessionError, match="nothing to carry"):
        published(laptop, PublishRequest(session_id=elsewhere, carry=True))
    assert laptop.items.items == {}

    outcome = published(laptop, PublishRequest(session_id=elsewhere, allow_missing=True))
    assert (outcome.session_id, outcome.project) == (elsewhere, str(laptop.machine.project()))


def test_a_pin_handoff_opens_with_the_pin_and_names_the_publisher_in_its_command(laptop: Desk) -> None:
    laptop.add_session()
    ui = ScriptedUI.answering(secrets=[PIN])

    outcome = published(laptop, PublishRequest(pin=True), ui)

    assert outcome.mode == "pin" and outcome.pickup_command == f"cclink pickup {outcome.publisher.z32}"
    assert outcome.record.pin_salt is not None
    body = payload.open_payload(outcome.record.blob, kdf.pin_identity(PIN, outcome.record.pin_salt))
    assert body.session_id == outcome.session_id


def test_a_weak_pin_publishes_nothing(laptop: Desk) -> None:
    laptop.add_session()

    with pytest.raises(WeakSecret):
        published(laptop, PublishRequest(pin=True), ScriptedUI.answering(secrets=["1234"]))
    assert laptop.items.items == {}


def test_a_shared_handoff_opens_with_the_colleagues_key_only(laptop: Desk) -> None:
    laptop.add_session()
    colleague = Identity.generate()

    outcome = published(laptop, PublishRequest(share=colleague.public_key))

    assert outcome.mode == "share" and outcome.record.recipient_key() == colleague.public_key
    assert payload.open_payload(outcome.record.blob, colleague.age_identity()).session_id == outcome.session_id


@pytest.mark.parametrize(
    ("request_", "complaint"),
    [
        (PublishRequest(pin=True, share=Identity.generate().public_key), "exclude each other"),
        (PublishRequest(burn=True, share=Identity.generate().public_key), "--burn cannot be combined with --share"),
        (PublishRequest(ttl=0), "--ttl must be between"),
        (PublishRequest(ttl=publish.MAX_TTL + 1), "--ttl must be between"),
        (PublishRequest(session_id="-rf"), "is not a Claude Code session id"),
    ],
    ids=["pin-and-share", "burn-and-share", "ttl-zero", "ttl-too-long", "flag-as-id"],
)
def test_impossible_requests_are_refused_before_the_key_is_opened(
    laptop: Desk, request_: PublishRequest, complaint: str
) -> None:
    laptop.add_session()
    ui = ScriptedUI.answering()

    with pytest.raises(UsageError, match=complaint):
        published(laptop, request_, ui)
    assert ui.asked == [] and laptop.items.items == {}


def test_burn_with_a_pin_warns_that_only_ones_own_key_revokes_it(laptop: Desk) -> None:
    laptop.add_session()

    outcome = published(laptop, PublishRequest(burn=True, pin=True), ScriptedUI.answering(secrets=[PIN]))

    assert outcome.record.burn
    assert any("Only a pickup made with your own key can revoke" in note for note in outcome.notes)


def test_a_handoff_too_big_for_one_dht_item_is_refused(laptop: Desk) -> None:
    deep = laptop.machine.project(*(["a-rather-long-directory-name"] * 24))
    request = PublishRequest(session_id="3f2a9c3e-1d5b-4a8e-9f00-5b1b2c3d4e5f", allow_missing=True)

    with pytest.raises(RecordTooLarge, match="the project path is too long"):
        publish.publish(request, ScriptedUI.answering(), laptop.env(cwd=deep))
    assert laptop.items.items == {}


def test_an_unreachable_dht_publishes_nothing_and_says_so(laptop: Desk) -> None:
    laptop.add_session()
    laptop.items.reachable = False

    with pytest.raises(NetworkError):
        published(laptop)


# --- paired devices ---------------------------------------------------------------------------------


def add_contact(desk: Desk, name: str, kind: str = "device") -> Identity:
    """A key of another machine (or colleague), in desk's contacts file as `cclink pair` leaves it."""
    other = Identity.generate()
    book = ContactBook(desk.keys.path.parent / contacts.FILE_NAME)
    book.add(Contact(name, other.public_key, kind, int(desk.clock())))  # type: ignore[arg-type]
    return other


def test_a_self_handoff_is_encrypted_to_ones_own_key_and_each_paired_device(laptop: Desk) -> None:
    desk = add_contact(laptop, "desk")
    colleague = add_contact(laptop, "alice", kind="contact")
    laptop.add_session()
    ui = ScriptedUI.answering()

    outcome = published(laptop, ui=ui)

    own = laptop.keys.load(ui)
    assert (outcome.mode, outcome.devices, outcome.pickup_command) == ("self", ("desk",), "cclink pickup")
    assert outcome.qr_command == f"cclink pickup {own.public_key.z32}"
    # The record is as the Rust cclink writes a self handoff; the key alone opens the blob, as it does there.
    assert (outcome.record.recipient, outcome.record.pin_salt, outcome.record.hostname) == (None, None, "")
    for key in (own, desk):
        assert payload.open_payload(outcome.record.blob, key.age_identity()).session_id == outcome.session_id
    with pytest.raises(CannotDecrypt):  # a colleague receives only what is shared with it
        payload.open_payload(outcome.record.blob, colleague.age_identity())


def test_a_device_holding_this_very_key_adds_no_recipient(laptop: Desk) -> None:
    own = laptop.keys.load(ScriptedUI.answering())
    ContactBook(laptop.keys.path.parent / contacts.FILE_NAME).add(Contact("twin", own.public_key, "device", 0))
    laptop.add_session()

    outcome = published(laptop)

    assert outcome.devices == () and outcome.record.blob.count(b"\n-> X25519 ") == 1


def test_shared_with_a_contact_the_handoff_is_for_it_alone_and_names_it(laptop: Desk) -> None:
    add_contact(laptop, "desk")
    alice = add_contact(laptop, "alice", kind="contact")
    laptop.add_session()

    outcome = published(laptop, PublishRequest(share=alice.public_key))

    assert (outcome.mode, outcome.shared_with, outcome.devices) == ("share", "alice", ())
    assert outcome.record.blob.count(b"\n-> X25519 ") == 1
    assert payload.open_payload(outcome.record.blob, alice.age_identity()).session_id == outcome.session_id


# --- devices the record has no room for ---------------------------------------------------------------


def test_carried_to_a_device_the_record_has_no_room_for_the_device_gets_an_item_carrying_the_same_session(
    laptop: Desk, swarm, short_dir
) -> None:
    desk = add_contact(laptop, "desk")
    project = short_dir / ("p" * (60 - len(str(short_dir)) - 1))  # 60 characters: no device fits beside --carry
    project.mkdir()
    laptop.add_session(project)
    env = laptop.env(cwd=project, network=swarm.network)

    with publish.publish(PublishRequest(carry=True), ScriptedUI.answering(), env) as publication:
        outcome = publication.outcome
        assert publication.carrying

    assert outcome.devices == ("desk",)
    assert [(item.device, item.stored.nodes) for item in outcome.device_items] == [("desk", laptop.items.nodes)]  # type: ignore[union-attr]
    with pytest.raises(CannotDecrypt):
        payload.open_payload(outcome.record.blob, desk.age_identity())
    own = laptop.keys.load(ScriptedUI.answering())
    item = laptop.records.resolve(device_items.item_identity(own, desk.public_key).public_key)
    carried = payload.open_payload(item.record.blob, desk.age_identity()).carry
    assert outcome.carry is not None and carried is not None
    assert (carried.info_hash, carried.sha256, carried.size) == (
        outcome.carry.info_hash,
        outcome.carry.sha256,
        outcome.carry.size,
    )


def test_a_device_that_fits_in_the_record_gets_no_item(laptop: Desk, short_dir) -> None:
    add_contact(laptop, "desk")
    project = short_dir / "app"
    project.mkdir()
    laptop.add_session(project)
    puts = laptop.items.puts

    with publish.publish(PublishRequest(), ScriptedUI.answering(), laptop.env(cwd=project)) as publication:
        outcome = publication.outcome

    assert (outcome.devices, outcome.device_items, laptop.items.puts) == (("desk",), (), puts + 1)
