"""Your handoff on the DHT: show it (list), and withdraw it (revoke)."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from cclink import text
from cclink.errors import (
    CannotDecrypt,
    CclinkError,
    NetworkError,
    NothingDone,
    Rollback,
)
from cclink.flows import keeping
from cclink.flows.environment import Environment
from cclink.flows.ui import UI, Progress, go_ahead
from cclink.local import threads
from cclink.net.record_store import Resolved, Revocation
from cclink.wire import device_items, payload
from cclink.wire.keys import Identity, PublicKey
from cclink.wire.payload import Payload
from cclink.wire.record import Record

# --- list and revoke ----------------------------------------------------------------


@dataclass(frozen=True)
class ListOutcome:
    publisher: PublicKey
    record: Record | None  # None when no handoff is active
    seq: int | None
    payload: Payload | None  # None when our key cannot read it
    revoked: bool = False  # nothing is active because the last handoff was revoked
    device_items: int = 0  # how many paired devices have a live handoff of their own (wire/device_items.py)


def list_active(ui: UI, env: Environment) -> ListOutcome:
    """The active handoff under one's own key and how many device items are live.

    A revocation found under one's own key is put again, so DHT nodes keep it.
    """
    identity = env.keys.load(ui)
    found, live = _look_up_mine(ui, env, identity)
    if isinstance(found, CclinkError):
        raise found
    if isinstance(found, Revocation):
        # DHT nodes drop an item about two hours after its last put, and once
        # the revocation is gone an older record could be put back. While only
        # a command keeps the publisher online, each look at the key renews it;
        # the same item, unchanged, supersedes nothing newer.
        try:
            with ui.progress("Keeping the revocation on the DHT"):
                env.records.refresh(identity.public_key, found)
        except NetworkError:
            pass  # listing is what was asked for; the next look renews it
    if found is None or isinstance(found, Revocation):
        return ListOutcome(identity.public_key, None, None, None, revoked=found is not None, device_items=len(live))
    record = found.record
    body = None
    if record.pin_salt is None and record.recipient is None:
        try:
            body = payload.open_payload(record.blob, identity.age_identity())
        except CannotDecrypt:
            body = None
    return ListOutcome(identity.public_key, record, found.seq, body, device_items=len(live))


def _newest_of_mine(
    env: Environment, publisher: PublicKey, shown: Progress, looking: str
) -> Resolved | Revocation | None:
    return env.records.newest(
        publisher, on_retry=lambda delay: shown.update(f"{looking}: no answer yet, trying again in {delay:.0f}s")
    )


@dataclass(frozen=True)
class RevokeOutcome:
    record: Record | None  # the handoff revoked under one's own key; None for none, or a possible replay
    devices: tuple[str, ...] = ()  # the paired devices whose item (a handoff of their own) was revoked too


def revoke(ui: UI, env: Environment, *, assume_yes: bool) -> RevokeOutcome:
    """Supersede the active record, and every live item left for a paired device, with empty packets.

    The record is None when the newest item was older than one this machine
    has seen, maybe a replay (a new revocation supersedes it, and there is no
    record to show). NothingDone when nothing is published, or the newest
    item is already a revocation (it is put again, so DHT nodes keep it),
    and no device item is live either.
    """
    identity = env.keys.load(ui)
    found, live = _look_up_mine(ui, env, identity)
    if isinstance(found, Rollback):
        question = (
            "The DHT holds an older handoff under your key than this machine has seen, maybe a replay; revoke it?"
        )
        go_ahead(ui, question, assume_yes=assume_yes, otherwise="nothing revoked", unattended=False)
        # What it revoked is unknown; kept as long as a handoff lives by default.
        _revoke(ui, env, [_Target(None, identity, env.clock() + keeping.UNKNOWN_EXPIRY), *live])
        return RevokeOutcome(None, tuple(target.name or "" for target in live))
    if isinstance(found, CclinkError):
        raise found
    if isinstance(found, Revocation):
        _refresh(ui, env, identity.public_key, found, nothing_else=not live)
        found = None
    elif found is None and not live:
        raise NothingDone(f"no handoff is published under {identity.public_key.display}, so there is nothing to revoke")
    question = _revoke_question(found, live, env.clock())
    go_ahead(ui, question, assume_yes=assume_yes, otherwise="nothing revoked", unattended=False)
    own = [] if found is None else [_Target(None, identity, found.record.expires_at, found.record.created_at)]
    _revoke(ui, env, own + live)
    return RevokeOutcome(None if found is None else found.record, tuple(target.name or "" for target in live))


@dataclass(frozen=True)
class _Target:
    """A key to revoke under: one's own (name None), or the item left for the device name."""

    name: str | None
    signer: Identity
    expires_at: float  # how long the revocation is to be kept: as long as what it revokes would have lived
    created_at: float = 0.0


def _look_up_mine(
    ui: UI, env: Environment, identity: Identity
) -> tuple[Resolved | Revocation | CclinkError | None, list[_Target]]:
    """What is under one's own key, and the device items that are live, all looked up at once."""
    own = identity.public_key
    signers = _item_signers(identity, env)
    looking = "Looking up your handoff on the DHT"
    with ui.progress(looking) as shown:
        [found, *items] = threads.at_once(
            [
                functools.partial(_newest_of_mine, env, own, shown, looking),
                *(functools.partial(env.records.newest, signer.public_key, retry_for=0) for _, signer in signers),
            ],
            CclinkError,
        )
    return found, _live_items(ui, env, signers, items)


def revoke_items_of_burnt(identity: Identity, handoff: Record, ui: UI, env: Environment) -> tuple[str, ...]:
    """Revoke the items this machine left for its devices with handoff, a burn record it picked up itself (and
    revoked); the names of the devices whose item was revoked.

    An item created after handoff belongs to a later handoff, and stays; one
    created with it, or before it (left with a handoff it replaced), is
    revoked, so that no device picks up what the burn was to end. A lookup
    or revocation that fails is a note.
    """
    signers = _item_signers(identity, env)
    if not signers:
        return ()
    with ui.progress("Looking up the copies left for paired devices"):
        items = threads.at_once(
            [functools.partial(env.records.newest, signer.public_key, retry_for=0) for _, signer in signers],
            CclinkError,
        )
    burnt = [target for target in _live_items(ui, env, signers, items) if target.created_at <= handoff.created_at]
    return tuple(target.name or "" for target in _revoke(ui, env, burnt)) if burnt else ()


def _item_signers(identity: Identity, env: Environment) -> list[tuple[str, Identity]]:
    """Each paired device's name and the identity this machine signs its item for it with."""
    own = identity.public_key
    devices = [device for device in env.contacts.devices() if device.key != own]
    return [(device.name, device_items.item_identity(identity, device.key)) for device in devices]


def _live_items(
    ui: UI,
    env: Environment,
    signers: list[tuple[str, Identity]],
    items: list[Resolved | Revocation | CclinkError | None],
) -> list[_Target]:
    """Of what was found under each device item's key, the live handoffs; a lookup that failed is a note."""
    live = []
    for (name, signer), item in zip(signers, items, strict=True):
        if isinstance(item, Resolved):
            live.append(_Target(name, signer, item.record.expires_at, item.record.created_at))
        elif isinstance(item, CclinkError):
            ui.say(f"Note: the handoff left for {name} could not be looked up ({item.message}).")
    return live


def _refresh(ui: UI, env: Environment, publisher: PublicKey, found: Revocation, *, nothing_else: bool) -> None:
    """Put the revocation under one's own key again; when that is all there was to do, say so (NothingDone)."""
    with ui.progress("Putting the revocation on the DHT again"):
        stored = env.records.refresh(publisher, found)
    if not nothing_else:
        return
    if stored.nodes == 0 and stored.relays == 0:
        raise NetworkError("no DHT node stored the revocation again; check the network and try again")
    raise NothingDone("the handoff was already revoked; its revocation was put on the DHT again so that nodes keep it")


def _revoke_question(found: Resolved | None, live: list[_Target], now: float) -> str:
    names = ", ".join(target.name or "" for target in live)
    newest = max([target.created_at for target in live] + ([found.record.created_at] if found else []))
    age = text.format_duration(max(0.0, now - newest))
    if found is None:
        return f"Revoke the handoff published {age} ago for {names}?"
    copies = f" (and the copies left for {names})" if live else ""
    return f"Revoke the handoff published {age} ago{copies}?"


def _revoke(ui: UI, env: Environment, targets: list[_Target]) -> list[_Target]:
    """Revoke under every target's key at once, and return those revoked.

    One's own key's failure is the command's, a device item's a note.
    """
    with ui.progress("Revoking"):
        results = threads.at_once(
            [functools.partial(env.records.revoke, target.signer) for target in targets], CclinkError
        )
    failed = None
    revoked = []
    for target, stored in zip(targets, results, strict=True):
        if isinstance(stored, CclinkError):
            if target.name is None:
                failed = stored
            else:
                ui.say(f"Note: the handoff left for {target.name} could not be revoked ({stored.message}).")
            continue
        _keep_revocation(ui, env, target.signer, stored.seq, target.expires_at)
        revoked.append(target)
    if failed is not None:
        raise failed
    return revoked


def _keep_revocation(ui: UI, env: Environment, identity: Identity, seq: int, expires_at: float) -> None:
    note = keeping.hand_over_revocation(env.keeper, identity, seq, expires_at)
    if note is not None:
        ui.say(f"Note: {note}")
