"""Your handoff on the DHT: show it (list), and withdraw it (revoke)."""

from __future__ import annotations

from dataclasses import dataclass

from cclink import text
from cclink.errors import (
    CannotDecrypt,
    NetworkError,
    NothingDone,
    Rollback,
)
from cclink.flows import keeping
from cclink.flows.environment import Environment
from cclink.flows.ui import UI, go_ahead
from cclink.net.record_store import Resolved, Revocation
from cclink.wire import payload
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


def list_active(ui: UI, env: Environment) -> ListOutcome:
    """The active handoff under one's own key; a revocation found instead is put again, so DHT nodes keep it."""
    identity = env.keys.load(ui)
    found = _newest_of_mine(ui, env, identity.public_key)
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
        return ListOutcome(identity.public_key, None, None, None, revoked=found is not None)
    record = found.record
    body = None
    if record.pin_salt is None and record.recipient is None:
        try:
            body = payload.open_payload(record.blob, identity.age_identity())
        except CannotDecrypt:
            body = None
    return ListOutcome(identity.public_key, record, found.seq, body)


def _newest_of_mine(ui: UI, env: Environment, publisher: PublicKey) -> Resolved | Revocation | None:
    looking = "Looking up your handoff on the DHT"
    with ui.progress(looking) as shown:
        return env.records.newest(
            publisher, on_retry=lambda delay: shown.update(f"{looking}: no answer yet, trying again in {delay:.0f}s")
        )


def revoke(ui: UI, env: Environment, *, assume_yes: bool) -> Record | None:
    """Supersede the active record with an empty packet; return what was revoked.

    None when the newest item was older than one this machine has seen,
    maybe a replay (a new revocation supersedes it, and there is no record
    to show). NothingDone when nothing is published, or the newest item is
    already a revocation (it is put again, so DHT nodes keep it).
    """
    identity = env.keys.load(ui)
    try:
        found = _newest_of_mine(ui, env, identity.public_key)
    except Rollback:
        question = (
            "The DHT holds an older handoff under your key than this machine has seen, maybe a replay; revoke it?"
        )
        go_ahead(ui, question, assume_yes=assume_yes, otherwise="nothing revoked", unattended=False)
        with ui.progress("Revoking"):
            stored = env.records.revoke(identity)
        # What it revoked is unknown; kept as long as a handoff lives by default.
        _keep_revocation(ui, env, identity, stored.seq, env.clock() + keeping.UNKNOWN_EXPIRY)
        return None
    if isinstance(found, Revocation):
        with ui.progress("Putting the revocation on the DHT again"):
            stored = env.records.refresh(identity.public_key, found)
        if stored.nodes == 0 and stored.relays == 0:
            raise NetworkError("no DHT node stored the revocation again; check the network and try again")
        raise NothingDone(
            "the handoff was already revoked; its revocation was put on the DHT again so that nodes keep it"
        )
    if found is None:
        raise NothingDone(f"no handoff is published under {identity.public_key.display}, so there is nothing to revoke")
    record = found.record
    age = text.format_duration(max(0.0, env.clock() - record.created_at))
    question = f"Revoke the handoff published {age} ago?"
    go_ahead(ui, question, assume_yes=assume_yes, otherwise="nothing revoked", unattended=False)
    with ui.progress("Revoking"):
        stored = env.records.revoke(identity)
    _keep_revocation(ui, env, identity, stored.seq, record.expires_at)
    return record


def _keep_revocation(ui: UI, env: Environment, identity: Identity, seq: int, expires_at: float) -> None:
    note = keeping.hand_over_revocation(env.keeper, identity, seq, expires_at)
    if note is not None:
        ui.say(f"Note: {note}")
