"""Your handoff on the DHT: show it (list), and withdraw it (revoke)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from cclink import text
from cclink.cli import console
from cclink.errors import (
    Aborted,
    CannotDecrypt,
    NetworkError,
    Rollback,
)
from cclink.flows.keystore import load_identity
from cclink.wire import payload
from cclink.wire.keys import PublicKey
from cclink.wire.payload import Payload
from cclink.wire.record import Record

if TYPE_CHECKING:
    from cclink.net.record_store import RecordStore

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
