"""Seeding a carried session: offer it until the recipient acknowledges, renewing the record meanwhile.

`Publication` is what publish() returns: the published handoff and, for
--carry, the session being offered, which it owns and deletes when closed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING

from cclink import text
from cclink.errors import NetworkError, NotFound, Rollback, TransferError
from cclink.flows.ui import UI, Progress
from cclink.wire import packet
from cclink.wire.keys import Identity, PublicKey
from cclink.wire.record import Record

if TYPE_CHECKING:
    from cclink.flows.carry import Outgoing
    from cclink.flows.publish import PublishOutcome
    from cclink.net import krpc
    from cclink.net.dht_client import Stored
    from cclink.net.record_store import RecordStore

# DHT nodes drop items after about two hours; a seeding publisher renews well before.
RENEW_EVERY = 3600.0
RENEW_AGAIN_AFTER_FAILURE = 300.0


@dataclass(frozen=True)
class CarryResult:
    uploaded: int
    revoked: bool


class Publication:
    """A published handoff and, for --carry, the session offered to the recipient until this is closed."""

    def __init__(
        self, outcome: PublishOutcome, outgoing: Outgoing | None, identity: Identity, records: RecordStore
    ) -> None:
        self.outcome = outcome
        self._outgoing = outgoing
        self._identity = identity  # renews the record while seeding, and revokes a burn record
        self._records = records

    @property
    def carrying(self) -> bool:
        return self._outgoing is not None

    @property
    def carry_size(self) -> int:
        """The encrypted session's size in bytes, for --carry."""
        assert self._outgoing is not None
        return self._outgoing.seeder.size

    def __enter__(self) -> Publication:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop offering a carried session and delete its files; the record stays published."""
        if self._outgoing is not None:
            self._outgoing.close()

    def serve_carry(self, ui: UI, timeout: float, renew_every: float = RENEW_EVERY) -> CarryResult:
        """Seed until the recipient acknowledges that it has the whole session.

        Renews the record meanwhile, and revokes a burn record then. Only the
        recipient's acknowledgement ends it (see payload.CarryInfo): a peer
        that merely says it is finished, or downloads the ciphertext, does
        not. TransferError when nobody fetched it within timeout seconds;
        NotFound when the record was revoked or replaced elsewhere (renewing
        would undo that); Ctrl-C (KeyboardInterrupt) stops seeding and
        leaves the record published.
        """
        outgoing, outcome = self._outgoing, self.outcome
        assert outgoing is not None
        try:
            # Said inside the try: a Ctrl-C the moment this line shows must still say what became of the handoff.
            ui.say(
                f"Offering the session ({text.format_bytes(self.carry_size)} encrypted) until it is fetched; "
                "keep this running. Ctrl-C stops."
            )
            with ui.progress("Seeding: waiting for the other machine") as shown:
                uploaded = self._seed_until_acknowledged(outgoing, shown, timeout, renew_every)
        except KeyboardInterrupt:
            ui.say("Stopped offering the session; the handoff stays published until it expires.")
            raise
        ui.say(f"The session was fetched ({text.format_bytes(uploaded)} sent).")
        revoked = False
        if outcome.record.burn:
            with ui.progress("Revoking the burn-after-read record"):
                self._records.revoke(self._identity)
            revoked = True
        return CarryResult(uploaded, revoked)

    def _seed_until_acknowledged(self, outgoing: Outgoing, shown: Progress, timeout: float, renew_every: float) -> int:
        """Bytes uploaded once the recipient acknowledged; renews the record meanwhile."""
        outcome = self.outcome
        deadline = time.monotonic() + timeout
        renew_at = time.monotonic() + renew_every
        last_seq = outcome.published.seq
        while True:
            status = outgoing.poll(0.5)
            shown.update(text.seeding_status(status.peers, status.uploaded, status.upload_rate))
            if outgoing.acknowledged:
                return status.uploaded
            if time.monotonic() >= deadline:
                raise TransferError(
                    f"nobody fetched session {outcome.session_id} within {text.format_duration(timeout)}; "
                    "its data is no longer offered (the record stays until it expires)"
                )
            if time.monotonic() >= renew_at:
                renewed = _renewed(self._records, self._identity, outcome.record, last_seq)
                if renewed is not None:
                    last_seq = renewed.seq
                renew_at = time.monotonic() + (renew_every if renewed else min(renew_every, RENEW_AGAIN_AFTER_FAILURE))


def _renewed(records: RecordStore, identity: Identity, record: Record, last_seq: int) -> Stored | None:
    """Put the same record again so DHT nodes keep it; None when the DHT failed (try again sooner).

    NotFound when what the DHT holds is newer than the last put (a revocation
    or another handoff, from another machine or a burn pickup): putting the
    record again would undo that.
    """
    message = packet.record_message(identity.public_key, record.to_json())
    try:
        if _superseded(_newest_item(records, identity.public_key), last_seq, message):
            raise NotFound("the handoff was revoked or replaced elsewhere; stopped offering the session")
        return records.put_message(identity, message)
    except NetworkError:
        return None


def _newest_item(records: RecordStore, publisher: PublicKey) -> krpc.Item | None:
    """The newest item under publisher.

    None when the DHT holds only items older than ours (lost ours, or a replay).
    """
    try:
        return records.find_item(publisher)
    except Rollback:
        return None


def _superseded(newest: krpc.Item | None, last_seq: int, message: bytes) -> bool:
    """Whether the newest verified item under our key is someone else's word.

    That is: above our last put, or different at its seq.
    """
    if newest is None or newest.seq < last_seq:
        return False  # the nodes lost ours (or kept an older one): renewing puts it back
    return newest.seq > last_seq or newest.value != message
