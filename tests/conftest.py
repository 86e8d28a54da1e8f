"""Fixtures: a local DHT swarm, machines that run the real `cclink` command on it, desks that run flows in
process over an in-memory DHT, and short project paths.

The helpers behind them are in the support package (tests/support/): a
`Machine` is cclink.dev.machine's, a HOME of its own with a fake `claude` first
on PATH that records its argv and cwd, so a test can see what cclink launched.
Every machine of a test shares one local DHT swarm.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

import pytest
from support.agents import AgentMachine
from support.desks import Clock, Desk
from support.machines import SWARM_NODES, Machine
from support.records import MemoryItems

from cclink.dev.testnet import Testnet


@pytest.fixture(autouse=True)
def private_state_dir(tmp_path_factory, monkeypatch):
    """In-process code keeps what it saw (state, cached contacts) in folders of the test's own, not the developer's."""
    state = tmp_path_factory.mktemp("state")
    monkeypatch.setenv("XDG_STATE_HOME", str(state))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
    if sys.platform == "darwin":  # where files.state_dir does not read XDG_STATE_HOME
        from cclink.local import files

        monkeypatch.setattr(files, "state_dir", lambda: state / "cclink")


@pytest.fixture(scope="session")
def swarm():
    """One local DHT for the whole test session."""
    with Testnet(SWARM_NODES) as net:
        yield net


@pytest.fixture
def machines(tmp_path, swarm):
    """A factory of Machines on the shared swarm: machines("laptop"), machines("desktop")."""

    def make(name: str) -> Machine:
        return Machine(tmp_path, name, swarm.network)

    return make


@pytest.fixture
def agent_machines(tmp_path, swarm):
    """A factory of Machines whose commands start the background agent: agent_machines("laptop"[, network]).

    Every agent they started is stopped when the test ends, however it ended.
    """
    made: list[AgentMachine] = []

    def make(name: str, network=None) -> AgentMachine:
        machine = AgentMachine(tmp_path, name, network or swarm.network)
        made.append(machine)
        return machine

    yield make
    for machine in made:
        machine.stop_agent()


@pytest.fixture
def laptop(machines) -> Machine:
    return machines("laptop")


@pytest.fixture
def desktop(machines) -> Machine:
    return machines("desktop")


@pytest.fixture
def paired(laptop, desktop) -> tuple[Machine, Machine]:
    """Two machines holding the same key, as after `cclink init --import` on the second."""
    laptop.init()
    desktop.init(import_from=laptop.key_file)
    return laptop, desktop


@pytest.fixture
def short_dir():
    """Projects to carry live here, not under pytest's long temporary paths.

    A handoff must fit in one 1000-byte DHT item, and a carried one spends
    about a hundred of those bytes on where to fetch the session; a project
    path of pytest's length (80 characters and more) leaves too little for
    --share. Real project paths are shorter.
    """
    path = Path(tempfile.mkdtemp(prefix="cc", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def desks(tmp_path, monkeypatch):
    """A factory of Desks (flows run in process) sharing one in-memory DHT and one clock: desks("laptop")."""
    items, clock = MemoryItems(), Clock(time.time())

    def make(name: str) -> Desk:
        return Desk(tmp_path, name, items, clock, monkeypatch)

    return make
