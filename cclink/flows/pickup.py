"""Picking up a handoff: find, verify, check, decrypt, confirm, revoke a burn, then resume (fetching a carry first).

Where to look, and which handoff to take, is lookup.py's. Everything that
can fail on this machine is checked before the question is asked, and so
before a burn record is revoked. Like every flow, it asks through a UI and
knows the machine through an Environment; it never starts claude itself but
returns a `Resumption` for the CLI to carry out.
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from cclink import text
from cclink.errors import (
    CannotDecrypt,
    Expired,
    KeyFileError,
    SessionError,
    UsageError,
    WireError,
    WrongPin,
)
from cclink.flows import keeping, lookup, manage
from cclink.flows.environment import Environment
from cclink.flows.publish import PIN_ENV
from cclink.flows.ui import SECRET_TRIES, UI, go_ahead
from cclink.local import claude
from cclink.wire import agecrypt, kdf, payload
from cclink.wire.keys import Identity, PublicKey
from cclink.wire.payload import Payload
from cclink.wire.record import Record

DEFAULT_FETCH_TIMEOUT = 60.0

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
    sender: str | None = None  # the paired device or contact that published it, by name; None for one's own key
    # A burn handoff a device left for this machine, to be fetched: its item's identity, which resume() revokes.
    burn_item: Identity | None = field(default=None, repr=False)

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
    ui: UI,
    env: Environment,
    *,
    assume_yes: bool,
    confirm: bool,
    force_fetch: bool = False,
    project_dir: Path | None = None,
    wait: float | None = None,
) -> PickupOutcome:
    """Resolve, verify, check expiry, decrypt, and for one's own burn record, revoke.

    With confirm (the session is to be resumed), everything that can fail
    here is checked before asking, and so before a burn record is revoked.
    With wait, first wait up to that many seconds for a handoff newer than
    the last one picked up here.
    """
    now = env.clock()
    identity: Identity | None
    if publisher is None:
        identity = env.keys.load(ui)
        sources = lookup.own_sources(identity, env)
    else:
        identity = _identity_for_lookup(publisher, ui, env)
        sources = lookup.named_sources(publisher, identity, env)
    if wait is not None:
        found = lookup.wait_for_new_handoff(sources, identity, ui, env, wait)
    else:
        found = lookup.find(sources, identity, ui, env)
    source, record = found.source, found.resolved.record
    _refuse_expired(record, now)
    if identity is None and record.pin_salt is None and env.keys.exists():
        identity = env.keys.load(ui)  # encrypted to a key: only now is this machine's needed
    body, decryptor = found.opened or _decrypt(record, source, identity, ui, now)
    session = claude.find_session(body.session_id)
    if force_fetch and body.carry is None:
        raise UsageError("this handoff does not carry the session data, so there is nothing to fetch (--fetch)")
    fetch = body.carry is not None and (force_fetch or session is None)
    if confirm:
        _check_can_resume(body, session, fetch, project_dir, env.cwd)
        go_ahead(
            ui,
            _resume_question(body, record, now, source.name),
            assume_yes=assume_yes,
            otherwise="not resumed; the handoff is still published",
            unattended=True,
        )
    burnt = _burn(source, record, identity, fetch, ui, env) if record.burn else _Burnt()
    env.pickups.remember(source.key.raw, found.resolved.seq)
    return PickupOutcome(
        source.publisher,
        record,
        body,
        session,
        burnt.revoked,
        [*found.notes, *burnt.notes],
        fetch,
        decryptor,
        source.name,
        burnt.item,
    )


def _identity_for_lookup(publisher: PublicKey, ui: UI, env: Environment) -> Identity | None:
    """This machine's key when the lookup of publisher needs it: its own key, or a paired device's (for its item).

    Otherwise None: a PIN handoff needs no key, so the passphrase is asked
    only once the handoff turns out to be encrypted to one. (A key never
    opened on this machine is not known to be the one asked for: it is
    then looked up as anyone's, and opened when decrypting.)
    """
    if not env.keys.exists():
        return None
    contact = env.contacts.find(publisher.z32)
    if (contact is not None and contact.is_device) or env.keys.known_public_key() == publisher:
        return env.keys.load(ui)
    return None


@dataclass(frozen=True)
class _Burnt:
    """What became of a burn record on pickup: revoked here, left to fetch_session (item), and what to say."""

    revoked: bool = False
    notes: tuple[str, ...] = ()
    item: Identity | None = None


def _burn(
    source: lookup.Source, record: Record, identity: Identity | None, fetch: bool, ui: UI, env: Environment
) -> _Burnt:
    """Revoke a burn record whose key this machine holds: one's own (and the items it left for its devices with
    it), or a device's item for this machine (once fetched, when it is to be); else say who can."""
    if fetch and source.item is not None:
        note = (
            f"This is a burn-after-read handoff: this machine revokes the one {source.name} left for it "
            "once the session is here."
        )
        return _Burnt(notes=(note,), item=source.item)
    if fetch:
        return _Burnt(
            notes=("This is a burn-after-read handoff: its publisher revokes it once the session is fetched.",)
        )
    if identity is not None and identity.public_key == source.publisher:
        notes = _revoke_burnt(identity, record, ui, env)
        devices = manage.revoke_items_of_burnt(identity, record, ui, env)
        if devices:
            notes.append(f"The copies left for {', '.join(devices)} were revoked too.")
        return _Burnt(True, tuple(notes))
    if source.item is not None:
        # Its item for this machine, whose key this machine derives: revoked like one's own.
        return _Burnt(True, (*_revoke_burnt(source.item, record, ui, env), _item_revoked(source.name)))
    return _Burnt(notes=(_left_in_place(source.name),))


def _left_in_place(sender: str | None) -> str:
    if sender is not None:
        return (
            f"This is a burn-after-read handoff, but only {sender}'s key can revoke it; it stays until it "
            "expires, or until `cclink revoke` there."
        )
    return "This is a burn-after-read handoff, but only its publisher's key can revoke it; it stays until it expires."


def _item_revoked(sender: str | None) -> str:
    return (
        f"The handoff {sender} left for this machine was revoked; any copy of it under {sender}'s own key "
        "stays until it expires, unless it was picked up there."
    )


def _revoke_burnt(signer: Identity, record: Record, ui: UI, env: Environment) -> list[str]:
    """Revoke the burn-after-read record signer published, and have the agent keep the revocation."""
    with ui.progress("Revoking the burn-after-read record"):
        stored = env.records.revoke(signer)
    kept = keeping.hand_over_revocation(env.keeper, signer, stored.seq, record.expires_at)
    return [kept] if kept is not None else []


def _check_can_resume(
    body: Payload, session: claude.Session | None, fetch: bool, project_dir: Path | None, cwd: Path
) -> None:
    """Raise what resume() would raise about this machine, before anything is asked, fetched or revoked."""
    if project_dir is not None:
        _checked_project_dir(project_dir, cwd)
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
    record: Record, source: lookup.Source, identity: Identity | None, ui: UI, now: float
) -> tuple[Payload, agecrypt.Identity]:
    """The payload, and the age identity that opened it (it opens a carried session too)."""
    publisher = source.key
    age = text.format_duration(max(0.0, now - record.created_at))
    sender = f"{source.name} ({publisher.display})" if source.name else publisher.display
    origin = f"the handoff from {sender} ({age} old)"
    if record.pin_salt is not None:
        return _decrypt_with_pin(record, record.pin_salt, ui, origin)
    if identity is None:
        raise KeyFileError(f"{origin} is encrypted to a key, and there is no key here; run `cclink init` first")
    me = identity.public_key
    intended = record.recipient_key()
    if intended is not None and intended != me:
        raise CannotDecrypt(f"{origin} was shared with {intended.display}, not with your key {me.display}")
    try:
        return payload.open_payload(record.blob, identity.age_identity()), identity.age_identity()
    except CannotDecrypt:
        pass
    if intended == me or publisher == me:
        raise CannotDecrypt(f"{origin} names your key but does not decrypt with it; it may be damaged") from None
    # Encrypted to its publisher's key and paired devices, and this machine is not among them.
    raise CannotDecrypt(
        f"{origin} is encrypted to its publisher's own key and devices, not to this machine; "
        f"pair the two machines (`cclink pair`), or ask the publisher to run `cclink --share {me.z32}` "
        "or `cclink --pin`"
    )


def _decrypt_with_pin(record: Record, pin_salt: bytes, ui: UI, origin: str) -> tuple[Payload, agecrypt.Identity]:
    """The payload opened with the PIN; a person who mistyped it may try again."""
    attempt = 1
    while True:
        pin_identity = kdf.pin_identity(ui.secret("PIN: ", PIN_ENV), pin_salt)
        try:
            return payload.open_payload(record.blob, pin_identity), pin_identity
        except CannotDecrypt:
            if attempt == SECRET_TRIES or not ui.can_retype(PIN_ENV):
                raise WrongPin(f"incorrect PIN for {origin}") from None
            ui.say("Incorrect PIN; try again.")
            attempt += 1


def _resume_question(body: Payload, record: Record, now: float, sender: str | None) -> str:
    # The publisher chose these words: shown escaped, they cannot steer the terminal.
    where = text.printable(body.project) if body.project else "an unknown directory"
    host = f" on {text.printable(body.hostname)}" if body.hostname else ""
    age = text.format_duration(max(0.0, now - record.created_at))
    origin = f" from {sender}" if sender else ""
    return f"Resume session {body.session_id}{origin} ({where}{host}, published {age} ago)?"


@dataclass(frozen=True)
class Resumption:
    """What the CLI runs: `claude --resume=<session_id>`, in directory when there is one."""

    session_id: str
    directory: Path | None


def resume(
    outcome: PickupOutcome,
    ui: UI,
    env: Environment,
    *,
    project_dir: Path | None = None,
    assume_yes: bool = False,
    fetch_timeout: float = DEFAULT_FETCH_TIMEOUT,
    lan: bool = False,
) -> Resumption:
    """Get a picked-up session ready to resume (fetching it first for --carry), or explain why it cannot be."""
    session, where = outcome.session, outcome.project_dir
    if outcome.fetch:
        session, where = fetch_session(
            outcome, ui, env, project_dir=project_dir, assume_yes=assume_yes, fetch_timeout=fetch_timeout, lan=lan
        )
        _revoke_fetched_item(outcome, ui, env)
    elif project_dir is not None:
        where = _checked_project_dir(project_dir, env.cwd)
    if session is None:
        raise _not_on_this_machine(outcome.payload.session_id)
    claude.check_can_resume(outcome.payload.session_id, where)
    origin = f" from {outcome.sender}" if outcome.sender else ""
    ui.say(f"Resuming session {outcome.payload.session_id}{origin}...")
    return Resumption(outcome.payload.session_id, where)


def _revoke_fetched_item(outcome: PickupOutcome, ui: UI, env: Environment) -> None:
    """A burn handoff a device left for this machine, now that its session is here: revoked before claude starts,
    as one found with the session already here is on pickup (the publisher revokes only its own record)."""
    if outcome.burn_item is None:
        return
    for note in _revoke_burnt(outcome.burn_item, outcome.record, ui, env):
        ui.say(f"Note: {note}")
    ui.say(f"Burn-after-read: the handoff {outcome.sender} left for this machine was revoked.")


def fetch_session(
    outcome: PickupOutcome,
    ui: UI,
    env: Environment,
    *,
    project_dir: Path | None,
    assume_yes: bool,
    fetch_timeout: float,
    lan: bool = False,
) -> tuple[claude.Session, Path]:
    """Download, check, decrypt and place a carried session; return it and the directory to resume in."""
    from cclink.flows import acknowledgement, carry, placing  # libtorrent's peer side and tarfile: only for --carry

    info, body = outcome.payload.carry, outcome.payload
    assert info is not None and outcome.decryptor is not None
    local = _local_project(body.project, project_dir, ui, env.cwd, assume_yes)

    _agree_to_replace(placing.local_copy(body.session_id, local), body.session_id, ui, assume_yes)
    try:
        with ExitStack() as transfer:
            with ui.progress(f"Fetching the session ({text.format_bytes(info.size)})") as shown:
                path = transfer.enter_context(
                    carry.fetched(
                        info,
                        env.network,
                        stall_timeout=fetch_timeout,
                        lan=lan,
                        on_progress=lambda p: shown.update(
                            text.transfer_status("Fetching the session", p.done, p.total, p.rate)
                        ),
                    )
                )
            carry.check_integrity(path, info)
            # The publisher stops seeding (and revokes a burn record) once it sees the
            # acknowledgement, which needs the decrypted archive; it goes out while the session is unpacked.
            acknowledging: list[acknowledgement.Acknowledging] = []
            placed = placing.place(
                path,
                outcome.decryptor,
                body.session_id,
                publisher_project=body.project,
                local_project=local,
                on_decrypted=lambda archive_sha256: acknowledging.append(
                    acknowledgement.Acknowledging(info, archive_sha256, env.network)
                ),
            )
    except (WireError, CannotDecrypt):
        # The signed bytes themselves are bad: fetching them again would end the same way.
        carry.forget_download(info)
        raise
    carry.forget_download(info)
    if acknowledging and not acknowledging[0].wait():
        ui.say(
            "Note: the publisher could not be told that the session arrived; "
            "it offers it until its time runs out or it is stopped."
        )
    for backup in placed.backups:
        ui.say(f"Note: the previous local copy was kept as {backup}")
    ui.say(f"Placed the session at {placed.session_file}")
    return claude.Session(body.session_id, placed.session_file, str(local), env.clock()), local


def _agree_to_replace(existing: Path | None, session_id: str, ui: UI, assume_yes: bool) -> None:
    """Ask before fetching over a local copy: asking after the download would waste it, and revoke a burn record."""
    if existing is None:
        return
    question = (
        f"A copy of session {session_id} is already at {existing}. "
        "Replace it with the carried one where they differ (the old one is kept as a backup)?"
    )
    go_ahead(
        ui,
        question,
        assume_yes=assume_yes,
        otherwise=f"kept the local copy of session {session_id} at {existing} and downloaded nothing",
        unattended=False,
    )


def _local_project(publisher_project: str, project_dir: Path | None, ui: UI, cwd: Path, assume_yes: bool) -> Path:
    """Where the session belongs here.

    --project-dir, else the publisher's path if it exists, else (asked) the current directory.
    """
    if project_dir is not None:
        return _checked_project_dir(project_dir, cwd)
    if publisher_project and Path(publisher_project).is_dir():
        return Path(publisher_project)
    missing = (
        f"The publisher's directory {text.printable(publisher_project)}"
        if publisher_project
        else "The publisher's directory"
    )
    go_ahead(
        ui,
        f"{missing} does not exist here. Put the session in {cwd}?",
        assume_yes=assume_yes,
        otherwise="not resumed; choose the directory with --project-dir DIR",
        unattended=True,
    )
    return cwd


def _checked_project_dir(project_dir: Path, cwd: Path) -> Path:
    """--project-dir as an absolute directory; a relative one is taken from the current directory."""
    path = cwd / Path(project_dir).expanduser()
    if not path.is_dir():
        raise UsageError(f"--project-dir {project_dir} is not a directory")
    return path.resolve()
