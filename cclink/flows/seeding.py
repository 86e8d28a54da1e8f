"""Seeding a carried session: offer it until the recipient acknowledges, renewing the record meanwhile.

`Seeding` is that loop, in one place for both who run it: the publisher's
own command (`cclink --carry --foreground`, or when no agent takes it) and
the agent (`Transfers`), to which `cclink --carry` hands the session and
returns.

`Publication` is what publish() returns: the published handoff and, for
--carry, the session being offered, which it owns and deletes when closed.
It serves the carry itself (serve_carry) or hands it to the agent
(hand_over): the signed handoff, for burn the revocation signed in advance
at the next seq (the agent never holds the key), and a link to the
encrypted file in the agent's own directory. The device items put beside
the handoff (publish.py) go with it: renewed with it, and for burn revoked
with it once the recipient acknowledges, by revocations signed in advance
alike.

`Transfers` is the agent's side: each carried session it was handed, in a
thread of its own, until the acknowledgement (then the burn revocation),
the deadline, or a newer item under the key ends it. What it needs of the
disk (the transfer directories) comes from net/transfer_files.TransferFiles.
"""

from __future__ import annotations

import functools
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Protocol

from cclink import text
from cclink.errors import CclinkError, NetworkError, NotFound, Rollback, TransferError, WireError
from cclink.flows import keeping
from cclink.flows.environment import Keeper, NoKeeper
from cclink.flows.ui import UI, Progress
from cclink.local import threads
from cclink.net import krpc, record_store
from cclink.wire import packet
from cclink.wire.agent_protocol import (
    MAX_DEVICE_ITEMS,
    MAX_TRANSFERS,
    CarriedItem,
    Item,
    Transfer,
    TransferEntry,
    TransferState,
)
from cclink.wire.keys import Identity, PublicKey
from cclink.wire.payload import CarryInfo
from cclink.wire.record import Record

if TYPE_CHECKING:
    from cclink.flows.carry import Offering, Outgoing
    from cclink.flows.publish import PublishOutcome
    from cclink.net.bittorrent import SeedStatus
    from cclink.net.dht_client import Stored
    from cclink.net.endpoints import Network
    from cclink.net.record_store import Items, RecordStore
    from cclink.net.transfer_files import TransferFiles

# DHT nodes drop items after about two hours; a seeding publisher renews well before.
RENEW_EVERY = 3600.0
RENEW_AGAIN_AFTER_FAILURE = 300.0
BURN_ATTEMPTS = 3  # puts of a burn's revocation before the agent's keeping (or nobody, in the foreground) takes over
POLL = 0.5  # how long each step serves peers before it looks at the acknowledgement and the clock
SUPERSEDED = "the handoff was revoked or replaced elsewhere; stopped offering the session"


@dataclass(frozen=True)
class CarryResult:
    uploaded: int
    revoked: bool
    items_revoked: int = 0  # burn: how many of the device items' revocations the DHT holds now


# --- the loop -------------------------------------------------------------------------


class Offer(Protocol):
    """A file being seeded (carry.Offering, carry.Outgoing)."""

    def poll(self, wait: float) -> SeedStatus: ...

    @property
    def acknowledged(self) -> bool: ...


class Seeding:
    """One carried session being offered, a step at a time, until the recipient acknowledges it.

    renew puts the record again every renew_every (True when a node stored
    it, False to try again sooner) and raises NotFound when a newer item
    under the key says it was revoked or replaced. A step past the deadline
    (by clock) raises TransferError.
    """

    def __init__(
        self,
        offer: Offer,
        renew: Callable[[], bool],
        *,
        session_id: str,
        deadline: float,
        clock: Callable[[], float],
        renew_every: float = RENEW_EVERY,
        renew_now: bool = False,
    ) -> None:
        self.offer = offer
        self.renew = renew
        self.session_id = session_id
        self.deadline = deadline
        self.clock = clock
        self.renew_every = renew_every
        self.renew_at = clock() if renew_now else clock() + renew_every
        self.offered_for = deadline - clock()

    @property
    def acknowledged(self) -> bool:
        return self.offer.acknowledged

    def step(self, wait: float = POLL) -> SeedStatus:
        """Serve peers for up to wait seconds, then renew when due; the seeding's state."""
        status = self.offer.poll(wait)
        if self.offer.acknowledged:
            return status
        now = self.clock()
        if now >= self.deadline:
            raise TransferError(
                f"nobody fetched session {self.session_id} within {text.format_duration(self.offered_for)}; "
                "its data is no longer offered (the record stays until it expires)"
            )
        if now >= self.renew_at:
            renewed = self.renew()
            self.renew_at = self.clock() + (
                self.renew_every if renewed else min(self.renew_every, RENEW_AGAIN_AFTER_FAILURE)
            )
        return status


# --- the publisher's command ----------------------------------------------------------


class Publication:
    """A published handoff and, for --carry, the session offered to the recipient until this is closed."""

    def __init__(
        self,
        outcome: PublishOutcome,
        outgoing: Outgoing | None,
        identity: Identity,
        records: RecordStore,
        device_items: tuple[CarriedItem, ...] = (),
    ) -> None:
        self.outcome = outcome
        self._outgoing = outgoing
        self._identity = identity  # renews the record while seeding, and revokes a burn record
        self._records = records
        self._device_items = device_items  # for --carry: the device items as put (carried_item)

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

    def hand_over(self, keeper: Keeper, deadline: float) -> str | None:
        """Have the agent offer the carried session until deadline (seconds since the epoch) instead of this command.

        None once it does (this publication then offers nothing and its files
        are gone); else why not, a sentence ('' with no agent at all), and
        this publication still offers the session, from a new seeder.

        The agent listens on the port the record's address hints name, which
        is why this command's seeder lets go of it before the agent is asked.
        """
        outgoing, outcome = self._outgoing, self.outcome
        assert outgoing is not None and outcome.carry is not None
        if isinstance(keeper, NoKeeper):
            return ""  # no agent to ask: the seeder the hints name stays as it is
        if len(self._device_items) > MAX_DEVICE_ITEMS:
            return f"the agent carries a session with at most {MAX_DEVICE_ITEMS} copies for paired devices"
        identity, record, seq = self._identity, outcome.record, outcome.published.seq
        handoff = keeping.signed_item(identity, packet.record_message(identity.public_key, record.to_json()), seq)
        # Signed now, at the next seq: the agent puts it once the recipient has the session, without the key.
        revocation = keeping.signed_item(identity, packet.revocation_message(), seq + 1) if record.burn else None
        transfer = Transfer(
            session_id=outcome.session_id,
            handoff=_as_kept(identity.public_key, handoff, record.expires_at),
            revocation=None if revocation is None else _as_kept(identity.public_key, revocation, record.expires_at),
            info_hash=outcome.carry.info_hash,
            size=outcome.carry.size,
            sha256=outcome.carry.sha256,
            archive_sha256=outgoing.archive_sha256,
            deadline=int(min(deadline, record.expires_at)),
            port=outgoing.port,
            device_items=self._device_items,
        )
        outgoing.stop_seeding()
        refusal = keeper.carry(transfer, outgoing.path)
        if refusal is None:
            self.close()
        else:
            outgoing.seed_again()
        return refusal

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
        renewal = _RecordRenewal(self._records, self._identity, outcome.record, outcome.published.seq)
        seeding = Seeding(
            outgoing,
            _WithItems(renewal, self._records.items, self._device_items),
            session_id=outcome.session_id,
            deadline=time.monotonic() + timeout,
            clock=time.monotonic,
            renew_every=renew_every,
        )
        try:
            # Said inside the try: a Ctrl-C the moment this line shows must still say what became of the handoff.
            ui.say(
                f"Offering the session ({text.format_bytes(self.carry_size)} encrypted) until it is fetched; "
                "keep this running. Ctrl-C stops."
            )
            with ui.progress("Seeding: waiting for the other machine") as shown:
                uploaded = _seed_until_acknowledged(seeding, shown)
        except KeyboardInterrupt:
            ui.say("Stopped offering the session; the handoff stays published until it expires.")
            raise
        ui.say(f"The session was fetched ({text.format_bytes(uploaded)} sent).")
        revoked, items_revoked = False, 0
        if outcome.record.burn:
            with ui.progress("Revoking the burn-after-read record"):
                # The items first, each in a thread: the main revocation's failure is the command's.
                items_revoked = sum(_revoke_items(self._records.items, self._device_items))
                self._records.revoke(self._identity)
            revoked = True
        return CarryResult(uploaded, revoked, items_revoked)


def _seed_until_acknowledged(seeding: Seeding, shown: Progress) -> int:
    """Bytes uploaded once the recipient acknowledged."""
    while True:
        status = seeding.step()
        shown.update(text.seeding_status(status.peers, status.uploaded, status.upload_rate))
        if seeding.acknowledged:
            return status.uploaded


class _RecordRenewal:
    """The publisher's renewal: the same record signed again at a new seq (it holds the key)."""

    def __init__(self, records: RecordStore, identity: Identity, record: Record, seq: int) -> None:
        self.records, self.identity, self.record, self.last_seq = records, identity, record, seq

    def __call__(self) -> bool:
        renewed = _renewed(self.records, self.identity, self.record, self.last_seq)
        if renewed is None:
            return False
        self.last_seq = renewed.seq
        return True


def _renewed(records: RecordStore, identity: Identity, record: Record, last_seq: int) -> Stored | None:
    """Put the same record again so DHT nodes keep it; None when the DHT failed (try again sooner).

    NotFound when what the DHT holds is newer than the last put (a revocation
    or another handoff, from another machine or a burn pickup): putting the
    record again would undo that.
    """
    message = packet.record_message(identity.public_key, record.to_json())
    try:
        if _superseded(_newest_item(records, identity.public_key), last_seq, message):
            raise NotFound(SUPERSEDED)
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


def _as_kept(publisher: PublicKey, item: krpc.Item, expires_at: int) -> Item:
    return Item(publisher.raw, item.seq, item.signature, item.value, expires_at)


# --- items put again as signed: the agent's handoff, and device items in both -----------------


def carried_item(signer: Identity, record: Record, seq: int, *, burn: bool) -> CarriedItem:
    """A device item signer put at seq, as signed, and for burn its revocation signed now at the next seq."""
    message = packet.record_message(signer.public_key, record.to_json())
    handoff = _as_kept(signer.public_key, keeping.signed_item(signer, message, seq), record.expires_at)
    if not burn:
        return CarriedItem(handoff, None)
    revocation = keeping.signed_item(signer, packet.revocation_message(), seq + 1)
    return CarriedItem(handoff, _as_kept(signer.public_key, revocation, record.expires_at))


class _WithItems:
    """A handoff's renewal, then its device items', each put again as signed (at once).

    The handoff's NotFound (revoked or replaced elsewhere) ends the seeding
    before any item is put. An item superseded on its own (a device revoked
    it, or a later handoff replaced it) is not put again. True when the
    handoff and every item still renewed were stored.
    """

    def __init__(self, renew: Callable[[], bool], items: Items, carried: tuple[CarriedItem, ...]) -> None:
        self.renew = renew
        self.items = [_ItemRenewal(items, each.handoff) for each in carried]

    def __call__(self) -> bool:
        renewed = self.renew()
        if not self.items:
            return renewed

        results = threads.at_once(self.items, CclinkError)
        live = [
            (item, result) for item, result in zip(self.items, results, strict=True) if not isinstance(result, NotFound)
        ]
        self.items = [item for item, _ in live]
        return renewed and all(result is True for _, result in live)


def _revoke_items(items: Items, carried: tuple[CarriedItem, ...]) -> list[bool]:
    """Put each item's revocation signed in advance (at once): whether the DHT holds each now.

    An item with something newer there (the device revoked it itself, or a
    later handoff replaced it) counts as not revoked: not ours to undo.
    """
    revocations = [each.revocation for each in carried if each.revocation is not None]
    if not revocations:
        return []

    results = threads.at_once(
        [functools.partial(_put_until_there, items, revocation) for revocation in revocations], CclinkError
    )
    return [result is True for result in results]


def _put_until_there(items: Items, revocation: Item, stopping: threading.Event | None = None) -> bool:
    """Put a revocation signed in advance, up to BURN_ATTEMPTS times; whether it is there now.

    NotFound when a newer item is there.
    """
    there = False
    for _ in range(BURN_ATTEMPTS):
        there = _put_revocation(items, revocation)
        if there or (stopping is not None and stopping.is_set()):
            break
    return there


def _put_revocation(items: Items, revocation: Item) -> bool:
    """Whether the DHT holds the revocation now; NotFound when a newer item is there."""
    verify = record_store.verifier(PublicKey(revocation.publisher))
    signed = krpc.Item(revocation.seq, revocation.signature, revocation.value)
    try:
        newest = items.get(revocation.publisher, verify, timeout=record_store.GET_TIMEOUT)
        if newest == signed:
            return True
        if newest is not None and newest.seq >= revocation.seq:
            raise NotFound(SUPERSEDED)
        stored = items.put_again(revocation.publisher, signed, verify, timeout=record_store.PUT_TIMEOUT)
    except NetworkError:
        return False
    return stored.nodes > 0


class _ItemRenewal:
    """The agent's renewal, and a device item's anywhere: the item put again exactly as signed, which needs no key."""

    def __init__(self, items: Items, item: Item) -> None:
        self.items, self.item = items, item

    def __call__(self) -> bool:
        item = self.item
        verify = record_store.verifier(PublicKey(item.publisher))
        try:
            if _superseded(
                self.items.get(item.publisher, verify, timeout=record_store.GET_TIMEOUT), item.seq, item.value
            ):
                raise NotFound(SUPERSEDED)
            signed = krpc.Item(item.seq, item.signature, item.value)
            stored = self.items.put_again(item.publisher, signed, verify, timeout=record_store.PUT_TIMEOUT)
        except NetworkError:
            return False
        return stored.nodes > 0


# --- the agent's transfers ------------------------------------------------------------

ENDED_SHOWN = 3600.0  # how long status still shows a transfer that ended (while the agent runs)
STOP_WAIT = 5.0  # how long closing waits for the transfers' threads (a renewal under way is not waited for)


@dataclass
class _Running:
    transfer_id: str
    transfer: Transfer
    state: TransferState = "offering"
    peers: int = 0
    uploaded: int = 0
    revoked: bool = False
    ended_at: float | None = None
    superseded: bool = False  # a newer carry of the same key was handed over

    def entry(self) -> TransferEntry:
        transfer = self.transfer
        return TransferEntry(
            transfer_id=self.transfer_id,
            publisher=transfer.handoff.publisher,
            session_id=transfer.session_id,
            size=transfer.size,
            peers=self.peers,
            uploaded=self.uploaded,
            state=self.state,
            revoked=self.revoked,
            deadline=transfer.deadline,
        )


class Transfers:
    """The carried sessions the agent offers, each in a thread, at most MAX_TRANSFERS at once.

    keep_revocation hands a burn's revocation, once put, to the agent's
    keeping (keeping.Keeping.keep), which keeps it alive as long as the
    handoff would have lived. note takes a sentence for the agent's log.
    """

    def __init__(
        self,
        files: TransferFiles,
        network: Network,
        items: Items,
        keep_revocation: Callable[[Item, float], object],
        *,
        clock: Callable[[], float],
        renew_every: float = RENEW_EVERY,
        note: Callable[[str], object] = lambda _: None,
    ) -> None:
        self.files = files
        self.network = network
        self.items = items
        self.keep_revocation = keep_revocation
        self.clock = clock
        self.renew_every = renew_every
        self.note = note
        self._running: dict[str, _Running] = {}
        self._ended: deque[_Running] = deque(maxlen=MAX_TRANSFERS)
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()

    def carry(self, transfer_id: str, transfer: Transfer, now: float) -> str | None:
        """Start offering what a command handed over; None, or why not (a sentence)."""
        with self._lock:
            if transfer_id in self._running:
                return "a transfer of that id is offered already"
            if len(self._running) >= MAX_TRANSFERS:
                return f"it offers at most {MAX_TRANSFERS} carried sessions at once"
            try:
                transfer = _checked_transfer(transfer, now)
                self.files.archive(transfer_id, transfer.size)
                self.files.save(transfer_id, transfer)
            except (CclinkError, OSError) as error:
                if isinstance(error, CclinkError):
                    return error.message
                return f"not a transfer in its own directory ({error.strerror or error})"
            self._supersede(transfer)
            self._start(transfer_id, transfer, resumed=False)
        return None

    def _supersede(self, newer: Transfer) -> None:
        """End the transfers of older handoffs of newer's key: the newer record replaced theirs."""
        for running in self._running.values():
            older = running.transfer.handoff
            if older.publisher == newer.handoff.publisher and older.seq < newer.handoff.seq:
                running.superseded = True

    def resume(self, now: float) -> None:
        """Take up what the transfer directories hold (after a restart): each still live, renewed at once."""
        with self._lock:
            for transfer_id, transfer in self.files.saved(now):
                if transfer_id in self._running or len(self._running) >= MAX_TRANSFERS:
                    continue
                try:
                    transfer = _checked_transfer(transfer, now)
                    self.files.archive(transfer_id, transfer.size)
                except (CclinkError, OSError):
                    self.files.remove(transfer_id)
                    continue
                self._start(transfer_id, transfer, resumed=True)

    def entries(self, now: float) -> tuple[TransferEntry, ...]:
        with self._lock:
            while self._ended and (self._ended[0].ended_at or 0) + ENDED_SHOWN <= now:
                self._ended.popleft()
            shown = [*self._running.values(), *reversed(self._ended)]
            return tuple(running.entry() for running in shown[:MAX_TRANSFERS])

    @property
    def offering(self) -> bool:
        """Whether any transfer is still offered: the agent stays while one is."""
        with self._lock:
            return bool(self._running)

    def close(self) -> None:
        """Stop every transfer (its directory stays, for the next agent to take up)."""
        self._stopping.set()
        give_up = time.monotonic() + STOP_WAIT
        for thread in list(self._threads):
            thread.join(max(0.0, give_up - time.monotonic()))

    def _start(self, transfer_id: str, transfer: Transfer, *, resumed: bool) -> None:
        running = _Running(transfer_id, transfer)
        self._running[transfer_id] = running
        thread = threading.Thread(target=self._run, args=(running, resumed), name=f"carry-{transfer_id[:8]}")
        thread.daemon = True
        self._threads = [*(t for t in self._threads if t.is_alive()), thread]
        thread.start()

    def _run(self, running: _Running, resumed: bool) -> None:
        state: TransferState = "failed"
        keep_files = False
        try:
            state = self._offer_until_done(running, resumed)
            keep_files = state == "offering"  # stopped with the agent: the next one takes it up
        except TransferError:
            state = "timed out"
        except NotFound:
            state = "revoked"
        except (CclinkError, OSError, RuntimeError):  # RuntimeError: libtorrent's, for a file it cannot read
            state = "failed"
        finally:
            if not keep_files:
                self.files.remove(running.transfer_id)
            with self._lock:
                running.state = state
                running.ended_at = self.clock()
                self._running.pop(running.transfer_id, None)
                if not keep_files:
                    self._ended.append(running)

    def _offer_until_done(self, running: _Running, resumed: bool) -> TransferState:
        transfer = running.transfer
        promised = CarryInfo(transfer.info_hash, transfer.size, transfer.sha256)
        path = self.files.path(running.transfer_id)
        offering = _offer_file(path, promised, transfer.archive_sha256, self.network, transfer.port)
        try:
            if transfer.port is not None and offering.port != transfer.port:
                self.note(
                    f"Session {transfer.session_id}: port {transfer.port}, which the record's address hints name, "
                    f"was taken; offering it on port {offering.port}, where pickers find it through the DHT only."
                )
            seeding = Seeding(
                offering,
                _WithItems(_ItemRenewal(self.items, transfer.handoff), self.items, transfer.device_items),
                session_id=transfer.session_id,
                deadline=transfer.deadline,
                clock=self.clock,
                renew_every=self.renew_every,
                renew_now=resumed,  # nodes may have dropped it while the machine was off
            )
            while not self._stopping.is_set():
                if running.superseded:
                    raise NotFound(SUPERSEDED)
                status = seeding.step()
                running.peers, running.uploaded = status.peers, status.uploaded
                if seeding.acknowledged:
                    running.revoked = self._burn(transfer)
                    return "fetched"
            return "offering"
        finally:
            offering.close()

    def _burn(self, transfer: Transfer) -> bool:
        """Put the burn revocations signed in advance, the handoff's and its items', each unless something newer
        is there; whether the handoff's is there now."""
        revocation = transfer.revocation
        if revocation is None:
            return False

        carried = [each.revocation for each in transfer.device_items if each.revocation is not None]
        [there, *_] = threads.at_once(
            [functools.partial(self._revoke, each) for each in [revocation, *carried]], CclinkError
        )
        return there is True

    def _revoke(self, revocation: Item) -> bool:
        """Put revocation unless something newer is there, then keep it; whether it is there now."""
        try:
            there = _put_until_there(self.items, revocation, self._stopping)
        except NotFound:
            return False  # replaced elsewhere meanwhile: not ours to undo
        # Kept alive from now on, as any revocation: put again about hourly while the handoff would have lived.
        self.keep_revocation(revocation, self.clock())
        return there


def _offer_file(path: Path, promised: CarryInfo, archive_sha256: bytes, network: Network, port: int | None) -> Offering:
    from cclink.flows import carry  # libtorrent's peer side: only once a transfer is handed over

    return carry.offer_file(path, promised, archive_sha256, network, port)


def _checked_transfer(transfer: Transfer, now: float) -> Transfer:
    """transfer, its deadline within the handoff's life, once its items verify; CclinkError otherwise."""
    kind, expires_at = keeping.checked(transfer.handoff, now)
    if kind != "handoff":
        raise WireError("the transfer's handoff is not a signed handoff")
    revocation = transfer.revocation
    if revocation is not None:
        if revocation.publisher != transfer.handoff.publisher or revocation.seq <= transfer.handoff.seq:
            raise WireError("the transfer's revocation is not of the handoff's key at a later seq")
        if keeping.checked(revocation, now)[0] != "revocation":
            raise WireError("the transfer's revocation is not a signed revocation")
    deadline = min(transfer.deadline, expires_at)
    if deadline <= now:
        raise TransferError("the time to offer it has passed")
    _check_device_items(transfer, now)
    return Transfer(
        transfer.session_id,
        Item(
            transfer.handoff.publisher,
            transfer.handoff.seq,
            transfer.handoff.signature,
            transfer.handoff.value,
            expires_at,
        ),
        revocation,
        transfer.info_hash,
        transfer.size,
        transfer.sha256,
        transfer.archive_sha256,
        deadline,
        transfer.port,
        transfer.device_items,
    )


def _check_device_items(transfer: Transfer, now: float) -> None:
    """WireError unless each device item is a signed handoff of a key of its own, and its revocation (burn's
    only) a signed revocation of that key at a later seq."""
    keys = {transfer.handoff.publisher}
    for carried in transfer.device_items:
        handoff, revocation = carried.handoff, carried.revocation
        if handoff.publisher in keys:
            raise WireError("the transfer's device items are not each under a key of its own")
        keys.add(handoff.publisher)
        if keeping.checked(handoff, now)[0] != "handoff":
            raise WireError("a device item of the transfer is not a signed handoff")
        if (revocation is None) != (transfer.revocation is None):
            raise WireError("the transfer's device items are not revoked as its handoff is")
        if revocation is None:
            continue
        if revocation.publisher != handoff.publisher or revocation.seq <= handoff.seq:
            raise WireError("a device item's revocation is not of its key at a later seq")
        if keeping.checked(revocation, now)[0] != "revocation":
            raise WireError("a device item's revocation is not a signed revocation")
