"""End-to-end: machines with keys of their own, paired as devices, hand sessions back and forth with plain
`cclink` and `cclink pickup` on the local DHT swarm; a machine they are not paired with reads nothing.

Pairing itself (`cclink pair`) is tested on its own: here each HOME's contacts file names the other
machine's key as a device, as pairing leaves it.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
from support.machines import Machine

from cclink.wire import contacts
from cclink.wire.contacts import Contact, ContactBook
from cclink.wire.keys import PublicKey

pytestmark = pytest.mark.e2e

ERROR_PREFIX = "cclink: error:"


def describe(result: subprocess.CompletedProcess) -> str:
    return f"exit {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"


def error_line(result: subprocess.CompletedProcess, code: int) -> str:
    """The one error line of a clean failure with exit code code."""
    assert result.returncode == code, describe(result)
    assert "Traceback" not in result.stderr, describe(result)
    [line] = [line for line in result.stderr.splitlines() if line.startswith(ERROR_PREFIX)]
    return line


def add_contact(machine: Machine, name: str, key: str, kind: contacts.Kind = "device") -> None:
    book = ContactBook(machine.key_file.parent / contacts.FILE_NAME)
    book.add(Contact(name, PublicKey.parse(key), kind, int(time.time())))


def resumed(machine: Machine, session_id: str) -> Path:
    """The directory of the one `claude --resume session_id` the machine started."""
    [launch] = machine.launches()
    assert launch.argv == [f"--resume={session_id}"]
    return Path(launch.cwd)


@pytest.fixture
def stranger(machines) -> Machine:
    return machines("stranger")


def test_paired_machines_hand_sessions_both_ways_and_an_unpaired_one_reads_nothing(
    laptop: Machine, desktop: Machine, stranger: Machine
) -> None:
    laptop_key, desktop_key, stranger_key = laptop.init(), desktop.init(), stranger.init()
    assert len({laptop_key, desktop_key, stranger_key}) == 3
    add_contact(laptop, "desktop", desktop_key)
    add_contact(desktop, "laptop", laptop_key)

    # laptop -> desktop
    project = laptop.project("app")
    session_id = laptop.add_session(project)
    desktop.add_session(desktop.project("app"), session_id)
    published = laptop.ok(cwd=project)
    assert "For you and desktop." in published.stdout, describe(published)
    assert "cclink pickup" in [line.strip() for line in published.stdout.splitlines()]

    picked = desktop.ok("pickup", "-y")
    assert f"Resuming session {session_id} from laptop..." in picked.stderr, describe(picked)
    assert resumed(desktop, session_id) == desktop.project("app")

    # desktop -> laptop, in JSON
    back_id = desktop.add_session(desktop.project("app"))
    laptop.add_session(project, back_id)
    data = json.loads(desktop.ok("--json", cwd=desktop.project("app")).stdout)
    assert (data["mode"], data["devices"], data["recipient"]) == ("self", ["laptop"], None)
    assert data["qr_command"] == f"cclink pickup {desktop_key}"
    picked_back = json.loads(laptop.ok("pickup", "--json").stdout)
    assert (picked_back["session_id"], picked_back["from"]) == (back_id, "desktop")
    assert picked_back["publisher"] == f"pk:{desktop_key}"

    # The stranger, paired with nobody, finds nothing under its own key and cannot open either handoff.
    nothing = error_line(stranger.run("pickup", "-y"), 7)
    assert "run `cclink pair` here and `cclink pair CODE`" in nothing
    for key in (laptop_key, desktop_key):
        refused = error_line(stranger.run("pickup", key, "-y"), 6)
        assert "not to this machine" in refused
    assert stranger.launches() == []


def test_share_and_pickup_take_a_contacts_name(laptop: Machine, stranger: Machine) -> None:
    laptop_key, stranger_key = laptop.init(), stranger.init()
    add_contact(laptop, "sam", stranger_key, kind="contact")
    add_contact(stranger, "lee", laptop_key, kind="contact")
    project = laptop.project("app")
    session_id = laptop.add_session(project)
    stranger.add_session(stranger.project("app"), session_id)

    shared = laptop.ok("--share", "sam", cwd=project)
    assert f"Shared with sam (pk:{stranger_key})." in shared.stdout, describe(shared)

    picked = stranger.ok("pickup", "lee", "-y")
    assert f"Resuming session {session_id} from lee..." in picked.stderr, describe(picked)
    unknown = error_line(stranger.run("pickup", "nobody", "-y"), 2)
    assert "no device or contact named 'nobody'" in unknown
