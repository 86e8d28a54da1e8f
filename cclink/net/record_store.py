"""Handoff records on the DHT: publish, revoke and resolve signed packets (docs/wire.md §6, §7).

A RecordStore keeps records as BEP 44 items in `Items`: the DHT of a network
(`RecordStore.on_dht`, through dht_client), or a test's stand-in in memory.
Every item a publisher signed verifies forever, so a verified item is not
enough: one older than the newest this machine has seen under the key (see
seq_memory.py) was replaced or revoked, and is refused as a possible replay.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from cclink.errors import NetworkError, NoNetwork, NotFound, Rollback, WireError
from cclink.net import dht_client, endpoints, krpc
from cclink.net.seq_memory import SeqMemory
from cclink.wire import packet
from cclink.wire.keys import Identity, PublicKey
from cclink.wire.record import Record

PUT_TIMEOUT = 60.0
GET_TIMEOUT = 20.0
RETRY_FOR = 30.0


@dataclass(frozen=True)
class Resolved:
    """A record whose packet and inner signatures both verified."""

    record: Record
    seq: int


@dataclass(frozen=True)
class Revocation:
    """The newest item under a key is an empty packet: its publisher revoked the handoff."""

    item: krpc.Item  # verified; anyone may put it again, unchanged, to keep it alive


class Items(Protocol):
    """Where BEP 44 mutable items are got and put, as dht_client's get, put and put_again do on a network."""

    def get(self, public_key: bytes, verify: dht_client.Verify, *, timeout: float) -> krpc.Item | None: ...

    def put(
        self,
        public_key: bytes,
        value: bytes,
        sign: dht_client.Sign,
        verify: dht_client.Verify,
        *,
        timeout: float,
        min_seq: int = 0,
    ) -> dht_client.Stored: ...

    def put_again(
        self, public_key: bytes, item: krpc.Item, verify: dht_client.Verify, *, timeout: float
    ) -> dht_client.Stored: ...


@dataclass(frozen=True)
class DhtItems:
    """The items of a network's DHT, through cclink's own client."""

    network: endpoints.Network

    def get(self, public_key: bytes, verify: dht_client.Verify, *, timeout: float) -> krpc.Item | None:
        return dht_client.get(self.network, public_key, verify, timeout=timeout)

    def put(
        self,
        public_key: bytes,
        value: bytes,
        sign: dht_client.Sign,
        verify: dht_client.Verify,
        *,
        timeout: float,
        min_seq: int = 0,
    ) -> dht_client.Stored:
        return dht_client.put(self.network, public_key, value, sign, verify, timeout=timeout, min_seq=min_seq)

    def put_again(
        self, public_key: bytes, item: krpc.Item, verify: dht_client.Verify, *, timeout: float
    ) -> dht_client.Stored:
        return dht_client.put_again(self.network, public_key, item, verify, timeout=timeout)


class RecordStore:
    """A place to leave and find handoff records: the DHT (on_dht), or items a test keeps."""

    def __init__(self, items: Items, seen: SeqMemory | None = None) -> None:
        self.items = items
        # The highest seq seen per publisher: the user's own unless a test or the demo brings one.
        self.seen = seen if seen is not None else SeqMemory.in_state_dir()

    @classmethod
    def on_dht(cls, network: endpoints.Network, seen: SeqMemory | None = None) -> RecordStore:
        """Records on the DHT of network."""
        return cls(DhtItems(network), seen)

    def publish(self, identity: Identity, record: Record) -> dht_client.Stored:
        message = packet.record_message(identity.public_key, record.to_json())
        return self.put_message(identity, message)

    def revoke(self, identity: Identity) -> dht_client.Stored:
        """Supersede whatever is published with an empty packet."""
        return self.put_message(identity, packet.revocation_message())

    def refresh(self, publisher: PublicKey, revocation: Revocation) -> dht_client.Stored:
        """Put a revocation again, unchanged, so that nodes keep it (and nodes that dropped it hold it again).

        It needs no key and supersedes nothing: a node holding a newer item refuses it.
        """
        return self.items.put_again(publisher.raw, revocation.item, verifier(publisher), timeout=PUT_TIMEOUT)

    def resolve(self, publisher: PublicKey, on_retry: Callable[[float], None] | None = None) -> Resolved:
        """The active record under publisher.

        Raises NotFound when nothing (or a revocation) is published, and
        Rollback when the newest item found is older than one seen before.
        """
        return self.active(publisher, self.newest(publisher, on_retry))

    @staticmethod
    def active(publisher: PublicKey, found: Resolved | Revocation | None) -> Resolved:
        """What newest() found, as the active record; NotFound for a revocation or nothing."""
        if found is None:
            raise NotFound(f"no handoff is published under {publisher.display}")
        if isinstance(found, Revocation):
            raise NotFound(f"no handoff is published under {publisher.display} (the last one was revoked)")
        return found

    def newest(
        self, publisher: PublicKey, on_retry: Callable[[float], None] | None = None, *, retry_for: float = RETRY_FOR
    ) -> Resolved | Revocation | None:
        """The newest item under publisher, verified: a record, a revocation, or None when the DHT holds nothing.

        Retries with backoff for about retry_for seconds while the DHT is
        unreachable, but a DHT that answers "nothing here" is final at once,
        and so is a machine with no network at all (NoNetwork).
        Raises Rollback when that item is older than one seen before.
        """
        delay, give_up = 1.0, time.monotonic() + retry_for
        while True:
            try:
                item = self.find_item(publisher)
                break
            except NoNetwork:
                raise
            except NetworkError:
                if time.monotonic() + delay > give_up:
                    raise
                if on_retry:
                    on_retry(delay)
                time.sleep(delay)
                delay = min(delay * 2, 8.0)
        if item is None:
            return None
        found = _verified(publisher, item)
        # Remembered only once wholly verified: a record signed but unreadable raises first.
        self.seen.remember(publisher.raw, item.seq)
        return found

    def put_message(self, identity: Identity, message: bytes) -> dht_client.Stored:
        """Put a DNS message as identity's signed packet, superseding whatever was there."""
        public_key = identity.public_key

        def sign(seq: int) -> bytes:
            return packet.SignedPacket.create(identity, seq, message).signature

        # Above anything seen, even an item the DHT has dropped: else an older one could be put back over ours.
        min_seq = self.seen.floor(public_key.raw) + 1
        published = self.items.put(
            public_key.raw, message, sign, verifier(public_key), timeout=PUT_TIMEOUT, min_seq=min_seq
        )
        self.seen.remember(public_key.raw, published.seq)
        return published

    def find_item(self, publisher: PublicKey) -> krpc.Item | None:
        """The newest item under publisher whose packet signature verifies, whatever it holds.

        Raises Rollback when it is older than the newest this machine has seen under publisher.
        """
        item = self.items.get(publisher.raw, verifier(publisher), timeout=GET_TIMEOUT)
        if item is not None and item.seq < self.seen.floor(publisher.raw):
            raise Rollback(
                f"the DHT returned an older handoff from {publisher.display} than this machine has already seen "
                "(it was revoked or replaced); it may be a replay"
            )
        return item


def verifier(publisher: PublicKey) -> Callable[[krpc.Item], bool]:
    """Whether an item's packet signature holds under publisher: what every get and put checks."""

    def verifies(item: krpc.Item) -> bool:
        try:
            packet.SignedPacket(publisher, item.signature, item.seq, item.value).verify()
        except WireError:
            return False
        return True

    return verifies


def _verified(publisher: PublicKey, item: krpc.Item) -> Resolved | Revocation:
    """Check the packet signature ourselves (never trust the transport), then the record's, if it holds one."""
    signed = packet.SignedPacket(public_key=publisher, signature=item.signature, seq=item.seq, message=item.value)
    signed.verify()
    record_json = packet.record_from_message(item.value, publisher)
    if record_json is None:
        return Revocation(item)
    record = Record.from_json(record_json)
    record.verify(publisher)
    return Resolved(record=record, seq=item.seq)


def _verified_record(publisher: PublicKey, item: krpc.Item) -> Resolved:
    """The record an item holds, verified; NotFound for a revocation."""
    return RecordStore.active(publisher, _verified(publisher, item))
