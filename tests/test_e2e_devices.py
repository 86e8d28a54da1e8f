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
from support.carry import READY, finish, wait_for_line
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


def test_three_paired_machines_and_a_long_project_path_every_device_picks_up_and_revoke_ends_it_all(
    machines, short_dir: Path
) -> None:
    alpha, beta, gamma = machines("alpha"), machines("beta"), machines("gamma")
    keys = {machine: machine.init() for machine in (alpha, beta, gamma)}
    for machine in keys:
        for other, key in keys.items():
            if other is not machine:
                add_contact(machine, other.name, key)
    # 70 characters: beside your own key the record has room for one device; gamma gets a copy of its own.
    project = short_dir / ("p" * (70 - len(str(short_dir)) - 1))
    project.mkdir()
    session_id = alpha.add_session(project)

    shown = alpha.ok(cwd=project).stdout
    assert "For you and beta, gamma (a copy of its own for gamma on " in shown, shown
    data = json.loads(alpha.ok("--json", cwd=project).stdout)

    assert data["devices"] == ["beta", "gamma"]
    [item] = data["device_items"]
    assert item["device"] == "gamma" and item["nodes"] > 0, data
    by_name = json.loads(gamma.ok("pickup", "alpha", "--json").stdout)  # alpha's key and its item for gamma
    assert (by_name["session_id"], by_name["from"]) == (session_id, "alpha")
    for machine in (beta, gamma):
        machine.add_session(machine.project("app"), session_id)
        picked = machine.ok("pickup", "-y")
        assert f"Resuming session {session_id} from alpha..." in picked.stderr, describe(picked)
        assert resumed(machine, session_id) == machine.project("app")

    listed = alpha.ok("list")
    assert "Copies:    1 copy for paired devices the record had no room for" in listed.stdout, describe(listed)
    revoked = alpha.ok("revoke", "-y")
    assert "Revoked, and the copies left for gamma." in revoked.stdout, describe(revoked)
    assert "No handoff is published under your key and alpha, beta." in error_line(gamma.run("pickup", "-y"), 7)


def test_a_session_carried_to_a_device_with_an_item_of_its_own_is_fetched_and_acknowledged(
    laptop: Machine, desktop: Machine, short_dir: Path
) -> None:
    laptop_key, desktop_key = laptop.init(), desktop.init()
    add_contact(laptop, "desktop", desktop_key)
    add_contact(desktop, "laptop", laptop_key)
    # 60 characters: with --carry the record has room for no device beside your own key.
    project = short_dir / ("p" * (60 - len(str(short_dir)) - 1))
    project.mkdir()
    session_id = laptop.add_session(project)
    publisher = laptop.spawn("--carry", "--json", cwd=project)
    wait_for_line(publisher, READY)

    picked = desktop.ok("pickup", "-y", "--project-dir", str(desktop.project("app")))

    assert f"Resuming session {session_id} from laptop..." in picked.stderr, describe(picked)
    assert resumed(desktop, session_id) == desktop.project("app")
    code, out, err = finish(publisher)
    assert code == 0 and "The session was fetched" in err, err
    assert [item["device"] for item in json.loads(out)["device_items"]] == ["desktop"]


def test_a_burn_handoff_carried_to_a_device_with_an_item_of_its_own_is_gone_once_fetched(
    laptop: Machine, desktop: Machine, short_dir: Path
) -> None:
    laptop_key, desktop_key = laptop.init(), desktop.init()
    add_contact(laptop, "desktop", desktop_key)
    add_contact(desktop, "laptop", laptop_key)
    project = short_dir / ("p" * (60 - len(str(short_dir)) - 1))  # no room for the desktop beside --carry
    project.mkdir()
    session_id = laptop.add_session(project)
    publisher = laptop.spawn("--carry", "--burn", cwd=project)
    try:
        wait_for_line(publisher, READY)
        picked = desktop.ok("pickup", "-y", "--project-dir", str(desktop.project("app")))
    finally:
        code, _, err = finish(publisher)

    assert "Burn-after-read: the handoff laptop left for this machine was revoked." in picked.stderr, describe(picked)
    assert resumed(desktop, session_id) == desktop.project("app")
    assert code == 0 and "The session was fetched" in err, err
    # Neither the record (revoked by the laptop) nor the desktop's item (by the desktop) is there to pick up again.
    again = error_line(desktop.run("pickup", "--json"), 7)
    assert "No handoff is published under your key and laptop" in again
    by_name = error_line(desktop.run("pickup", "laptop", "--json"), 7)
    assert "the last one was revoked" in by_name
