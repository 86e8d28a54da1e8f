"""End-to-end: `cclink pair` between separate HOMEs on the local DHT swarm, in scripts and on terminals.

Keys, SPAKE2, the DHT and the contacts files under each HOME are real.
"""

from __future__ import annotations

import json
import os
import re
import subprocess

import pytest
from support import qr, terminal
from support.machines import Machine

pytestmark = pytest.mark.e2e

GUARD = 120  # seconds: a guard against hangs, never a measurement
CODE = re.compile(r"^\d{1,4}-[a-z]+-[a-z]+$")


def devices(machine: Machine) -> list[dict]:
    return json.loads(machine.ok("devices", "--json").stdout)["devices"]


def offer_code(process: subprocess.Popen) -> str:
    """The code `cclink pair` prints, alone on the first line of its stdout."""
    assert process.stdout is not None
    line = process.stdout.readline()
    assert CODE.match(line.strip()), line
    return line.strip()


def finish(process: subprocess.Popen) -> tuple[str, str]:
    out, err = process.communicate(timeout=GUARD)
    assert process.returncode == 0, f"exit {process.returncode}\n{out}\n{err}"
    return out, err


def test_two_machines_pair_in_scripts_and_list_each_other(laptop: Machine, desktop: Machine) -> None:
    laptop_key, desktop_key = laptop.init(), desktop.init()
    # Both HOMEs are on this one host, under one hostname: --name tells them apart.
    offering = laptop.spawn("pair", "-y", "--name", "desktop")
    code = offer_code(offering)

    joined = desktop.ok("pair", code, "-y", "--name", "laptop")
    rest, said = finish(offering)

    assert rest == ""  # the code was all A wrote on stdout
    assert f"cclink pair {code}" in said and f"Paired with desktop (pk:{desktop_key}) as a device of yours." in said
    assert f"Paired with laptop (pk:{laptop_key}) as a device of yours." in joined.stdout
    verification = re.search(r"Verification: (\w+ \w+ \w+)", said)
    assert verification and verification.group(1) in joined.stderr
    assert [(d["name"], d["kind"], d["key"]) for d in devices(laptop)] == [("desktop", "device", f"pk:{desktop_key}")]
    assert [(d["name"], d["kind"], d["key"]) for d in devices(desktop)] == [("laptop", "device", f"pk:{laptop_key}")]
    contacts = laptop.home / ".pubky" / "cclink-contacts.json"
    assert contacts.stat().st_mode & 0o777 == 0o600


def test_the_code_as_a_qr_code_and_a_code_nobody_uses(laptop: Machine) -> None:
    laptop.init()
    offering = laptop.spawn("pair", "-y", "--qr", "--timeout", "1")
    code = offer_code(offering)
    _, said = offering.communicate(timeout=GUARD)

    assert offering.returncode == 7 and "did not answer in time; nothing was paired" in said
    assert qr.decode(qr.qr_lines(said), qr.DARK) == [code]
    late = laptop.run("pair", code, "-y")
    assert late.returncode == 7 and "already used, or given up" in late.stderr


def test_the_code_from_the_environment_and_a_wrong_code(laptop: Machine, desktop: Machine) -> None:
    laptop.init()
    desktop.init()
    offering = laptop.spawn("pair", "-y", "--colleague", "--name", "bob")
    code = offer_code(offering)
    nameplate = code.split("-")[0]

    wrong = desktop.run("pair", "-y", "--colleague", env={"CCLINK_PAIR_CODE": f"{nameplate}-zulu-yucatan"})
    if code == f"{nameplate}-zulu-yucatan":
        pytest.skip("the random code happened to be the wrong one")
    _, err = offering.communicate(timeout=GUARD)

    assert wrong.returncode == offering.returncode == 6, f"{wrong.stderr}\n{err}"
    for said in (wrong.stderr, err):
        assert "The code was wrong, or someone tried to guess it; nothing was paired." in said
        assert "Traceback" not in said
    assert devices(laptop) == devices(desktop) == []


def test_devices_rename_and_remove(laptop: Machine, desktop: Machine) -> None:
    laptop.init()
    desktop.init()
    offering = laptop.spawn("pair", "-y", "--name", "desktop")
    desktop.ok("pair", offer_code(offering), "-y")
    finish(offering)

    laptop.ok("devices", "rename", "desktop", "tower")
    listed = laptop.ok("devices").stdout
    assert re.match(r"^tower +device +pk:[a-z0-9]{52} +added ", listed), listed
    refused = laptop.run("devices", "remove", "tower")
    assert refused.returncode == 2 and "pass -y" in refused.stderr
    laptop.ok("devices", "remove", "tower", "-y")
    assert devices(laptop) == []
    missing = laptop.run("devices", "remove", "tower", "-y")
    assert missing.returncode == 2 and "no device or contact named 'tower'" in missing.stderr


def test_two_people_pair_on_terminals(laptop: Machine, desktop: Machine) -> None:
    laptop.init()
    desktop.init()
    a_command, b_command = (
        laptop.command("pair", "--name", "desktop"),
        desktop.command("pair", "--join", "--name", "laptop"),
    )
    a, a_terminal = terminal.start_on_terminal(a_command, env=laptop.env, cwd=laptop.home)
    b, b_terminal = terminal.start_on_terminal(b_command, env=desktop.env, cwd=desktop.home)
    try:
        shown = re.search(r"cclink pair (\d+-[a-z]+-[a-z]+)", terminal.wait_for(a_terminal, "(good for"))
        assert shown, "A showed no code"
        code = shown.group(1)
        terminal.wait_for(b_terminal, "Code shown on the other machine: ")
        os.write(b_terminal, code.encode() + b"\r")
        asked_a = terminal.wait_for(a_terminal, "[y/N]")
        os.write(a_terminal, b"y\r")
        asked_b = terminal.wait_for(b_terminal, "[y/N]")
        os.write(b_terminal, b"y\r")
        terminal.wait_for(a_terminal, "Paired with")
        terminal.wait_for(b_terminal, "Paired with")
        assert a.wait(GUARD) == 0 and b.wait(GUARD) == 0
    finally:
        for process, master in ((a, a_terminal), (b, b_terminal)):
            os.close(master)
            if process.poll() is None:
                process.kill()
                process.wait()

    assert code not in asked_b  # typed without echo
    words_a = re.search(r"Verification: (\w+ \w+ \w+)", asked_a)
    words_b = re.search(r"Verification: (\w+ \w+ \w+)", asked_b)
    assert words_a and words_b and words_a.group(1) == words_b.group(1)
    assert "every handoff you publish" in asked_a
    assert [d["name"] for d in devices(laptop)] == ["desktop"] and [d["name"] for d in devices(desktop)] == ["laptop"]
