"""What the agent keeps alive, and when it puts each item again (docs/design.md, "The agent").

A flow like the others: no sockets, files or clock of its own. The agent's
server (net/agent_server.py) hands it requests and the time, and calls `work` from
its worker thread; the CLI's `agent` command builds it with the DHT's
`Items` and a function that saves the kept list. A lock guards the list, but
never across a network operation, so status answers while puts take their
time.

It keeps one item per publisher key, the newest it was given, each as it was
signed: putting the same item again needs no key and never supersedes a
newer one, so the agent holds nothing secret. An item is put again about
every REPUBLISH_EVERY (jittered), sooner when fewer than WANTED_NODES
acknowledged the last put or it failed, until its record expires. Before each
put it looks at the key: a newer handoff there ends the keeping (its own
command hands it over), and a newer revocation takes the place of what was
kept, until the revoked record would have expired.

The agent also offers carried sessions (`cclink --carry`): those are
seeding.Transfers', which a Keeping is given; it answers for them to the
agent's server (carry, transfers) and keeps the agent running while any is
offered.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from cclink.errors import CclinkError, WireError
from cclink.flows.environment import Keeper
from cclink.net import dht_client, krpc, record_store
from cclink.net.record_store import GET_TIMEOUT, PUT_TIMEOUT, Items
from cclink.wire import packet
from cclink.wire.agent_protocol import MAX_KEPT, Entry, Item, Kind, Transfer, TransferEntry
from cclink.wire.keys import Identity, PublicKey
from cclink.wire.record import Record

REPUBLISH_EVERY = 3600.0  # DHT nodes drop an item about two hours after its last put
SOONER = 300.0  # after a put that failed or that too few nodes acknowledged
JITTER = 0.1  # each wait is drawn from ±10% of its length, so that many agents do not put in step
WANTED_NODES = dht_client.ENOUGH_STORED
UNKNOWN_EXPIRY = 86400  # a revocation of a record not seen is kept as long as a handoff lives by default
MAX_TTL = 365 * 86400  # publish's bound on a record's TTL: no revocation is kept longer than that from now
LOOK_AGAIN = 60.0  # while a carried session is offered, the agent's worker looks this often whether one ended


class Offers(Protocol):
    """The carried sessions the agent offers (seeding.Transfers)."""

    def carry(self, transfer_id: str, transfer: Transfer, now: float) -> str | None: ...

    def resume(self, now: float) -> None: ...

    def entries(self, now: float) -> tuple[TransferEntry, ...]: ...

    @property
    def offering(self) -> bool: ...

    def close(self) -> None: ...


@dataclass
class Kept:
    item: Item
    kind: Kind
    next_put: float
    nodes: int | None = None
    last_put: float | None = None


@dataclass(frozen=True)
class Refreshed:
    """What one look at the key and one put found: a newer item there, or how many nodes stored ours (None: failed)."""

    newer: krpc.Item | None = None
    nodes: int | None = None


class Keeping:
    """The kept items, one per publisher key, and their schedule."""

    def __init__(
        self,
        items: Items,
        save: Callable[[list[Item]], None],
        *,
        every: float = REPUBLISH_EVERY,
        jitter: Callable[[], float] = random.random,
        offers: Offers | None = None,
    ) -> None:
        self.items = items
        self.offers = offers
        self.save = save
        self.every = every
        self.sooner = min(SOONER, every)
        self.jitter = jitter
        self._kept: dict[bytes, Kept] = {}
        self._lock = threading.Lock()

    # --- what it is handed ------------------------------------------------------------

    def keep(self, item: Item, now: float) -> str | None:
        """Keep item from now on; None, or why not (a sentence)."""
        with self._lock:
            refusal = self._keep(item, now, self._wait(self.every, now))
            if refusal is None:
                self._save()
            return refusal

    def resume(self, items: list[Item], now: float) -> None:
        """Take up a saved list (after a reboot, say): what is still live, each put at once; and the transfers."""
        with self._lock:
            for item in items:
                self._keep(item, now, now)
            self._save()
        if self.offers is not None:
            self.offers.resume(now)

    def carry(self, transfer_id: str, transfer: Transfer, now: float) -> str | None:
        """Offer a carried session from now on; None, or why not (a sentence)."""
        if self.offers is None:
            return "this agent offers no carried sessions"
        return self.offers.carry(transfer_id, transfer, now)

    def close(self) -> None:
        """The agent is ending: stop offering (what is offered stays on disk for the next agent)."""
        if self.offers is not None:
            self.offers.close()

    def _keep(self, item: Item, now: float, next_put: float) -> str | None:
        try:
            kind, expires_at = checked(item, now)
        except (WireError, CclinkError) as error:
            return f"not a signed item of that key ({error.message})"
        if expires_at <= now:
            return "it has expired"
        current = self._kept.get(item.publisher)
        if current is not None:
            if current.item.seq > item.seq:
                return "a newer item under that key is kept already"
            if kind == "revocation" and current.kind == "handoff":
                expires_at = max(expires_at, current.item.expires_at)  # what it revokes lives that long
            if current.item.seq == item.seq:
                expires_at = max(expires_at, current.item.expires_at)
                next_put = current.next_put
        elif len(self._kept) >= MAX_KEPT:
            return f"it keeps items of at most {MAX_KEPT} keys"
        kept_item = Item(item.publisher, item.seq, item.signature, item.value, expires_at)
        self._kept[item.publisher] = Kept(kept_item, kind, next_put)
        return None

    # --- what it shows ----------------------------------------------------------------

    def entries(self, now: float) -> tuple[Entry, ...]:
        with self._lock:
            self._drop_expired(now)
            return tuple(
                Entry(
                    publisher=kept.item.publisher,
                    seq=kept.item.seq,
                    kind=kept.kind,
                    expires_at=kept.item.expires_at,
                    nodes=kept.nodes,
                    last_put=None if kept.last_put is None else int(kept.last_put),
                    next_put=int(kept.next_put),
                )
                for kept in sorted(self._kept.values(), key=lambda kept: kept.item.expires_at)
            )

    def transfers(self, now: float) -> tuple[TransferEntry, ...]:
        return self.offers.entries(now) if self.offers is not None else ()

    def next_due(self, now: float) -> float | None:
        """When the next put is due, or the next look at the transfers; None when nothing is left to keep."""
        with self._lock:
            self._drop_expired(now)
            due = min((kept.next_put for kept in self._kept.values()), default=None)
        if self.offers is not None and self.offers.offering:
            due = min(due, now + LOOK_AGAIN) if due is not None else now + LOOK_AGAIN
        return due

    # --- the work ---------------------------------------------------------------------

    def work(self, clock: Callable[[], float]) -> None:
        """Look at and put again every item that is due; the network is used outside the lock."""
        for item in self._due(clock()):
            refreshed = self.refresh(item)
            with self._lock:
                self._apply(item, refreshed, clock())

    def refresh(self, item: Item) -> Refreshed:
        """Look for a newer item under the key; if there is none, put item again, unchanged."""
        publisher = PublicKey(item.publisher)
        verify = record_store.verifier(publisher)
        try:
            newest = self.items.get(item.publisher, verify, timeout=GET_TIMEOUT)
            if newest is not None and newest.seq > item.seq:
                return Refreshed(newer=newest)
            signed = krpc.Item(item.seq, item.signature, item.value)
            stored = self.items.put_again(item.publisher, signed, verify, timeout=PUT_TIMEOUT)
        except CclinkError:  # NetworkError mostly; whatever it was, this round failed and the next comes sooner
            return Refreshed()
        return Refreshed(nodes=stored.nodes)

    def _due(self, now: float) -> list[Item]:
        with self._lock:
            self._drop_expired(now)
            return [kept.item for kept in self._kept.values() if kept.next_put <= now]

    def _apply(self, item: Item, refreshed: Refreshed, now: float) -> None:
        current = self._kept.get(item.publisher)
        if current is None or current.item.seq != item.seq:
            return  # handed a newer one meanwhile
        if refreshed.newer is not None:
            self._superseded(current, refreshed.newer, now)
            return
        current.last_put = now
        current.nodes = refreshed.nodes
        enough = refreshed.nodes is not None and refreshed.nodes >= WANTED_NODES
        current.next_put = self._wait(self.every if enough else self.sooner, now)

    def _superseded(self, current: Kept, newer: krpc.Item, now: float) -> None:
        """A newer revocation takes current's place until current would have expired; anything else ends it."""
        del self._kept[current.item.publisher]
        revocation = Item(current.item.publisher, newer.seq, newer.signature, newer.value, current.item.expires_at)
        if _kind(revocation) == "revocation":
            self._keep(revocation, now, now)
        self._save()

    def _drop_expired(self, now: float) -> None:
        expired = [key for key, kept in self._kept.items() if kept.item.expires_at <= now]
        for key in expired:
            del self._kept[key]
        if expired:
            self._save()

    def _wait(self, seconds: float, now: float) -> float:
        return now + seconds * (1 - JITTER + 2 * JITTER * self.jitter())

    def _save(self) -> None:
        self.save([kept.item for kept in self._kept.values()])


def hand_over_handoff(keeper: Keeper, identity: Identity, record: Record, seq: int) -> str | None:
    """Give keeper the handoff identity just published at seq, to keep alive until it expires."""
    message = packet.record_message(identity.public_key, record.to_json())
    return keeper.keep(identity.public_key, signed_item(identity, message, seq), record.expires_at)


def hand_over_revocation(keeper: Keeper, identity: Identity, seq: int, expires_at: float) -> str | None:
    """Give keeper the revocation identity just put at seq, to keep alive while what it revoked would have lived."""
    return keeper.keep(identity.public_key, signed_item(identity, packet.revocation_message(), seq), expires_at)


def signed_item(identity: Identity, message: bytes, seq: int) -> krpc.Item:
    """The item identity put as message at seq, signed again (Ed25519 signs alike each time): what a keeper takes."""
    return krpc.Item(seq, packet.SignedPacket.create(identity, seq, message).signature, message)


def checked(item: Item, now: float) -> tuple[Kind, int]:
    """The item's kind and how long it is kept, once its signatures verify.

    A handoff lives until its record says (the record is signed too); a
    revocation as long as it was asked to, within MAX_TTL from now.
    """
    publisher = PublicKey(item.publisher)
    packet.SignedPacket(publisher, item.signature, item.seq, item.value).verify()
    record_json = packet.record_from_message(item.value, publisher)
    if record_json is None:
        return "revocation", min(item.expires_at, int(now) + MAX_TTL)
    record = Record.from_json(record_json)
    record.verify(publisher)
    return "handoff", record.expires_at


def _kind(item: Item) -> Kind | None:
    try:
        publisher = PublicKey(item.publisher)
        packet.SignedPacket(publisher, item.signature, item.seq, item.value).verify()
        return "handoff" if packet.record_from_message(item.value, publisher) is not None else "revocation"
    except (WireError, CclinkError):
        return None
