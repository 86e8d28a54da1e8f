"""What a flow may know of the machine and the world: handed in, never read from globals.

The CLI builds one from the process (`Environment.of_this_process`); tests
build one with a fixed clock, a key under a temporary directory and an
in-memory record store.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cclink.flows.keystore import KeyStore

if TYPE_CHECKING:
    from cclink.net.endpoints import Network
    from cclink.net.record_store import RecordStore


@dataclass(frozen=True)
class Environment:
    cwd: Path
    hostname: str
    clock: Callable[[], float]  # seconds since the epoch, as time.time
    keys: KeyStore
    records: RecordStore  # where handoff records are published and found
    network: Network  # the DHT and BitTorrent peers a carried session travels through

    @classmethod
    def of_this_process(cls, network: Network) -> Environment:
        import socket
        import time

        from cclink.net.record_store import RecordStore

        return cls(
            Path.cwd(), socket.gethostname(), time.time, KeyStore.default(), RecordStore.on_dht(network), network
        )
