"""Picking up a handoff: find, verify, check, decrypt, confirm, revoke a burn, then resume (fetching a carry first).

Everything that can fail on this machine is checked before the question is
asked, and so before a burn record is revoked. Like every flow, it asks
through a UI and knows the machine through an Environment; it never starts
claude itself but returns a `Resumption` for the CLI to carry out.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from cclink import text
from cclink.errors import (
    CannotDecrypt,
    CclinkError,
    Expired,
    KeyFileError,
    NetworkError,
    NotFound,
    Rollback,
    SessionError,
    UsageError,
    WireError,
    WrongPin,
)
from cclink.flows import keeping
from cclink.flows.environment import Environment
from cclink.flows.publish import PIN_ENV, at_once
from cclink.flows.ui import SECRET_TRIES, UI, Progress, go_ahead
from cclink.local import claude
from cclink.net.record_store import Resolved, Revocation
from cclink.wire import agecrypt, device_items, kdf, payload
from cclink.wire.keys import Identity, PublicKey
from cclink.wire.payload import Payload
from cclink.wire.record import Record

DEFAULT_FETCH_TIMEOUT = 60.0
# pickup --wait polls the DHT gently: often at first (the publisher is usually about to publish), then less.
WAIT_FIRST_POLL = 2.0
WAIT_BACKOFF = 1.5
WAIT_LONGEST_POLL = 30.0

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
        sources = _own_sources(identity, env)
    else:
        identity = env.keys.load(ui) if env.keys.exists() else None
        sources = [_Source(publisher, _name_of(publisher, identity, env))]
    if wait is not None:
        found = _wait_for_new_handoff(sources, identity, ui, env, wait)
    else:
        found = _find(sources, identity, ui, env)
    source, resolved, sender = found.source, found.resolved, found.source.name
    publisher = source.publisher
    record = resolved.record
    _refuse_expired(record, now)
    body, decryptor = found.opened or _decrypt(record, found.source, identity, ui, now)
    session = claude.find_session(body.session_id)
    if force_fetch and body.carry is None:
        raise UsageError("this handoff does not carry the session data, so there is nothing to fetch (--fetch)")
    fetch = body.carry is not None and (force_fetch or session is None)
    if confirm:
        _check_can_resume(body, session, fetch, project_dir, env.cwd)
        go_ahead(
            ui,
            _resume_question(body, record, now, sender),
            assume_yes=assume_yes,
            otherwise="not resumed; the handoff is still published",
            unattended=True,
        )
    notes = list(found.notes)
    revoked = False
    if record.burn and fetch:
        notes.append("This is a burn-after-read handoff: its publisher revokes it once the session is fetched.")
    elif record.burn:
        if identity is not None and identity.public_key == publisher:
            notes.extend(_revoke_burnt(identity, record, ui, env))
            revoked = True
        elif source.item is not None:
            # Its item for this machine, whose key this machine derives: revoked like one's own.
            notes.extend(_revoke_burnt(source.item, record, ui, env))
            revoked = True
            notes.append(
                f"The handoff {sender} left for this machine was revoked; any copy of it under {sender}'s own key "
                "stays until it expires, unless it was picked up there."
            )
        elif sender is not None:
            notes.append(
                f"This is a burn-after-read handoff, but only {sender}'s key can revoke it; it stays until it "
                f"expires, or until `cclink revoke` there."
            )
        else:
            notes.append(
                "This is a burn-after-read handoff, but only its publisher's key can revoke it; "
                "it stays until it expires."
            )
    env.pickups.remember(source.key.raw, resolved.seq)
    return PickupOutcome(publisher, record, body, session, revoked, notes, fetch, decryptor, sender)


def _revoke_burnt(signer: Identity, record: Record, ui: UI, env: Environment) -> list[str]:
    """Revoke the burn-after-read record signer published, and have the agent keep the revocation."""
    with ui.progress("Revoking the burn-after-read record"):
        stored = env.records.revoke(signer)
    kept = keeping.hand_over_revocation(env.keeper, signer, stored.seq, record.expires_at)
    return [kept] if kept is not None else []


# --- where to look: one's own key and paired devices, or the key asked for ------------------


@dataclass(frozen=True)
class _Source:
    """A key to look up, and what to call its publisher: a device's or contact's name, None for one's own key.

    For a device's item for this machine (wire/device_items.py), the key is
    the pairwise one, item its identity (which revokes a burnt item), and
    device the device's own key.
    """

    key: PublicKey
    name: str | None = None
    item: Identity | None = None
    device: PublicKey | None = None

    @property
    def publisher(self) -> PublicKey:
        """Who published what is found here: the device, for its item."""
        return self.device or self.key


@dataclass(frozen=True)
class _Found:
    """The handoff chosen, where it was found, and, when it was opened to see whether it is for this machine, what
    it holds."""

    source: _Source
    resolved: Resolved
    opened: tuple[Payload, agecrypt.Identity] | None = None
    notes: tuple[str, ...] = ()


def _own_sources(identity: Identity, env: Environment) -> list[_Source]:
    """One's own key, then each paired device's, then each device's item for this machine.

    A device holding this very key is looked up once, and has no item.
    """
    own = identity.public_key
    devices = [device for device in env.contacts.devices() if device.key != own]
    items = [(device, device_items.item_from(device.key, identity)) for device in devices]
    return [
        _Source(own),
        *(_Source(device.key, device.name) for device in devices),
        *(_Source(item.public_key, device.name, item, device.key) for device, item in items),
    ]


def _name_of(publisher: PublicKey, identity: Identity | None, env: Environment) -> str | None:
    if identity is not None and publisher == identity.public_key:
        return None
    contact = env.contacts.find(publisher.z32)
    return contact.name if contact is not None else None


def _label(source: _Source) -> str:
    """A source among one's own key and devices: its name, or `your key`."""
    if source.item is not None:
        return f"{source.name} (its item for this machine)"
    return source.name or "your key"


def _whose(source: _Source) -> str:
    """`beta's handoffs`, `the handoff beta left for this machine`: what a failed lookup was for."""
    if source.item is not None:
        return f"the handoff {source.name} left for this machine"
    return f"{_label(source)}'s handoffs"


def _who(sources: Sequence[_Source]) -> str:
    """`your key and laptop, desk`: whose handoffs are looked up, for progress lines and errors."""
    if len(sources) == 1:
        return sources[0].name or sources[0].key.fingerprint
    return "your key and " + ", ".join(_label(source) for source in sources[1:] if source.item is None)


def _find(sources: list[_Source], identity: Identity | None, ui: UI, env: Environment) -> _Found:
    """The handoff to pick up: under the one key, or the newest for this machine under one's own and devices' keys."""
    if len(sources) == 1:
        return _Found(sources[0], _resolve(sources[0], identity, ui, env))
    with ui.progress(f"Looking up {_who(sources)} on the DHT") as shown:
        looked_up = _look_up_all(
            sources, env, lambda source: env.records.newest(source.key, lambda d: _retrying(shown, d))
        )
    return _newest_for_me(sources, looked_up, identity, env.clock())


def _retrying(shown: Progress, delay: float) -> None:
    shown.update(f"DHT unreachable; retrying in {delay:.0f}s")


def _resolve(source: _Source, identity: Identity | None, ui: UI, env: Environment) -> Resolved:
    """The active handoff under one key; with nothing under one's own key and no devices, say how to pair."""
    publisher = source.key
    with ui.progress(f"Looking up {publisher.fingerprint} on the DHT") as shown:
        found = env.records.newest(publisher, on_retry=lambda d: _retrying(shown, d))
    if found is None and identity is not None and publisher == identity.public_key:
        # Two machines with different keys is the usual reason: each looks under its own.
        raise NotFound(
            f"no handoff is published under {publisher.display}, your key; if it was published on another machine, "
            "pair the two once: run `cclink pair` here and `cclink pair CODE` with the code it shows on the other "
            "machine, then publish again (or pick up with the publisher's key: `cclink pickup PUBKEY`)"
        )
    return env.records.active(publisher, found)


Looked = Resolved | Revocation | CclinkError | None


def _look_up_all(
    sources: list[_Source], env: Environment, look_up: Callable[[_Source], Resolved | Revocation | None]
) -> list[Looked]:
    """What look_up found under every source, all looked up at once; a CclinkError stands for its lookup."""
    results = at_once([functools.partial(look_up, source) for source in sources])
    # The rollback guard's memory is not made for threads: what a thread remembered is remembered again here.
    for source, result in zip(sources, results, strict=True):
        if isinstance(result, Resolved):
            env.records.seen.remember(source.key.raw, result.seq)
        elif isinstance(result, Revocation):
            env.records.seen.remember(source.key.raw, result.item.seq)
    return results


def _newest_for_me(sources: list[_Source], looked_up: list[Looked], identity: Identity | None, now: float) -> _Found:
    """The newest live handoff this machine can open; failing that the newest expired one, which is then refused.

    A handoff it cannot open (shared with someone else, for a PIN under a
    device's key, published before pairing) is skipped, not an error; so is
    a key whose lookup failed, when another key has a handoff.
    """
    mine: list[_Found] = []
    others: list[_Source] = []
    for source, result in zip(sources, looked_up, strict=True):
        if isinstance(result, Resolved):
            found = _for_me(source, result, identity, own=source is sources[0])
            if found is not None:
                mine.append(found)
            else:
                others.append(source)
    failed = [
        (source, result) for source, result in zip(sources, looked_up, strict=True) if isinstance(result, CclinkError)
    ]
    if not mine:
        raise _nothing_for_me(sources, others, failed)
    live = [found for found in mine if not found.resolved.record.is_expired(now)] or mine
    chosen = max(live, key=_newness)
    notes = tuple(f"{_whose(source)} could not be looked up: {error.message}" for source, error in failed)
    return _Found(chosen.source, chosen.resolved, chosen.opened, notes)


def _for_me(source: _Source, resolved: Resolved, identity: Identity | None, *, own: bool) -> _Found | None:
    """The handoff as found, opened when it opens with this machine's key; None when it is not for this machine.

    A PIN handoff under one's own key is for this machine, as it always was
    (the PIN is asked for later); under a device's key it was meant for
    someone else.
    """
    record = resolved.record
    if record.pin_salt is not None:
        return _Found(source, resolved) if own else None
    if identity is None:
        return None
    try:
        opened = payload.open_payload(record.blob, identity.age_identity())
    except (CannotDecrypt, WireError):
        return None
    return _Found(source, resolved, (opened, identity.age_identity()))


def _nothing_for_me(
    sources: list[_Source], others: list[_Source], failed: list[tuple[_Source, CclinkError]]
) -> CclinkError:
    """Why nothing was picked up: the first lookup that failed, handoffs addressed elsewhere, or nothing at all."""
    if others:
        names = ", ".join(_label(source) for source in others)
        return NotFound(
            f"there are handoffs under {names}, but none addressed to this machine: they were shared with someone "
            "else, or published before the machines were paired (publish again there)"
        )
    if failed:
        return failed[0][1]
    return NotFound(f"no handoff is published under {_who(sources)}")


def _wait_for_new_handoff(
    sources: list[_Source], identity: Identity | None, ui: UI, env: Environment, seconds: float
) -> _Found:
    """The first handoff for this machine newer than the last one picked up here, polled for up to seconds.

    Newer is per key: above the seq of the last handoff picked up under it.
    Until one appears, an unreachable DHT or an older item (a replay, or
    nodes that lost the newest) only means waiting on.
    """
    deadline = env.clock() + seconds
    delay = WAIT_FIRST_POLL
    waiting = f"Waiting for a new handoff from {_who(sources)} (Ctrl-C stops)"
    with ui.progress(waiting) as shown:
        while True:
            looked_up = _look_up_all(sources, env, lambda source: env.records.newest(source.key, retry_for=0))
            _raise_refusal(looked_up)
            answered = not all(isinstance(result, NetworkError | Rollback) for result in looked_up)
            shown.update(waiting if answered else f"{waiting}; the DHT did not answer, trying again")
            found = _new_for_me(sources, looked_up, identity, env)
            if found is not None:
                return found
            remaining = deadline - env.clock()
            if remaining <= 0:
                raise NotFound(f"no new handoff from {_shown(sources)} appeared within {text.format_duration(seconds)}")
            env.sleep(min(delay, remaining))
            delay = min(delay * WAIT_BACKOFF, WAIT_LONGEST_POLL)


def _raise_refusal(looked_up: list[Looked]) -> None:
    """For the one key asked for, a record refused (malformed, badly signed) ends the wait as it ends a pickup.

    Among one's own and devices' keys it is skipped like any handoff not for this machine.
    """
    [result, *more] = looked_up
    if not more and isinstance(result, CclinkError) and not isinstance(result, NetworkError | Rollback):
        raise result


def _new_for_me(
    sources: list[_Source], looked_up: list[Looked], identity: Identity | None, env: Environment
) -> _Found | None:
    """The newest live handoff above the last one picked up under its key: for this machine, or under the one key
    asked for (which is then opened as any pickup of it is)."""
    new: list[_Found] = []
    for source, result in zip(sources, looked_up, strict=True):
        if not isinstance(result, Resolved) or result.seq <= env.pickups.floor(source.key.raw):
            continue
        if result.record.is_expired(env.clock()):
            continue
        found = (
            _Found(source, result) if len(sources) == 1 else _for_me(source, result, identity, own=source is sources[0])
        )
        new.extend([found] if found is not None else [])
    return max(new, key=_newness, default=None)


def _newness(found: _Found) -> tuple[int, int]:
    return found.resolved.record.created_at, found.resolved.seq


def _shown(sources: list[_Source]) -> str:
    if len(sources) == 1:
        return sources[0].name or sources[0].key.display
    return _who(sources)


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
    record: Record, source: _Source, identity: Identity | None, ui: UI, now: float
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
    elif project_dir is not None:
        where = _checked_project_dir(project_dir, env.cwd)
    if session is None:
        raise _not_on_this_machine(outcome.payload.session_id)
    claude.check_can_resume(outcome.payload.session_id, where)
    origin = f" from {outcome.sender}" if outcome.sender else ""
    ui.say(f"Resuming session {outcome.payload.session_id}{origin}...")
    return Resumption(outcome.payload.session_id, where)


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
