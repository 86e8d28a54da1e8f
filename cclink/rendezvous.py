"""Handoff records on the DHT: publish, revoke and resolve signed packets."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Sequence

from cclink import dht, packet
from cclink.errors import NetworkError, NotFound
from cclink.keys import Identity, PublicKey
from cclink.record import Record

PUT_TIMEOUT = 60.0
# A publish puts again (its lookup now sees the newer seq) while an older item still wins.
PUT_ATTEMPTS = 3
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
        return self._put(identity, message)

    def revoke(self, identity: Identity) -> Published:
        """Supersede whatever is published with an empty packet."""
        return self._put(identity, packet.revocation_message())

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

    def _put(self, identity: Identity, message: bytes) -> Published:
        """Put the message; put again while a lookup beside the put still finds an older record winning."""
        deadline = time.monotonic() + PUT_TIMEOUT
        with dht.Dht(self.bootstrap, state_file=self.state_file) as node:
            for _ in range(PUT_ATTEMPTS):
                stored = node.put(identity.public_key.raw, identity.expanded_secret(), message, timeout=_left(deadline))
                if _superseded(stored, message) or _left(deadline) < 1:
                    break
        return Published(seq=stored.seq, nodes=stored.nodes)

    def _get(self, publisher: PublicKey) -> dht.MutableItem | None:
        with dht.Dht(self.bootstrap, state_file=self.state_file) as node:
            return node.get(publisher.raw, timeout=GET_TIMEOUT)


def _left(deadline: float) -> float:
    return max(0.0, deadline - time.monotonic())


def _superseded(stored: dht.Stored, message: bytes) -> bool:
    """Whether the put beat everything the lookup beside it found.

    libtorrent signs seq = the highest it saw + 1, so a put whose lookup
    missed the newest item does not supersede it: that item then has a seq
    at least as high as ours. (The lookup may also find our own new item.)
    """
    found = stored.found
    return found is None or found.value == message or found.seq < stored.seq


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
