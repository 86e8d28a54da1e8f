"""Publishing a handoff: pick the session, seal the record, put it on the DHT; with --carry, seed until acknowledged.

The flow asks through a UI, knows the machine through an Environment (its
key store, its record store, the clock), and returns a `Publication`: the
published handoff, and for --carry the session being offered, which the
publication owns and deletes when it is closed. The CLI decides how results
look.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

from cclink import text
from cclink.errors import (
    MalformedPayload,
    RecordTooLarge,
    SessionError,
    UnknownSession,
    UsageError,
)
from cclink.flows import keeping
from cclink.flows.environment import Environment
from cclink.flows.seeding import Publication
from cclink.flows.ui import UI
from cclink.local import claude
from cclink.wire import agecrypt, kdf, packet, payload
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
    devices: tuple[str, ...] = ()  # the paired devices a self handoff is encrypted to as well, by name
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
    notes.extend(_device_notes(request, audience))
    outgoing = _start_carry(chosen.file, audience.recipients, ui, env) if request.carry else None
    try:

        def seal(body: Payload, recipients: list[agecrypt.Recipient], tries: int = agecrypt.COMPACT_TRIES) -> Record:
            return new_record(
                identity,
                payload.seal(body, recipients, tries),
                ttl=request.ttl,
                now=now,
                burn=request.burn,
                pin_salt=audience.pin_salt,
                recipient=request.share,
            )

        record, sealed = _fitting_record(identity.public_key, body, seal, audience, outgoing, notes)
        with ui.progress("Publishing to the DHT"):
            published = env.records.publish(identity, record)
    except BaseException:
        if outgoing is not None:
            outgoing.close()
        raise
    if not request.carry:  # a carried handoff is kept alive by its own seeding
        kept = keeping.hand_over_handoff(env.keeper, identity, record, published.seq)
        notes.extend([kept] if kept is not None else [])
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
    )
    return Publication(outcome, outgoing, identity, env.records)


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


def _device_notes(request: PublishRequest, audience: _Audience) -> list[str]:
    if request.burn and audience.devices and not request.carry:
        return [
            "Only a pickup with this machine's key can revoke a burn-after-read handoff; "
            "picked up on a paired device, it stays until it expires (or `cclink revoke` here)."
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


class Seal(Protocol):
    def __call__(self, body: Payload, recipients: list[agecrypt.Recipient], tries: int = ...) -> Record: ...


def _fitting_record(
    publisher: PublicKey, body: Payload, seal: Seal, audience: _Audience, outgoing: Outgoing | None, notes: list[str]
) -> tuple[Record, Payload]:
    """The sealed record and what it holds, leaving out what it can spare to fit in one DHT item.

    A DHT item holds 1000 bytes; the carry details take about a hundred of
    them, and each paired device as many again (docs/performance.md). The
    address hints go first (the DHT finds the publisher anyway), then the
    hostname (only shown in the pickup question). A device is never left
    out: a handoff it could not open would look like one it was never sent.
    """
    attempts = [body]
    if outgoing is not None:
        attempts = [body.with_carry(outgoing.info()), body.with_carry(outgoing.info(with_hints=False))]
    if outgoing is not None or audience.devices:
        attempts.append(Payload(body.session_id, "", body.project, attempts[-1].extra))
    sealings = [(attempt, agecrypt.COMPACT_TRIES) for attempt in attempts]
    sealings.append((attempts[-1], agecrypt.LAST_RESORT_TRIES))
    for attempt, tries in sealings:
        record = seal(attempt, audience.recipients, tries)
        if not _fits(publisher, record):
            continue
        if attempt.hostname != body.hostname:
            room = "the carried session's details" if outgoing is not None else "every paired device"
            notes.append(f"The hostname was left out of the handoff to make room for {room}.")
        return record, attempt
    raise RecordTooLarge(_too_large(publisher, attempts[-1], seal, audience))


def _fits(publisher: PublicKey, record: Record) -> bool:
    try:
        packet.record_message(publisher, record.to_json())
    except RecordTooLarge:
        return False
    return True


def _too_large(publisher: PublicKey, smallest: Payload, seal: Seal, audience: _Audience) -> str:
    """Why the handoff does not fit: too many devices (and how many would), or the project path."""
    devices = audience.devices
    fitting = next(
        (
            count
            for count in range(len(devices) - 1, -1, -1)
            if _fits(publisher, seal(smallest, audience.recipients[: count + 1], agecrypt.LAST_RESORT_TRIES))
        ),
        None,
    )
    if not devices or fitting is None:
        return "the handoff does not fit in one DHT item (1000 bytes); the project path is too long"
    names = ", ".join(device.name for device in devices)
    room = f"at most {fitting} of them fit" if fitting else "it fits only without them"
    return (
        f"a handoff encrypted to your key and {_devices(len(devices))} ({names}) does not fit in one DHT item "
        f"(1000 bytes): {room}; remove the devices you no longer use with `cclink devices remove NAME`, "
        "or hand off to one of them with `--share NAME`"
    )


def _devices(count: int) -> str:
    return f"{count} paired device{'' if count == 1 else 's'}"


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
