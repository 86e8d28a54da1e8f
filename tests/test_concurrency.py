"""Many publishers at once on one local swarm: every handoff lands, intact and under its own key.

Fifty `cclink` processes publish at the same moment, each from a HOME with a
key of its own, then fifty `cclink pickup --json` run at the same moment;
each must return the session its own key published. Processes (not threads)
because that is what users run: each is its own DHT client, and all of them
meet the swarm's 8 nodes at once. All fifty really start together: on 2
cores a batch takes seconds, nearly all of it the fifty starts of Python, so
no bound is needed.
"""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from support.machines import SWARM_NODES, Machine

from cclink.dev.testnet import Testnet
from cclink.wire import keyfile
from cclink.wire.keys import Identity

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

PUBLISHERS = 50
# Every publish (or pickup) of the batch must be done by then; they run side by side.
BATCH_DEADLINE = 240.0


@pytest.fixture(scope="module")
def own_swarm():
    """A swarm of this module's own: fifty publishers at once load its nodes.

    The swarm the other tests share need not see that load.
    """
    with Testnet(SWARM_NODES) as net:
        yield net


@pytest.fixture
def machines(tmp_path, own_swarm):
    """Machines on this module's own swarm (shadows the shared fixture of conftest)."""
    return lambda name: Machine(tmp_path, name, own_swarm.network)


@dataclass(frozen=True)
class Publisher:
    machine: Machine
    project: Path
    session_id: str
    public_key: str  # as cclink displays it: pk:<z32>


def new_publisher(machines, index: int) -> Publisher:
    """A HOME with a fresh unencrypted key (written through keyfile, as `cclink init` does) and one session."""
    machine = machines(f"publisher{index:02d}")
    identity = Identity.generate()
    keyfile.save_identity(machine.key_file, identity, None)
    project = machine.project()
    return Publisher(machine, project, machine.add_session(project), identity.public_key.display)


def run_side_by_side(jobs: list[tuple[Machine, list[str], Path]]) -> list[subprocess.CompletedProcess]:
    """Start every `cclink args` at once (no terminal), then collect them all before a common deadline."""
    started = [
        (
            args,
            machine.spawn(*args, cwd=cwd),
        )
        for machine, args, cwd in jobs
    ]
    deadline = time.monotonic() + BATCH_DEADLINE
    results = []
    try:
        for args, process in started:
            stdout, stderr = process.communicate(timeout=max(1.0, deadline - time.monotonic()))
            results.append(subprocess.CompletedProcess(args, process.returncode, stdout, stderr))
    finally:
        for _, process in started:
            if process.poll() is None:
                process.kill()
                process.communicate()
    return results


def describe(result: subprocess.CompletedProcess) -> str:
    return f"cclink {' '.join(result.args)} exited {result.returncode}\n{result.stdout}\n{result.stderr}"


def test_fifty_simultaneous_publishers_each_pick_up_their_own_record(machines) -> None:
    publishers = [new_publisher(machines, index) for index in range(PUBLISHERS)]

    published = run_side_by_side([(p.machine, ["publish", "--json"], p.project) for p in publishers])
    for publisher, result in zip(publishers, published, strict=True):
        assert result.returncode == 0, describe(result)
        outcome = json.loads(result.stdout)
        assert (outcome["publisher"], outcome["session_id"]) == (publisher.public_key, publisher.session_id)
        assert outcome["nodes"] >= 1

    picked = run_side_by_side([(p.machine, ["pickup", "--json"], p.machine.home) for p in publishers])
    for publisher, result in zip(publishers, picked, strict=True):
        assert result.returncode == 0, describe(result)
        handoff = json.loads(result.stdout)
        assert handoff["publisher"] == publisher.public_key
        assert handoff["session_id"] == publisher.session_id
        assert handoff["project"] == str(publisher.project)
        assert handoff["session_on_this_machine"] is True
    # Fifty different keys make fifty different records: no pickup saw another's.
    assert len({json.loads(result.stdout)["session_id"] for result in picked}) == PUBLISHERS
