"""What a flow may know of the machine and the world: handed in, never read from globals.

The CLI builds one from the process (`Environment.of_this_process`); tests
build one with a fixed clock, a key under a temporary directory and an
in-memory record store.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from cclink.flows.keystore import KeyStore
from cclink.wire.contacts import ContactBook

if TYPE_CHECKING:
    from cclink.net import krpc
    from cclink.net.endpoints import Network
    from cclink.net.record_store import RecordStore
    from cclink.net.seq_memory import SeqMemory
    from cclink.wire.agent_protocol import Transfer
    from cclink.wire.keys import PublicKey


class Keeper(Protocol):
    """What keeps a published item alive after the command ends: the agent (net/agent.py), or nothing."""

    def keep(self, publisher: PublicKey, item: krpc.Item, expires_at: float) -> str | None:
        """Take item (signed, as put) to put again until expires_at; None, or a sentence saying why it will not."""
        ...

    def carry(self, transfer: Transfer, archive: Path) -> str | None:
        """Offer the encrypted file at archive as transfer says, instead of the command; None once it does.

        Else why not: a sentence, or '' when there is no agent to ask (CCLINK_AGENT=off).
        """
        ...


class NoKeeper:
    """Keeps nothing: with CCLINK_AGENT=off, and for flows under test that do not look."""

    def keep(self, publisher: PublicKey, item: krpc.Item, expires_at: float) -> str | None:
        return None

    def carry(self, transfer: Transfer, archive: Path) -> str | None:
        return ""


@dataclass(frozen=True)
class Environment:
    cwd: Path
    hostname: str
    clock: Callable[[], float]  # seconds since the epoch, as time.time
    keys: KeyStore
    records: RecordStore  # where handoff records are published and found
    network: Network  # the DHT and BitTorrent peers a carried session travels through
    pickups: SeqMemory  # per publisher, the seq of the last handoff picked up here (pickup --wait)
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)
    keeper: Keeper = field(default_factory=NoKeeper, repr=False)  # the agent that keeps published items alive
    contacts: ContactBook = field(default_factory=ContactBook.default, repr=False)  # paired devices and colleagues

    @classmethod
    def of_this_process(cls, network: Network) -> Environment:
        import socket

        from cclink.net import agent, relays
        from cclink.net.seq_memory import SeqMemory

        records = relays.record_store(network)
        keys = KeyStore.default(unlocked=agent.unlocked_keys(network))
        keeper = agent.keeper(network) or NoKeeper()
        pickups = SeqMemory.of_pickups()
        return cls(Path.cwd(), socket.gethostname(), time.time, keys, records, network, pickups, keeper=keeper)
