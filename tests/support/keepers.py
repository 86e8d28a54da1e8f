"""Keepers for flows run in process, and signed items for the agent's keeping to keep.

`MemoryKeeper` is the flows' Keeper as a list of what was handed over (and,
if told, a refusal to say). `handoff_item` and `revocation_item` publish
through a real RecordStore over MemoryItems and return what the DHT holds
as the agent's protocol carries it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from cclink.net import krpc
from cclink.net.record_store import RecordStore
from cclink.net.seq_memory import SeqMemory
from cclink.wire.agent_protocol import Item, Transfer
from cclink.wire.keys import Identity, PublicKey
from cclink.wire.record import new_record
from support.records import MemoryItems


@dataclass(frozen=True)
class Handed:
    publisher: PublicKey
    item: krpc.Item
    expires_at: float


@dataclass
class MemoryKeeper:
    refusal: str | None = None  # what keep() says, as an agent that would not keep it
    handed: list[Handed] = field(default_factory=list)

    def keep(self, publisher: PublicKey, item: krpc.Item, expires_at: float) -> str | None:
        self.handed.append(Handed(publisher, item, expires_at))
        return self.refusal

    def carry(self, transfer: Transfer, archive: Path) -> str | None:
        return self.refusal if self.refusal is not None else "a MemoryKeeper offers no carried sessions"


def handoff_item(identity: Identity, items: MemoryItems, now: float, *, ttl: int = 86400) -> Item:
    """Publish a handoff of identity's on items; the item the nodes hold, with its record's expiry."""
    record = new_record(identity, b"sealed payload", ttl=ttl, now=now)
    RecordStore(items, SeqMemory.in_memory()).publish(identity, record)
    return as_kept(identity, items, record.expires_at)


def revocation_item(identity: Identity, items: MemoryItems, expires_at: int, seen: SeqMemory | None = None) -> Item:
    """Revoke identity's handoff on items; the revocation the nodes hold, to keep until expires_at."""
    RecordStore(items, seen or SeqMemory.in_memory()).revoke(identity)
    return as_kept(identity, items, expires_at)


def as_kept(identity: Identity, items: MemoryItems, expires_at: int) -> Item:
    held = items.items[identity.public_key.raw]
    return Item(identity.public_key.raw, held.seq, held.signature, held.value, expires_at)
