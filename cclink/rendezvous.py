"""Handoff records on the DHT: publish, revoke and resolve signed packets."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Sequence

from cclink import dht, dhtput, krpc, packet
from cclink.errors import NetworkError, NotFound, WireError
from cclink.keys import Identity, PublicKey
from cclink.record import Record

PUT_TIMEOUT = 60.0
GET_TIMEOUT = 20.0
RETRY_FOR = 30.0


@dataclass(frozen=True)
class Published:
    seq: int
    nodes: int


@dataclass(frozen=True)
class Resolved:
    """A record whose packet and inner signatures both verified."""

    record: Record
    seq: int


class Rendezvous:
    """The DHT as a place to leave and find handoff records."""

    def __init__(self, bootstrap: Sequence[dht.Endpoint], *, cache: bool = True) -> None:
        self.bootstrap = list(bootstrap)
        self.state_file = dht.state_file_for(self.bootstrap) if cache else None

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
                item = self._get(publisher)
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
        signer = _PacketSigner(identity, message)
        stored = dhtput.put(self.bootstrap, identity.public_key.raw, message, signer, timeout=PUT_TIMEOUT)
        return Published(seq=stored.seq, nodes=stored.nodes)

    def _get(self, publisher: PublicKey) -> dht.MutableItem | None:
        with dht.Dht(self.bootstrap, state_file=self.state_file) as node:
            return node.get(publisher.raw, timeout=GET_TIMEOUT)


class _PacketSigner:
    """Signs one DNS message as identity's packet at any seq, and checks packets found under the same key."""

    def __init__(self, identity: Identity, message: bytes) -> None:
        self._identity = identity
        self._message = message

    def sign(self, seq: int) -> bytes:
        return packet.SignedPacket.create(self._identity, seq, self._message).signature

    def verifies(self, item: krpc.ClaimedItem) -> bool:
        try:
            packet.SignedPacket(self._identity.public_key, item.signature, item.seq, item.value).verify()
        except WireError:
            return False
        return True


def _verified_record(publisher: PublicKey, item: dht.MutableItem) -> Resolved:
    """Check the packet signature ourselves (never trust the transport), then the record's."""
    signed = packet.SignedPacket(public_key=publisher, signature=item.signature, seq=item.seq, message=item.value)
    signed.verify()
    record_json = packet.record_from_message(item.value, publisher)
    if record_json is None:
        raise NotFound(f"no handoff is published under {publisher.display} (the last one was revoked)")
    record = Record.from_json(record_json)
    record.verify(publisher)
    return Resolved(record=record, seq=item.seq)
