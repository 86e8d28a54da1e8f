"""Handoff records on the DHT: publish, revoke and resolve signed packets."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Sequence

from cclink import dht, dhtitems, krpc, packet
from cclink.errors import NetworkError, NotFound, WireError
from cclink.keys import Identity, PublicKey
from cclink.record import Record

PUT_TIMEOUT = 60.0
GET_TIMEOUT = 20.0
RETRY_FOR = 30.0


# What a publish or revoke reports: the seq it signed and how many nodes stored it.
Published = dhtitems.Stored


@dataclass(frozen=True)
class Resolved:
    """A record whose packet and inner signatures both verified."""

    record: Record
    seq: int


class Rendezvous:
    """The DHT as a place to leave and find handoff records."""

    def __init__(self, bootstrap: Sequence[dht.Endpoint]) -> None:
        self.bootstrap = list(bootstrap)

    def publish(self, identity: Identity, record: Record) -> Published:
        message = packet.record_message(identity.public_key, record.to_json())
        return self.put_message(identity, message)

    def revoke(self, identity: Identity) -> Published:
        """Supersede whatever is published with an empty packet."""
        return self.put_message(identity, packet.revocation_message())

    def resolve(self, publisher: PublicKey, on_retry: Callable[[float], None] | None = None) -> Resolved:
        """The active record under publisher.

        Retries with backoff for about RETRY_FOR seconds while the DHT is
        unreachable, but a DHT that answers "nothing here" is final at once.
        Raises NotFound when nothing (or a revocation) is published.
        """
        delay, give_up = 1.0, time.monotonic() + RETRY_FOR
        while True:
            try:
                item = self.find_item(publisher)
                break
            except NetworkError:
                if time.monotonic() + delay > give_up:
                    raise
                if on_retry:
                    on_retry(delay)
                time.sleep(delay)
                delay = min(delay * 2, 8.0)
        if item is None:
            raise NotFound(f"no handoff is published under {publisher.display}")
        return _verified_record(publisher, item)

    def put_message(self, identity: Identity, message: bytes) -> Published:
        """Put a DNS message as identity's signed packet, superseding whatever was there."""
        public_key = identity.public_key

        def sign(seq: int) -> bytes:
            return packet.SignedPacket.create(identity, seq, message).signature

        return dhtitems.put(self.bootstrap, public_key.raw, message, sign, _verifier(public_key), timeout=PUT_TIMEOUT)

    def find_item(self, publisher: PublicKey) -> krpc.Item | None:
        """The newest item under publisher whose packet signature verifies, whatever it holds."""
        return dhtitems.get(self.bootstrap, publisher.raw, _verifier(publisher), timeout=GET_TIMEOUT)


def _verifier(publisher: PublicKey) -> Callable[[krpc.Item], bool]:
    def verifies(item: krpc.Item) -> bool:
        try:
            packet.SignedPacket(publisher, item.signature, item.seq, item.value).verify()
        except WireError:
            return False
        return True

    return verifies


def _verified_record(publisher: PublicKey, item: krpc.Item) -> Resolved:
    """Check the packet signature ourselves (never trust the transport), then the record's."""
    signed = packet.SignedPacket(public_key=publisher, signature=item.signature, seq=item.seq, message=item.value)
    signed.verify()
    record_json = packet.record_from_message(item.value, publisher)
    if record_json is None:
        raise NotFound(f"no handoff is published under {publisher.display} (the last one was revoked)")
    record = Record.from_json(record_json)
    record.verify(publisher)
    return Resolved(record=record, seq=item.seq)
