"""The publish flow in process: a real key, real session files and real age under a temp HOME, a scripted UI,
and an in-memory DHT (tests/support/desks.py). Carrying the session itself needs BitTorrent: test_e2e_carry.py.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from support.desks import Desk
from support.ui import ScriptedUI

from cclink.errors import (
    CannotDecrypt,
    NetworkError,
    NotFound,
    RecordTooLarge,
    SessionError,
    UnknownSession,
    UsageError,
    WeakSecret,
)
from cclink.flows import pickup, publish, seeding
from cclink.flows.publish import PublishOutcome, PublishRequest
from cclink.flows.seeding import CarryResult, Publication
from cclink.local import runtime
from cclink.net import krpc, transfer_files
from cclink.net.endpoints import Network
from cclink.net.record_store import Revocation
from cclink.wire import contacts, device_items, kdf, payload
from cclink.wire.agent_protocol import CarriedItem, Item, Transfer
from cclink.wire.contacts import Contact, ContactBook
from cclink.wire.keys import Identity, PublicKey

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


# --- a carried handoff's device items: renewed while it is offered, revoked with it for burn ------------------

GUARD = 120.0  # seconds: a guard against hangs, never a measurement


def eventually(check: Callable[[], bool], what: str) -> None:
    give_up = time.monotonic() + GUARD
    while not check():
        assert time.monotonic() < give_up, f"never: {what}"
        time.sleep(0.05)


@pytest.fixture
def alpha_beta_gamma(desks, short_dir: Path) -> tuple[Desk, Desk, Desk, Path]:
    """Three machines with keys of their own, paired; alpha publishes from a project whose --carry record has
    room for one device (beta) beside alpha's own key, so that gamma gets an item."""
    alpha, beta, gamma = desks("alpha"), desks("beta"), desks("gamma")
    keys = {desk: desk.make_key() for desk in (alpha, beta, gamma)}
    for desk in (alpha, beta, gamma):
        book = ContactBook(desk.keys.path.parent / contacts.FILE_NAME)
        for other in (alpha, beta, gamma):
            if other is not desk:
                book.add(Contact(other.machine.name, keys[other].public_key, "device", int(desk.clock())))
    project = short_dir / "a"
    project.mkdir()
    alpha.add_session(project, "s1")
    return alpha, beta, gamma, project


def key_of(desk: Desk) -> Identity:
    return desk.keys.load(ScriptedUI.answering())


def gammas_item(alpha: Desk, gamma: Desk) -> PublicKey:
    return device_items.item_identity(key_of(alpha), key_of(gamma).public_key).public_key


def fetch(desk: Desk, network: Network) -> pickup.Resumption:
    """Pick up with no argument on desk, fetch the carried session and acknowledge it."""
    ui, env = ScriptedUI.answering(), desk.env(network=network)
    outcome = pickup.pickup(None, ui, env, assume_yes=True, confirm=True)
    assert outcome.fetch
    return pickup.resume(outcome, ui, env, assume_yes=True)


def serving(publication: Publication, **options: float) -> tuple[threading.Thread, list[CarryResult]]:
    results: list[CarryResult] = []
    thread = threading.Thread(
        target=lambda: results.append(publication.serve_carry(ScriptedUI.answering(), GUARD, **options)), daemon=True
    )
    thread.start()
    return thread, results


def test_a_burn_carry_fetched_through_the_record_revokes_the_other_devices_items_too(alpha_beta_gamma, swarm) -> None:
    alpha, beta, gamma, project = alpha_beta_gamma
    env = alpha.env(cwd=project, network=swarm.network)
    with publish.publish(PublishRequest(carry=True, burn=True), ScriptedUI.answering(), env) as publication:
        outcome = publication.outcome
        assert outcome.devices == ("beta", "gamma") and [item.device for item in outcome.device_items] == ["gamma"]
        thread, results = serving(publication)

        fetch(beta, swarm.network)  # beta opens the record under alpha's key
        thread.join(GUARD)

    [result] = results
    assert (result.revoked, result.items_revoked) == (True, 1)
    assert isinstance(alpha.records.newest(gammas_item(alpha, gamma)), Revocation)
    with pytest.raises(NotFound):
        pickup.pickup(None, ScriptedUI.answering(), gamma.env(), assume_yes=False, confirm=False)


def test_an_item_the_device_revoked_itself_is_left_as_it_revoked_it(alpha_beta_gamma, swarm) -> None:
    alpha, _, gamma, project = alpha_beta_gamma
    env = alpha.env(cwd=project, network=swarm.network)
    with publish.publish(PublishRequest(carry=True, burn=True), ScriptedUI.answering(), env) as publication:
        [put] = [item.stored for item in publication.outcome.device_items]
        thread, results = serving(publication)

        fetch(gamma, swarm.network)  # through its item, which gamma revokes itself
        thread.join(GUARD)

    [result] = results
    assert (result.revoked, result.items_revoked) == (True, 0)  # a newer revocation was there: not put over it
    revoked = alpha.records.newest(gammas_item(alpha, gamma))
    assert isinstance(revoked, Revocation)
    assert put is not None and revoked.item.seq > put.seq + 1  # the device's own, above the one signed in advance


class PutsAgain:
    """The desks' DHT, noting each item put again unchanged, by key."""

    def __init__(self, items, monkeypatch: pytest.MonkeyPatch) -> None:
        self.seen: dict[bytes, list[krpc.Item]] = {}
        put_again = items.put_again

        def noted(public_key: bytes, item: krpc.Item, *args, **options):
            self.seen.setdefault(public_key, []).append(item)
            return put_again(public_key, item, *args, **options)

        monkeypatch.setattr(items, "put_again", noted)


def test_while_a_carry_is_offered_its_device_items_are_put_again_as_signed(
    alpha_beta_gamma, swarm, monkeypatch
) -> None:
    alpha, beta, gamma, project = alpha_beta_gamma
    puts = PutsAgain(alpha.items, monkeypatch)
    item_key = gammas_item(alpha, gamma)
    env = alpha.env(cwd=project, network=swarm.network)
    with publish.publish(PublishRequest(carry=True), ScriptedUI.answering(), env) as publication:
        put = alpha.items.items[item_key.raw]
        thread, _ = serving(publication, renew_every=0.0)

        eventually(lambda: bool(puts.seen.get(item_key.raw)), "gamma's item was put again")
        fetch(beta, swarm.network)
        thread.join(GUARD)

    assert set(puts.seen[item_key.raw]) == {put}  # the item as put, not signed again


# --- the same through the agent's Transfers, in this process -------------------------------------------


class InProcessAgent:
    """The agent's side of a carry in this process: its Transfers over the desks' DHT, its directory under root."""

    def __init__(self, root: Path, network: Network, items, renew_every: float = seeding.RENEW_EVERY) -> None:
        self.carry_dir = root / "carry"
        self.revocations: list[Item] = []
        self.transfers = seeding.Transfers(
            transfer_files.TransferFiles(self.carry_dir),
            network,
            items,
            lambda item, now: self.revocations.append(item),
            clock=time.time,
            renew_every=renew_every,
        )

    def keep(self, publisher: PublicKey, item: krpc.Item, expires_at: float) -> str | None:
        return None

    def carry(self, transfer: Transfer, archive: Path) -> str | None:
        transfer_id = secrets.token_hex(16)
        directory = runtime.private_dir(self.carry_dir, create=True) / transfer_id
        directory.mkdir(mode=0o700)
        os.link(archive, directory / transfer_files.CARRY_FILE)
        return self.transfers.carry(transfer_id, transfer, time.time())

    def states(self) -> list[str]:
        return [entry.state for entry in self.transfers.entries(time.time())]


def test_the_agent_revokes_the_device_items_of_a_burn_carry_once_fetched(alpha_beta_gamma, swarm, tmp_path) -> None:
    alpha, beta, gamma, project = alpha_beta_gamma
    in_agent = InProcessAgent(tmp_path / "agent", swarm.network, alpha.items)
    env = replace(alpha.env(cwd=project, network=swarm.network), keeper=in_agent)
    try:
        with publish.publish(PublishRequest(carry=True, burn=True), ScriptedUI.answering(), env) as publication:
            assert publication.hand_over(in_agent, time.time() + GUARD) is None

        fetch(beta, swarm.network)
        eventually(lambda: in_agent.states() == ["fetched"], "the agent saw it fetched")
    finally:
        in_agent.transfers.close()

    item_key = gammas_item(alpha, gamma)
    assert isinstance(alpha.records.newest(item_key), Revocation)
    assert {item.publisher for item in in_agent.revocations} == {key_of(alpha).public_key.raw, item_key.raw}
    with pytest.raises(NotFound):
        pickup.pickup(None, ScriptedUI.answering(), gamma.env(), assume_yes=False, confirm=False)


def test_the_agent_puts_a_carrys_device_items_again_as_signed(alpha_beta_gamma, swarm, tmp_path, monkeypatch) -> None:
    alpha, _, gamma, project = alpha_beta_gamma
    puts = PutsAgain(alpha.items, monkeypatch)
    item_key = gammas_item(alpha, gamma)
    in_agent = InProcessAgent(tmp_path / "agent", swarm.network, alpha.items, renew_every=0.0)
    env = replace(alpha.env(cwd=project, network=swarm.network), keeper=in_agent)
    try:
        with publish.publish(PublishRequest(carry=True), ScriptedUI.answering(), env) as publication:
            put = alpha.items.items[item_key.raw]
            assert publication.hand_over(in_agent, time.time() + GUARD) is None

        eventually(lambda: bool(puts.seen.get(item_key.raw)), "gamma's item was put again")
    finally:
        in_agent.transfers.close()

    assert set(puts.seen[item_key.raw]) == {put}


class HandedOver:
    """A keeper that takes note of the transfer it is handed, and does not offer it."""

    def __init__(self) -> None:
        self.transfers: list[Transfer] = []

    def keep(self, publisher: PublicKey, item: krpc.Item, expires_at: float) -> str | None:
        return None

    def carry(self, transfer: Transfer, archive: Path) -> str | None:
        self.transfers.append(transfer)
        return "noted only"


def test_the_agent_refuses_a_transfer_whose_device_items_do_not_verify(alpha_beta_gamma, swarm, tmp_path) -> None:
    alpha, _, gamma, project = alpha_beta_gamma
    keeper = HandedOver()
    env = replace(alpha.env(cwd=project, network=swarm.network), keeper=keeper)
    with publish.publish(PublishRequest(carry=True, burn=True), ScriptedUI.answering(), env) as publication:
        assert publication.hand_over(keeper, time.time() + GUARD) == "noted only"
    [transfer] = keeper.transfers
    [carried] = transfer.device_items
    handoff, revocation = carried.handoff, carried.revocation
    assert revocation is not None and transfer.revocation is not None
    signer = device_items.item_identity(key_of(alpha), key_of(gamma).public_key)
    record = alpha.records.resolve(signer.public_key).record
    later_handoff = seeding.carried_item(signer, record, handoff.seq + 1, burn=False).handoff
    unsigned = "the packet's signature does not verify under its public key"
    not_later = "a device item's revocation is not of its key at a later seq"
    refused = {
        CarriedItem(replace(handoff, signature=bytes(64)), revocation): unsigned,
        CarriedItem(handoff, replace(revocation, signature=bytes(64))): unsigned,
        CarriedItem(handoff, replace(transfer.revocation, seq=handoff.seq + 1)): not_later,
        CarriedItem(handoff, replace(revocation, seq=handoff.seq)): not_later,
        CarriedItem(handoff, later_handoff): "a device item's revocation is not a signed revocation",
        CarriedItem(handoff, None): "the transfer's device items are not revoked as its handoff is",
        CarriedItem(replace(handoff, publisher=transfer.handoff.publisher), revocation): (
            "the transfer's device items are not each under a key of its own"
        ),
    }
    in_agent = InProcessAgent(tmp_path / "agent", swarm.network, alpha.items)
    for bad, why in refused.items():
        assert in_agent.transfers.carry("ab" * 16, replace(transfer, device_items=(bad,)), time.time()) == why
    twice = in_agent.transfers.carry("ab" * 16, replace(transfer, device_items=(carried, carried)), time.time())
    assert twice == "the transfer's device items are not each under a key of its own"
    assert in_agent.states() == [] and not in_agent.carry_dir.exists()
