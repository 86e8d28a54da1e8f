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
from typing import TYPE_CHECKING

from cclink.flows.keystore import KeyStore

if TYPE_CHECKING:
    from cclink.net.endpoints import Network
    from cclink.net.record_store import RecordStore
    from cclink.net.seq_memory import SeqMemory


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

    @classmethod
    def of_this_process(cls, network: Network) -> Environment:
        import socket

        from cclink.net.record_store import RecordStore
        from cclink.net.seq_memory import SeqMemory

        records = RecordStore.on_dht(network)
        keys = KeyStore.default()
        return cls(Path.cwd(), socket.gethostname(), time.time, keys, records, network, SeqMemory.of_pickups())
