"""Machines for flows run in process: a HOME, a key, a clock and an Environment over an in-memory DHT.

A `Desk` is the in-process twin of a Machine: the same HOME with Claude Code
sessions and a stand-in `claude` (it is a dev Machine underneath), but its
flows run in the test's own process against a RecordStore over MemoryItems
that every desk of a test shares. Claude Code's files are found through HOME
and `claude` through PATH, which are the process's: building a desk's
environment makes it the desk the process sees.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from cclink.dev.machine import Machine
from cclink.flows import publish
from cclink.flows.environment import Environment
from cclink.flows.keystore import KeyStore
from cclink.flows.publish import PublishOutcome, PublishRequest
from cclink.net.endpoints import Network
from cclink.net.record_store import RecordStore
from cclink.net.seq_memory import SeqMemory
from cclink.wire import keyfile
from cclink.wire.keys import Identity
from support.records import MemoryItems
from support.ui import ScriptedUI

# Flows that need no BitTorrent never reach it; a carried session would find nothing listening here.
UNUSED_NETWORK = Network((("127.0.0.1", 9),), test=True)


@dataclass
class Clock:
    """Wall-clock time that moves only when the test says so, or when a flow sleeps."""

    now: float
    slept: list[float] = field(default_factory=list)
    _planned: list[tuple[float, Callable[[], object]]] = field(default_factory=list)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
        due = [plan for plan in self._planned if plan[0] <= self.now]
        self._planned = [plan for plan in self._planned if plan[0] > self.now]
        for _, action in sorted(due, key=lambda plan: plan[0]):
            action()

    def sleep(self, seconds: float) -> None:
        """A flow's sleep: no real waiting, the clock moves on and what was planned for then happens."""
        self.slept.append(seconds)
        self.advance(seconds)

    def after(self, seconds: float, action: Callable[[], object]) -> None:
        """Do action once the clock has moved on by seconds (another machine publishing meanwhile, say)."""
        self._planned.append((self.now + seconds, action))


class Desk:
    def __init__(
        self, root: Path, name: str, items: MemoryItems, clock: Clock, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        self.machine = Machine(root, name, log_claude=True)
        self.items = items
        self.clock = clock
        self.keys = KeyStore(self.machine.key_file)
        self.records = RecordStore(items, SeqMemory.in_memory())
        self.pickups = SeqMemory.in_memory()
        self._monkeypatch = monkeypatch

    @property
    def home(self) -> Path:
        return self.machine.home

    def make_key(self, passphrase: str | None = None) -> Identity:
        identity = Identity.generate()
        self.use_key(identity, passphrase)
        return identity

    def use_key(self, identity: Identity, passphrase: str | None = None) -> None:
        keyfile.save_identity(self.keys.path, identity, passphrase)

    def add_session(
        self,
        project: Path | None = None,
        session_id: str | None = None,
        *,
        age: float = 0,
        summary: str | None = "a test session",
        messages: tuple[tuple[str, str], ...] = (("user", "hi"),),
    ) -> str:
        project = project or self.machine.project()
        return self.machine.add_session(project, session_id, age=age, summary=summary, messages=messages)

    def env(self, cwd: Path | None = None, network: Network = UNUSED_NETWORK) -> Environment:
        """This desk's environment, in cwd (the default project); the process now sees this desk's HOME and PATH."""
        self._monkeypatch.setenv("HOME", str(self.home))
        self._monkeypatch.setenv("PATH", self.machine.env["PATH"])
        return Environment(
            cwd or self.machine.project(),
            self.machine.name,
            self.clock,
            self.keys,
            self.records,
            network,
            self.pickups,
            self.clock.sleep,
        )

    def publish_new_session(
        self, request: PublishRequest | None = None, secrets: tuple[str, ...] = ()
    ) -> PublishOutcome:
        """Add a session and publish it as request says (default: cclink with no options); what publish returned."""
        request = replace(request or PublishRequest(), session_id=self.add_session())
        with publish.publish(request, ScriptedUI.answering(secrets=secrets), self.env()) as publication:
            return publication.outcome
