"""What publish, pickup, list and revoke do: the handoff flows between the CLI and the formats.

Flows ask the person at the terminal through `console`, get the user's key
from `keystore`, and reach the DHT through a `RecordStore`. They return plain
results; the CLI decides how those look.
"""

from __future__ import annotations

import secrets
import socket
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from cclink import text
from cclink.cli import console
from cclink.errors import (
    Aborted,
    CannotDecrypt,
    Expired,
    KeyFileError,
    MalformedPayload,
    NetworkError,
    NotFound,
    RecordTooLarge,
    Rollback,
    SessionError,
    TransferError,
    UnknownSession,
    UsageError,
    WireError,
    WrongPin,
)
from cclink.flows.keystore import has_identity, load_identity
from cclink.local import claude
from cclink.wire import agecrypt, kdf, packet, payload
from cclink.wire.keys import Identity, PublicKey
from cclink.wire.payload import Payload
from cclink.wire.record import Record, new_record

if TYPE_CHECKING:
    from cclink.flows.carry import Outgoing
    from cclink.net import krpc
    from cclink.net.bittorrent import SeedStatus
    from cclink.net.dht_client import Stored
    from cclink.net.record_store import RecordStore

PIN_ENV = "CCLINK_PIN"
DEFAULT_TTL = 86400
MAX_TTL = 365 * 86400
# DHT nodes drop items after about two hours; a seeding publisher renews well before.
RENEW_EVERY = 3600.0
RENEW_AGAIN_AFTER_FAILURE = 300.0
DEFAULT_FETCH_TIMEOUT = 60.0


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
    mode: str  # "self", "share" or "pin"
    pickup_command: str
    notes: list[str] = field(default_factory=list)
    # With --carry: the session being seeded, and the key that renews or revokes the record meanwhile.
    outgoing: Outgoing | None = field(default=None, repr=False)
    identity: Identity | None = field(default=None, repr=False)


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


def publish(request: PublishRequest, rendezvous: RecordStore, now: float) -> PublishOutcome:
    notes = check_publish_request(request)
    identity = load_identity(console)
    session_id, project, session_file = _session_to_publish(
        request.session_id, now, need_file=request.carry, allow_missing=request.allow_missing
    )
    body = Payload(session_id=session_id, hostname=socket.gethostname(), project=project)
    pin_salt = None
    if request.pin:
        pin = console.secret(_pin_prompt(request.carry), PIN_ENV, confirm=True)
        kdf.check_pin(pin, carry=request.carry)
        pin_salt = secrets.token_bytes(kdf.SALT_SIZE)
        recipient = kdf.pin_recipient(pin, pin_salt)
        mode = "pin"
    elif request.share:
        recipient, mode = request.share.age_recipient(), "share"
    else:
        recipient, mode = identity.public_key.age_recipient(), "self"
    outgoing = _start_carry(session_file, recipient, rendezvous) if request.carry else None
    try:

        def seal(body: Payload) -> Record:
            return new_record(
                identity,
                payload.seal(body, recipient),
                ttl=request.ttl,
                now=now,
                burn=request.burn,
                pin_salt=pin_salt,
                recipient=request.share,
            )

        record = _fitting_record(identity.public_key, body, seal, outgoing, notes)
        with console.spinner("Publishing to the DHT"):
            published = rendezvous.publish(identity, record)
    except BaseException:
        if outgoing is not None:
            outgoing.close()
        raise
    command = "cclink pickup" if mode == "self" else f"cclink pickup {identity.public_key.z32}"
    return PublishOutcome(
        identity.public_key,
        session_id,
        project,
        record,
        published,
        mode,
        command,
        notes,
        outgoing,
        identity if outgoing is not None else None,
    )


def _pin_prompt(carry: bool) -> str:
    length = kdf.MIN_CARRY_PIN_LENGTH if carry else kdf.MIN_SECRET_LENGTH
    return f"PIN for this handoff (at least {length} characters): "


def _start_carry(session_file: Path | None, recipient: agecrypt.Recipient, rendezvous: RecordStore) -> Outgoing:
    from cclink.flows import carry  # libtorrent's peer side and tarfile: only for --carry

    assert session_file is not None  # _session_to_publish insists for --carry
    with console.spinner("Packing and encrypting the session"):
        return carry.Outgoing(session_file, recipient, rendezvous.bootstrap)


def _fitting_record(
    publisher: PublicKey, body: Payload, seal: Callable[[Payload], Record], outgoing: Outgoing | None, notes: list[str]
) -> Record:
    """The sealed record; for --carry, leaving out what it can spare to fit in one DHT item.

    A DHT item holds 1000 bytes, and the carry details take about a hundred
    of them: the address hints go first (the DHT finds the publisher
    anyway), then the hostname (only shown in the pickup question).
    """
    attempts = [body]
    if outgoing is not None:
        attempts = [body.with_carry(outgoing.info()), body.with_carry(outgoing.info(with_hints=False))]
        attempts.append(Payload(body.session_id, "", body.project, attempts[-1].extra))
    for attempt in attempts:
        record = seal(attempt)
        try:
            packet.record_message(publisher, record.to_json())
        except RecordTooLarge:
            continue
        if attempt.hostname != body.hostname:
            notes.append("The hostname was left out of the handoff to make room for the carried session's details.")
        return record
    raise RecordTooLarge("the handoff does not fit in one DHT item (1000 bytes); the project path is too long")


def _session_to_publish(
    session_id: str | None, now: float, *, need_file: bool, allow_missing: bool
) -> tuple[str, str, Path | None]:
    """The (session id, project path, session file) to hand off; a named session must be here unless allow_missing."""
    cwd = Path.cwd()
    if session_id is not None:
        found = claude.find_session(session_id)
        if need_file and found is None:
            raise SessionError(
                f"session {session_id} is not in ~/.claude/projects on this machine, so there is nothing to carry"
            )
        if found is None and not allow_missing:
            raise UnknownSession(f"there is no session {session_id} in ~/.claude/projects on this machine", session_id)
        return session_id, str(cwd), found.file if found else None
    sessions = claude.recent_sessions(cwd, now)
    if not sessions:
        raise SessionError(
            f"no Claude Code session from the last 24 hours was found for {cwd} or below; "
            "run cclink in the project's directory, or pass the session id"
        )
    chosen = sessions[0]
    if len(sessions) > 1 and console.is_interactive():
        labels = [_session_label(s, now) for s in sessions]
        chosen = sessions[console.choose("Several sessions match; which one?", labels)]
    return chosen.session_id, chosen.project or str(cwd), chosen.file


def _session_label(session: claude.Session, now: float) -> str:
    age = text.format_duration(max(0.0, now - session.modified))
    return f"{session.session_id}  {session.project or '?'}  ({age} ago)"


# --- seeding a carried session -------------------------------------------------------


@dataclass(frozen=True)
class CarryResult:
    uploaded: int
    revoked: bool


def serve_carry(
    outcome: PublishOutcome,
    rendezvous: RecordStore,
    timeout: float,
    on_status: Callable[[SeedStatus], None],
    renew_every: float = RENEW_EVERY,
) -> CarryResult:
    """Seed until the recipient acknowledges that it has the whole session.

    Renews the record meanwhile, and revokes a burn record then. Only the
    recipient's acknowledgement ends it (see payload.CarryInfo): a peer that
    merely says it is finished, or downloads the ciphertext, does not.
    TransferError when nobody fetched it within timeout seconds;
    NotFound when the record was revoked or replaced elsewhere (renewing
    would undo that); Ctrl-C (KeyboardInterrupt) stops seeding and leaves
    the record published.
    """
    outgoing, identity = outcome.outgoing, outcome.identity
    assert outgoing is not None and identity is not None
    deadline = time.monotonic() + timeout
    renew_at = time.monotonic() + renew_every
    last_seq = outcome.published.seq
    while True:
        status = outgoing.poll(0.5)
        on_status(status)
        if outgoing.acknowledged:
            break
        if time.monotonic() >= deadline:
            raise TransferError(
                f"nobody fetched session {outcome.session_id} within {text.format_duration(timeout)}; "
                "its data is no longer offered (the record stays until it expires)"
            )
        if time.monotonic() >= renew_at:
            renewed = _renewed(rendezvous, identity, outcome.record, last_seq)
            if renewed is not None:
                last_seq = renewed.seq
            renew_at = time.monotonic() + (renew_every if renewed else min(renew_every, RENEW_AGAIN_AFTER_FAILURE))
    revoked = False
    if outcome.record.burn:
        with console.spinner("Revoking the burn-after-read record"):
            rendezvous.revoke(identity)
        revoked = True
    return CarryResult(status.uploaded, revoked)


def _renewed(rendezvous: RecordStore, identity: Identity, record: Record, last_seq: int) -> Stored | None:
    """Put the same record again so DHT nodes keep it; None when the DHT failed (try again sooner).

    NotFound when what the DHT holds is newer than the last put (a revocation
    or another handoff, from another machine or a burn pickup): putting the
    record again would undo that.
    """
    message = packet.record_message(identity.public_key, record.to_json())
    try:
        if _superseded(_newest_item(rendezvous, identity.public_key), last_seq, message):
            raise NotFound("the handoff was revoked or replaced elsewhere; stopped offering the session")
        return rendezvous.put_message(identity, message)
    except NetworkError:
        return None


def _newest_item(rendezvous: RecordStore, publisher: PublicKey) -> krpc.Item | None:
    """The newest item under publisher.

    None when the DHT holds only items older than ours (lost ours, or a replay).
    """
    try:
        return rendezvous.find_item(publisher)
    except Rollback:
        return None


def _superseded(newest: krpc.Item | None, last_seq: int, message: bytes) -> bool:
    """Whether the newest verified item under our key is someone else's word.

    That is: above our last put, or different at its seq.
    """
    if newest is None or newest.seq < last_seq:
        return False  # the nodes lost ours (or kept an older one): renewing puts it back
    return newest.seq > last_seq or newest.value != message


# --- pickup -----------------------------------------------------------------------


@dataclass(frozen=True)
class PickupOutcome:
    publisher: PublicKey
    record: Record
    payload: Payload
    session: claude.Session | None
    revoked: bool
    notes: list[str] = field(default_factory=list)
    fetch: bool = False  # the session data is to be fetched from the publisher (--carry)
    decryptor: agecrypt.Identity | None = field(default=None, repr=False)

    @property
    def project_dir(self) -> Path | None:
        """Where to resume: the local session file's own directory, else the publisher's path if it exists here.

        `claude --resume` finds a session through the directory it runs in, so
        the path recorded in the local copy of the session comes first.
        """
        for candidate in (self.session.project if self.session else None, self.payload.project):
            if candidate and Path(candidate).is_dir():
                return Path(candidate)
        return None


def pickup(
    publisher: PublicKey | None,
    rendezvous: RecordStore,
    now: float,
    *,
    assume_yes: bool,
    confirm: bool,
    force_fetch: bool = False,
    project_dir: Path | None = None,
) -> PickupOutcome:
    """Resolve, verify, check expiry, decrypt, and for one's own burn record, revoke.

    With confirm (the session is to be resumed), everything that can fail
    here is checked before asking, and so before a burn record is revoked.
    """
    identity: Identity | None
    if publisher is None:
        identity = load_identity(console)
        publisher = identity.public_key
    else:
        identity = load_identity(console) if has_identity() else None
    with console.spinner(f"Looking up {publisher.fingerprint} on the DHT") as spin:
        resolved = rendezvous.resolve(
            publisher, on_retry=lambda d: spin.update(f"DHT unreachable; retrying in {d:.0f}s")
        )
    record = resolved.record
    _refuse_expired(record, now)
    body, decryptor = _decrypt(record, publisher, identity, now)
    session = claude.find_session(body.session_id)
    if force_fetch and body.carry is None:
        raise UsageError("this handoff does not carry the session data, so there is nothing to fetch (--fetch)")
    fetch = body.carry is not None and (force_fetch or session is None)
    if confirm:
        _check_can_resume(body, session, fetch, project_dir)
        if not console.confirm(_resume_question(body, record, now), assume_yes=assume_yes, when_not_interactive=True):
            raise Aborted("pickup cancelled; the handoff is still published")
    notes: list[str] = []
    revoked = False
    if record.burn and fetch:
        notes.append("This is a burn-after-read handoff: its publisher revokes it once the session is fetched.")
    elif record.burn:
        if identity is not None and identity.public_key == publisher:
            with console.spinner("Revoking the burn-after-read record"):
                rendezvous.revoke(identity)
            revoked = True
        else:
            notes.append(
                "This is a burn-after-read handoff, but only its publisher's key can revoke it; "
                "it stays until it expires."
            )
    return PickupOutcome(publisher, record, body, session, revoked, notes, fetch, decryptor)


def _check_can_resume(body: Payload, session: claude.Session | None, fetch: bool, project_dir: Path | None) -> None:
    """Raise what resume() would raise about this machine, before anything is asked, fetched or revoked."""
    if project_dir is not None:
        _checked_project_dir(project_dir)
    if session is None and not fetch:
        raise _not_on_this_machine(body.session_id)
    claude.check_can_resume(body.session_id, None)


def _not_on_this_machine(session_id: str) -> SessionError:
    return SessionError(
        f"session {session_id} is not on this machine: Claude Code keeps sessions in "
        f"~/.claude/projects, so copy or sync that directory here, then run `claude --resume {session_id}` "
        "(or ask the publisher to use `cclink --carry`, which sends the session itself)"
    )


def _refuse_expired(record: Record, now: float) -> None:
    if record.is_expired(now):
        ago = text.format_duration(now - record.expires_at)
        raise Expired(f"the handoff from {record.publisher().fingerprint} expired {ago} ago")


def _decrypt(
    record: Record, publisher: PublicKey, identity: Identity | None, now: float
) -> tuple[Payload, agecrypt.Identity]:
    """The payload, and the age identity that opened it (it opens a carried session too)."""
    age = text.format_duration(max(0.0, now - record.created_at))
    origin = f"the handoff from {publisher.display} ({age} old)"
    if record.pin_salt is not None:
        pin = console.secret("PIN: ", PIN_ENV)
        pin_identity = kdf.pin_identity(pin, record.pin_salt)
        try:
            return payload.open_payload(record.blob, pin_identity), pin_identity
        except CannotDecrypt:
            raise WrongPin(f"incorrect PIN for {origin}") from None
    if identity is None:
        raise KeyFileError(f"{origin} is encrypted to a key, and there is no key here; run `cclink init` first")
    me = identity.public_key
    intended = record.recipient_key() or publisher
    if intended != me:
        if record.recipient is not None:
            raise CannotDecrypt(f"{origin} was shared with {intended.display}, not with your key {me.display}")
        raise CannotDecrypt(
            f"{origin} is encrypted to its publisher's own key; use that key here, "
            f"or ask the publisher to run `cclink --share {me.z32}` or `cclink --pin`"
        )
    try:
        return payload.open_payload(record.blob, identity.age_identity()), identity.age_identity()
    except CannotDecrypt:
        raise CannotDecrypt(f"{origin} names your key but does not decrypt with it; it may be damaged") from None


def _resume_question(body: Payload, record: Record, now: float) -> str:
    # The publisher chose these words: shown escaped, they cannot steer the terminal.
    where = text.printable(body.project) if body.project else "an unknown directory"
    host = f" on {text.printable(body.hostname)}" if body.hostname else ""
    age = text.format_duration(max(0.0, now - record.created_at))
    return f"Resume session {body.session_id} ({where}{host}, published {age} ago)?"


def resume(
    outcome: PickupOutcome,
    rendezvous: RecordStore,
    *,
    project_dir: Path | None = None,
    assume_yes: bool = False,
    fetch_timeout: float = DEFAULT_FETCH_TIMEOUT,
    lan: bool = False,
) -> NoReturn:
    """Start `claude --resume` for a picked-up session (fetching it first for --carry), or explain why it cannot."""
    session, where = outcome.session, outcome.project_dir
    if outcome.fetch:
        session, where = fetch_session(
            outcome, rendezvous, project_dir=project_dir, assume_yes=assume_yes, fetch_timeout=fetch_timeout, lan=lan
        )
    elif project_dir is not None:
        where = _checked_project_dir(project_dir)
    if session is None:
        raise _not_on_this_machine(outcome.payload.session_id)
    console.say(f"Resuming session {outcome.payload.session_id}...")
    claude.resume(outcome.payload.session_id, where)


def fetch_session(
    outcome: PickupOutcome,
    rendezvous: RecordStore,
    *,
    project_dir: Path | None,
    assume_yes: bool,
    fetch_timeout: float,
    lan: bool = False,
) -> tuple[claude.Session, Path]:
    """Download, check, decrypt and place a carried session; return it and the directory to resume in."""
    from cclink.flows import carry  # libtorrent's peer side and tarfile: only for --carry

    info, body = outcome.payload.carry, outcome.payload
    assert info is not None and outcome.decryptor is not None
    local = _local_project(body.project, project_dir, assume_yes)

    _agree_to_replace(carry.local_copy(body.session_id, local), body.session_id, assume_yes)
    try:
        with ExitStack() as transfer:
            with console.spinner(f"Fetching the session ({text.format_bytes(info.size)})") as spin:
                path = transfer.enter_context(
                    carry.fetched(
                        info,
                        rendezvous.bootstrap,
                        stall_timeout=fetch_timeout,
                        lan=lan,
                        on_progress=lambda p: spin.update(
                            text.transfer_status("Fetching the session", p.done, p.total, p.rate)
                        ),
                    )
                )
            carry.check_integrity(path, info)
            # The publisher stops seeding (and revokes a burn record) once it sees the
            # acknowledgement, which needs the decrypted archive; it goes out while the session is unpacked.
            acknowledging: list[carry.Acknowledging] = []
            placed = carry.place(
                path,
                outcome.decryptor,
                body.session_id,
                publisher_project=body.project,
                local_project=local,
                on_decrypted=lambda archive_sha256: acknowledging.append(
                    carry.Acknowledging(info, archive_sha256, rendezvous.bootstrap)
                ),
            )
    except (WireError, CannotDecrypt):
        # The signed bytes themselves are bad: fetching them again would end the same way.
        carry.forget_download(info)
        raise
    carry.forget_download(info)
    if acknowledging and not acknowledging[0].wait():
        console.say(
            "Note: the publisher could not be told that the session arrived; "
            "it offers it until its time runs out or it is stopped."
        )
    for backup in placed.backups:
        console.say(f"Note: the previous local copy was kept as {backup}")
    console.say(f"Placed the session at {placed.session_file}")
    return claude.Session(body.session_id, placed.session_file, str(local), time.time()), local


def _agree_to_replace(existing: Path | None, session_id: str, assume_yes: bool) -> None:
    """Ask before fetching over a local copy: asking after the download would waste it, and revoke a burn record."""
    if existing is None:
        return
    question = (
        f"A copy of session {session_id} is already at {existing}. "
        "Replace it with the carried one where they differ (the old one is kept as a backup)?"
    )
    if not console.confirm(question, assume_yes=assume_yes, when_not_interactive=False):
        raise Aborted(
            f"kept the local copy of session {session_id} at {existing} and downloaded nothing "
            "(-y replaces it, keeping a backup)"
        )


def _local_project(publisher_project: str, project_dir: Path | None, assume_yes: bool) -> Path:
    """Where the session belongs here.

    --project-dir, else the publisher's path if it exists, else (asked) the current directory.
    """
    if project_dir is not None:
        return _checked_project_dir(project_dir)
    if publisher_project and Path(publisher_project).is_dir():
        return Path(publisher_project)
    cwd = Path.cwd()
    missing = (
        f"The publisher's directory {text.printable(publisher_project)}"
        if publisher_project
        else "The publisher's directory"
    )
    if not console.confirm(
        f"{missing} does not exist here. Put the session in {cwd}?", assume_yes=assume_yes, when_not_interactive=True
    ):
        raise Aborted("pickup cancelled; choose the directory with --project-dir DIR")
    return cwd


def _checked_project_dir(project_dir: Path) -> Path:
    path = Path(project_dir).expanduser()
    if not path.is_dir():
        raise UsageError(f"--project-dir {project_dir} is not a directory")
    return path.resolve()


# --- list and revoke ----------------------------------------------------------------


@dataclass(frozen=True)
class ListOutcome:
    publisher: PublicKey
    record: Record
    seq: int
    payload: Payload | None  # None when our key cannot read it


def list_active(rendezvous: RecordStore) -> ListOutcome:
    """The active handoff under one's own key; a revocation found instead is put again, so DHT nodes keep it."""
    from cclink.net.record_store import Revocation  # imported above for type checking only

    identity = load_identity(console)
    with console.spinner("Looking up your handoff on the DHT"):
        found = rendezvous.newest(identity.public_key)
    if isinstance(found, Revocation):
        # DHT nodes drop an item about two hours after its last put, and once
        # the revocation is gone an older record could be put back. While only
        # a command keeps the publisher online, each look at the key renews it;
        # the same item, unchanged, supersedes nothing newer.
        try:
            with console.spinner("Keeping the revocation on the DHT"):
                rendezvous.refresh(identity.public_key, found)
        except NetworkError:
            pass  # listing is what was asked for; the next look renews it
    resolved = rendezvous.active(identity.public_key, found)
    record = resolved.record
    body = None
    if record.pin_salt is None and record.recipient is None:
        try:
            body = payload.open_payload(record.blob, identity.age_identity())
        except CannotDecrypt:
            body = None
    return ListOutcome(identity.public_key, record, resolved.seq, body)


def revoke(rendezvous: RecordStore, now: float, *, assume_yes: bool) -> Record | None:
    """Supersede the active record with an empty packet; return what was revoked.

    None when no record was there to show: the newest item was already a
    revocation (it is put again, so DHT nodes keep it), or was older than one
    this machine has seen, maybe a replay (a new revocation supersedes it).
    """
    from cclink.net.record_store import Revocation  # imported above for type checking only

    identity = load_identity(console)
    try:
        with console.spinner("Looking up your handoff on the DHT"):
            found = rendezvous.newest(identity.public_key)
    except Rollback:
        question = (
            "The DHT holds an older handoff under your key than this machine has seen, maybe a replay; revoke it?"
        )
        if not console.confirm(question, assume_yes=assume_yes, when_not_interactive=False):
            raise Aborted("nothing revoked; pass -y to revoke without a prompt") from None
        with console.spinner("Revoking"):
            rendezvous.revoke(identity)
        return None
    if isinstance(found, Revocation):
        with console.spinner("Putting the revocation on the DHT again"):
            stored = rendezvous.refresh(identity.public_key, found)
        if stored.nodes == 0:
            raise NetworkError("no DHT node stored the revocation again; check the network and try again")
        console.say("The handoff was already revoked; its revocation was put on the DHT again so that nodes keep it.")
        return None
    record = rendezvous.active(identity.public_key, found).record
    age = text.format_duration(max(0.0, now - record.created_at))
    if not console.confirm(
        f"Revoke the handoff published {age} ago?", assume_yes=assume_yes, when_not_interactive=False
    ):
        raise Aborted("nothing revoked; pass -y to revoke without a prompt")
    with console.spinner("Revoking"):
        rendezvous.revoke(identity)
    return record
