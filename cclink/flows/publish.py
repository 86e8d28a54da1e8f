"""Publishing a handoff: pick the session, seal the record, put it on the DHT; with --carry, seed until acknowledged.

The flow asks through a UI, knows the machine through an Environment (its
key store, its record store, the clock), and returns a `Publication`: the
published handoff, and for --carry the session being offered, which the
publication owns and deletes when it is closed. The CLI decides how results
look.
"""

from __future__ import annotations

import functools
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from cclink import text
from cclink.errors import (
    CclinkError,
    MalformedPayload,
    RecordTooLarge,
    SessionError,
    UnknownSession,
    UsageError,
)
from cclink.flows import keeping
from cclink.flows.environment import Environment
from cclink.flows.seeding import Publication, carried_item
from cclink.flows.ui import UI
from cclink.local import claude, threads
from cclink.wire import agecrypt, device_items, kdf, packet, payload
from cclink.wire.contacts import Contact
from cclink.wire.keys import Identity, PublicKey
from cclink.wire.payload import CarryInfo, Payload
from cclink.wire.record import Record, new_record

if TYPE_CHECKING:
    from cclink.flows.carry import Outgoing
    from cclink.net.dht_client import Stored

PIN_ENV = "CCLINK_PIN"
DEFAULT_TTL = 86400
MAX_TTL = 365 * 86400

# How far over one DHT item, in bytes of record JSON, a record sealed the quick way may be for the last
# resort (the smallest of many more encryptions) to bring it within: age's grease varies that little
# (docs/performance.md).
LAST_RESORT_REACH = 128


# Who can open a handoff: the publisher's own key (and its paired devices), a colleague's key (--share),
# or anyone with the PIN.
Mode = Literal["self", "share", "pin"]


# --- publish ----------------------------------------------------------------------


@dataclass(frozen=True)
class PublishRequest:
    session_id: str | None = None
    ttl: int = DEFAULT_TTL
    burn: bool = False
    pin: bool = False
    share: PublicKey | None = None
    carry: bool = False
    # Publish a session_id that is not in ~/.claude/projects here (another machine has it).
    allow_missing: bool = False


@dataclass(frozen=True)
class PublishOutcome:
    publisher: PublicKey
    session_id: str
    project: str
    record: Record
    published: Stored
    mode: Mode
    pickup_command: str
    notes: list[str] = field(default_factory=list)
    carry: CarryInfo | None = None  # with --carry: what the record tells the picker about the session data
    devices: tuple[str, ...] = ()  # the paired devices a self handoff is for as well, by name
    device_items: tuple[DeviceItem, ...] = ()  # those that had no room in the record: each has an item of its own
    shared_with: str | None = None  # the contact's name, when --share named the key of one

    @property
    def qr_command(self) -> str:
        """The pickup command with the publisher's key: a phone scanning the QR code holds no key to default to."""
        return f"cclink pickup {self.publisher.z32}"


def check_publish_request(request: PublishRequest) -> list[str]:
    """Refuse impossible flag combinations; return notes the user should read."""
    if request.pin and request.share:
        raise UsageError("--pin and --share exclude each other: a handoff is encrypted to one recipient")
    if request.burn and request.share and not request.carry:
        raise UsageError(
            "--burn cannot be combined with --share: only the key that signed a record can revoke it, "
            "and the recipient's pickup does not hold that key (with --carry it can: the record is revoked "
            "as soon as the recipient has the session)"
        )
    if not 1 <= request.ttl <= MAX_TTL:
        raise UsageError(f"--ttl must be between 1 and {MAX_TTL} seconds")
    if request.session_id is not None:
        try:
            payload.check_session_id(request.session_id)
        except MalformedPayload:
            raise UsageError(f"'{request.session_id}' is not a Claude Code session id") from None
    if request.burn and request.pin and not request.carry:
        return [
            "Only a pickup made with your own key can revoke this handoff; a pickup with the PIN "
            "from another key leaves it in place until it expires."
        ]
    return []


def publish(request: PublishRequest, ui: UI, env: Environment) -> Publication:
    """Publish a handoff; for --carry, also pack the session and start offering it.

    Use the result as a context manager: closing it stops offering a
    carried session and deletes its files (the record stays published).
    """
    notes = check_publish_request(request)
    now = env.clock()
    # The session first: no passphrase is asked for only to learn that there is nothing to publish.
    chosen = _session_to_publish(request, ui, env, now)
    identity = env.keys.load(ui)
    body = Payload(session_id=chosen.session_id, hostname=env.hostname, project=chosen.project)
    audience = _audience(request, ui, identity, env)
    # The carried session is encrypted to every device, those with an item of their own too.
    outgoing = _start_carry(chosen.file, audience.recipients, ui, env) if request.carry else None
    try:
        seal = _Sealer(request, audience, now)
        record, sealed, fitted = _main_record(identity, body, seal, audience, outgoing, notes)
        items = _device_items(identity, body, seal, audience.devices[fitted:], outgoing, notes)
        with ui.progress("Publishing to the DHT"):
            published, stored = _put_all(env, identity, record, items)
    except BaseException:
        if outgoing is not None:
            outgoing.close()
        raise
    notes.extend(_device_notes(request, audience.devices[:fitted]))
    notes.extend(_not_stored(items, stored))
    stored_items = [(item, put) for item, put in zip(items, stored, strict=True) if not isinstance(put, CclinkError)]
    to_keep = [] if request.carry else [(identity, record, published)]  # a carried handoff: kept by its seeding
    # The agent keeps the device items, carried or not; a carried one's seeding renews them too, and revokes them
    # with the handoff for burn (by revocations signed now: the agent holds no key).
    carried = tuple(
        carried_item(item.signer, item.record, put.seq, burn=request.burn)
        for item, put in (stored_items if request.carry else [])
    )
    notes.extend(_kept_note(env, to_keep + [(item.signer, item.record, put) for item, put in stored_items]))
    command = "cclink pickup" if audience.mode == "self" else f"cclink pickup {identity.public_key.z32}"
    outcome = PublishOutcome(
        identity.public_key,
        chosen.session_id,
        chosen.project,
        record,
        published,
        audience.mode,
        command,
        notes,
        sealed.carry,
        devices=tuple(device.name for device in audience.devices),
        shared_with=audience.shared_with,
        device_items=tuple(
            DeviceItem(item.device.name, None if isinstance(put, CclinkError) else put)
            for item, put in zip(items, stored, strict=True)
        ),
    )
    return Publication(outcome, outgoing, identity, env.records, carried)


@dataclass(frozen=True)
class _Audience:
    """Whom a handoff is encrypted to: age recipients, the publisher's own first for a self handoff."""

    recipients: list[agecrypt.Recipient]
    mode: Mode
    pin_salt: bytes | None = None
    devices: tuple[Contact, ...] = ()  # a self handoff's paired devices, after the publisher's own key
    shared_with: str | None = None  # --share's contact name


def _audience(request: PublishRequest, ui: UI, identity: Identity, env: Environment) -> _Audience:
    if request.pin:
        pin = ui.secret(
            _pin_prompt(request.carry), PIN_ENV, confirm=True, check=lambda pin: kdf.check_pin(pin, carry=request.carry)
        )
        pin_salt = secrets.token_bytes(kdf.SALT_SIZE)
        return _Audience([kdf.pin_recipient(pin, pin_salt)], "pin", pin_salt)
    if request.share:
        contact = env.contacts.find(request.share.z32)
        return _Audience([request.share.age_recipient()], "share", shared_with=contact.name if contact else None)
    # A device holding this very key (copied with `init --import`) needs no stanza of its own.
    devices = tuple(device for device in env.contacts.devices() if device.key != identity.public_key)
    recipients = [identity.public_key.age_recipient(), *(device.key.age_recipient() for device in devices)]
    return _Audience(recipients, "self", devices=devices)


def _device_notes(request: PublishRequest, in_record: tuple[Contact, ...]) -> list[str]:
    """A device that opens the record itself cannot revoke it; one with an item of its own revokes its item."""
    if request.burn and in_record and not request.carry:
        return [
            "Only a pickup with this machine's key can revoke a burn-after-read handoff; "
            f"picked up on {', '.join(device.name for device in in_record)}, it stays until it expires "
            "(or `cclink revoke` here)."
        ]
    return []


def _pin_prompt(carry: bool) -> str:
    length = kdf.MIN_CARRY_PIN_LENGTH if carry else kdf.MIN_SECRET_LENGTH
    return f"PIN for this handoff (at least {length} characters): "


def _start_carry(session_file: Path | None, recipients: list[agecrypt.Recipient], ui: UI, env: Environment) -> Outgoing:
    from cclink.flows import carry  # libtorrent's peer side and tarfile: only for --carry

    assert session_file is not None  # _session_to_publish insists for --carry
    with ui.progress("Packing and encrypting the session"):
        return carry.Outgoing(session_file, recipients, env.network)


@dataclass(frozen=True)
class _Sealer:
    """Seals a payload into a signed record as the request says, for whichever key signs it."""

    request: PublishRequest
    audience: _Audience
    now: float

    def __call__(
        self, signer: Identity, body: Payload, recipients: list[agecrypt.Recipient], tries: int = agecrypt.COMPACT_TRIES
    ) -> Record:
        return new_record(
            signer,
            payload.seal(body, recipients, tries),
            ttl=self.request.ttl,
            now=self.now,
            burn=self.request.burn,
            pin_salt=self.audience.pin_salt,
            recipient=self.request.share,
        )


def _main_record(
    identity: Identity, body: Payload, seal: _Sealer, audience: _Audience, outgoing: Outgoing | None, notes: list[str]
) -> tuple[Record, Payload, int]:
    """The record under the publisher's key, what it holds, and how many paired devices it is encrypted to.

    As many devices as fit, in the order added: a DHT item holds 1000 bytes,
    and each device's age stanza takes a good part of them
    (docs/performance.md). Those left out get an item of their own
    (_device_items); one's own key is never left out, so the Rust cclink
    still reads the record.
    """
    for count in range(len(audience.devices), -1, -1):
        fitted = _fitting_record(identity, body, seal, audience.recipients[: count + 1], outgoing, shrink=count > 0)
        if fitted is None:
            continue
        record, sealed = fitted
        if sealed.hostname != body.hostname:
            room = "the carried session's details" if outgoing is not None else "paired devices"
            notes.append(f"The hostname was left out of the handoff to make room for {room}.")
        return record, sealed, count
    raise RecordTooLarge("the handoff does not fit in one DHT item (1000 bytes); the project path is too long")


def _fitting_record(
    signer: Identity,
    body: Payload,
    seal: _Sealer,
    recipients: list[agecrypt.Recipient],
    outgoing: Outgoing | None,
    *,
    shrink: bool,
) -> tuple[Record, Payload] | None:
    """The sealed record and what it holds, leaving out what it can spare to fit in one DHT item; None if nothing does.

    A DHT item holds 1000 bytes; the carry details take about a hundred of
    them. The address hints go first (the DHT finds the publisher anyway),
    then, with --carry or shrink, the hostname (only shown in the pickup
    question).
    """
    attempts = [body]
    if outgoing is not None:
        attempts = [body.with_carry(outgoing.info()), body.with_carry(outgoing.info(with_hints=False))]
    if outgoing is not None or shrink:
        attempts.append(Payload(body.session_id, "", body.project, attempts[-1].extra))
    record = None
    for attempt in attempts:
        record = seal(signer, attempt, recipients)
        if _fits(signer.public_key, record):
            return record, attempt
    assert record is not None
    if len(record.to_json()) - _room(signer.public_key) > LAST_RESORT_REACH:
        return None  # too far over for the last resort to help: its time is spared (the caller tries fewer devices)
    record = seal(signer, attempts[-1], recipients, agecrypt.LAST_RESORT_TRIES)
    return (record, attempts[-1]) if _fits(signer.public_key, record) else None


@functools.cache
def _room(publisher: PublicKey) -> int:
    """The longest record JSON that one DHT item holds under publisher's name."""
    low, high = 0, packet.MAX_MESSAGE_SIZE
    while low < high:
        middle = (low + high + 1) // 2
        try:
            packet.record_message(publisher, b"a" * middle)
            low = middle
        except RecordTooLarge:
            high = middle - 1
    return low


def _fits(publisher: PublicKey, record: Record) -> bool:
    try:
        packet.record_message(publisher, record.to_json())
    except RecordTooLarge:
        return False
    return True


# --- device items: a record of its own for each device the main one has no room for ---------------


@dataclass(frozen=True)
class DeviceItem:
    """The handoff left for one paired device under its pairwise key: its name, and how many nodes stored it."""

    device: str
    stored: Stored | None  # None: it could not be stored (the outcome's notes say why)


@dataclass(frozen=True)
class _Item:
    device: Contact
    signer: Identity  # the pairwise identity (wire/device_items.py)
    record: Record


def _device_items(
    identity: Identity,
    body: Payload,
    seal: _Sealer,
    devices: tuple[Contact, ...],
    outgoing: Outgoing | None,
    notes: list[str],
) -> list[_Item]:
    """A record for each device, encrypted to it alone and signed with the key only it and this machine derive."""
    items = []
    for device in devices:
        signer = device_items.item_identity(identity, device.key)
        fitted = _fitting_record(signer, body, seal, [device.key.age_recipient()], outgoing, shrink=False)
        if fitted is None:  # as large as the main record with no device, which fitted: only by age's chance
            notes.append(f"The handoff for {device.name} did not fit in one DHT item; it was not published for it.")
            continue
        items.append(_Item(device, signer, fitted[0]))
    return items


def _put_all(
    env: Environment, identity: Identity, record: Record, items: list[_Item]
) -> tuple[Stored, list[Stored | CclinkError]]:
    """Put the main record and every device item at once; the main put's failure is the publish's."""
    puts = [functools.partial(env.records.publish, identity, record)]
    puts.extend(functools.partial(env.records.publish, item.signer, item.record) for item in items)
    [published, *stored] = threads.at_once(puts, CclinkError)
    if isinstance(published, CclinkError):
        raise published
    return published, stored


def _not_stored(items: list[_Item], stored: list[Stored | CclinkError]) -> list[str]:
    notes = []
    for item, put in zip(items, stored, strict=True):
        if isinstance(put, CclinkError):
            notes.append(f"The handoff for {item.device.name} could not be published ({put.message}).")
        elif put.nodes == 0 and put.relays == 0:
            notes.append(f"No DHT node stored the handoff for {item.device.name}; publish again to retry.")
    return notes


def _kept_note(env: Environment, published: list[tuple[Identity, Record, Stored]]) -> list[str]:
    """Hand each item to the agent to keep alive; its refusal, once, as a note."""
    refusals = {keeping.hand_over_handoff(env.keeper, signer, record, put.seq) for signer, record, put in published}
    return sorted(refusal for refusal in refusals if refusal is not None)


@dataclass(frozen=True)
class _Chosen:
    session_id: str
    project: str
    file: Path | None  # None for a session that is not on this machine (--missing-ok)


def _session_to_publish(request: PublishRequest, ui: UI, env: Environment, now: float) -> _Chosen:
    """The session to hand off; a named session must be here unless allow_missing, and for --carry."""
    cwd = env.cwd
    if request.session_id is not None:
        return _named_session(request, str(cwd))
    sessions = claude.recent_sessions(cwd, now)
    if not sessions:
        raise SessionError(
            f"no Claude Code session from the last 24 hours was found for {cwd} or below; "
            "run cclink in the project's directory, or pass the session id"
        )
    chosen = sessions[0]
    if len(sessions) > 1:
        labels = [_session_label(s, cwd, now) for s in sessions]
        chosen = sessions[ui.choose("Several sessions match; which one?", labels, when_not_interactive=0)]
    return _Chosen(chosen.session_id, chosen.project or str(cwd), chosen.file)


def _named_session(request: PublishRequest, cwd: str) -> _Chosen:
    session_id = request.session_id
    assert session_id is not None
    found = claude.find_session(session_id)
    if request.carry and found is None:
        raise SessionError(
            f"session {session_id} is not in ~/.claude/projects on this machine, so there is nothing to carry"
        )
    if found is None and not request.allow_missing:
        raise UnknownSession(f"there is no session {session_id} in ~/.claude/projects on this machine", session_id)
    return _Chosen(session_id, cwd, found.file if found else None)


def _session_label(session: claude.Session, cwd: Path, now: float) -> str:
    """`Fix the flaky upload test  (5m ago, in api/, 3f2a9c3e)`: what it was about, when, where, whose id."""
    age = text.format_duration(max(0.0, now - session.modified))
    title = claude.read_session_title(session.file) or "(no messages yet)"
    where = ""
    if session.project and Path(session.project) != cwd:
        below = os.path.relpath(session.project, cwd)
        where = f"in {below}/, " if not below.startswith("..") else f"in {session.project}, "
    return f"{title}  ({age} ago, {where}{session.session_id[:8]})"
