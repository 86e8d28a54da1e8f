"""End to end: the background agent with the real `cclink` command on a local DHT swarm.

Machines from `agent_machines` let their commands start the agent, each in a
runtime directory of its own; the fixture stops every agent when the test
ends. Waits are bounded by guards, never asserted on.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from support.agents import AgentMachine
from support.machines import Machine

from cclink.dev.testnet import Testnet
from cclink.net import agent

pytestmark = pytest.mark.e2e

SESSION = "0b7c1f55-6a4e-4d2b-9a51-3f7d2e8c9a10"
GUARD = 60.0  # seconds: a guard against hangs, never a measurement


def publish(machine: Machine, *args: str) -> dict:
    return json.loads(machine.ok("--missing-ok", SESSION, "--json", *args).stdout)


def status(machine: Machine) -> dict:
    return json.loads(machine.ok("status", "--json").stdout)


def eventually(check: Callable[[], bool], what: str) -> None:
    give_up = time.monotonic() + GUARD
    while not check():
        assert time.monotonic() < give_up, f"never: {what}"
        time.sleep(0.1)


def ended(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] == "Z"
    except OSError:
        return False


def test_publish_starts_the_agent_which_keeps_the_handoff_until_stopped(agent_machines) -> None:
    laptop: AgentMachine = agent_machines("laptop")
    key = laptop.init()

    published = publish(laptop)

    pid = laptop.agent_pid(wait=GUARD)
    assert pid is not None
    shown = status(laptop)
    assert shown["running"] and shown["pid"] == pid
    (kept,) = shown["kept"]
    assert (kept["publisher"], kept["kind"], kept["seq"]) == (f"pk:{key}", "handoff", published["seq"])
    assert kept["expires_at"] == published["expires_at"]
    text = laptop.ok("status").stdout
    assert f"pk:{key}: handoff, seq {published['seq']}" in text and "Next put: in" in text

    again = laptop.ok("agent")
    assert f"already running (pid {pid})" in again.stdout

    assert laptop.ok("agent", "stop").stdout.strip() == "Stopped the agent."
    eventually(lambda: ended(pid), "the agent ended")
    assert laptop.ok("status").stdout.startswith("No agent is running.")
    assert laptop.ok("agent", "stop").stdout.strip() == "No agent is running."


def test_revoke_hands_the_revocation_to_the_agent(agent_machines) -> None:
    laptop: AgentMachine = agent_machines("laptop")
    laptop.init()
    published = publish(laptop)
    assert laptop.agent_pid(wait=GUARD) is not None

    laptop.ok("revoke", "-y")

    (kept,) = status(laptop)["kept"]
    assert kept["kind"] == "revocation" and kept["seq"] > published["seq"]
    assert kept["expires_at"] == published["expires_at"]


def test_the_agent_puts_the_handoff_again_on_a_dht_that_lost_it(agent_machines, machines, tmp_path) -> None:
    with Testnet(8) as first:
        port = first.port
        network = first.network
        laptop: AgentMachine = agent_machines("laptop", network)
        laptop.extra_env[agent.REPUBLISH_ENV] = "0.5"
        laptop.init()
        publish(laptop)
        assert laptop.agent_pid(wait=GUARD) is not None
    desktop = Machine(tmp_path, "desktop", network)
    desktop.ok("init", "--no-passphrase", "--import", str(laptop.key_file))

    with Testnet(8, port) as restarted:  # the same bootstrap node, and nodes that hold nothing
        assert restarted.network == network

        def picked_up() -> bool:
            return desktop.run("pickup", "--json").returncode == 0

        eventually(picked_up, "the agent put the handoff on the restarted DHT")
        (kept,) = status(laptop)["kept"]
        assert kept["nodes"] and kept["last_put"] is not None
        laptop.stop_agent()


def test_the_agent_survives_the_terminal_closing(agent_machines) -> None:
    laptop: AgentMachine = agent_machines("laptop")
    laptop.init()
    command = " ".join(f"'{word}'" for word in laptop.command("--missing-ok", SESSION))
    # A terminal's shell: the leader of its own session and process group, which a closing terminal SIGHUPs.
    shell = subprocess.Popen(
        ["sh", "-c", f"{command} >/dev/null 2>&1; exec sleep {GUARD}"],
        env=laptop.env,
        cwd=laptop.home,
        start_new_session=True,
    )
    try:
        pid = laptop.agent_pid(wait=GUARD)
        assert pid is not None
        assert os.getsid(pid) != shell.pid and os.getpgid(pid) != shell.pid

        os.killpg(shell.pid, signal.SIGHUP)
        shell.wait(GUARD)
    finally:
        if shell.poll() is None:
            shell.kill()
            shell.wait()

    assert shell.returncode == -signal.SIGHUP
    assert status(laptop)["pid"] == pid


def test_after_a_reboot_the_next_command_resumes_what_is_still_live(agent_machines) -> None:
    laptop: AgentMachine = agent_machines("laptop")
    laptop.init()
    published = publish(laptop)
    first = laptop.agent_pid(wait=GUARD)
    assert first is not None
    os.kill(first, signal.SIGKILL)  # the machine went down without a word to the agent
    eventually(lambda: ended(first), "the agent was killed")
    waiting = laptop.ok("status")
    assert waiting.stdout.startswith("No agent is running.") and "1 item" in waiting.stdout

    laptop.ok("list")

    second = laptop.agent_pid(wait=GUARD)
    assert second is not None and second != first
    (kept,) = status(laptop)["kept"]
    assert (kept["kind"], kept["seq"]) == ("handoff", published["seq"])


def test_without_the_agent_a_publish_starts_none(laptop: Machine) -> None:
    laptop.init()
    publish(laptop)
    assert laptop.ok("status").stdout.strip() == "No agent is running."


def test_a_command_goes_on_when_the_agent_cannot_be_started(agent_machines) -> None:
    laptop: AgentMachine = agent_machines("laptop")
    laptop.init()
    state = laptop.home / ".local" / "state"
    state.mkdir(parents=True)
    (state / "cclink").write_text("not a directory")  # nowhere to leave the kept list

    result = laptop.ok("--missing-ok", SESSION)

    assert "Published!" in result.stdout
    notes = [line for line in result.stderr.splitlines() if "agent could not be started" in line]
    assert len(notes) == 1 and notes[0].startswith("Note: "), result.stderr
    assert laptop.agent_pid() is None


def test_status_says_no_agent_when_the_socket_is_someone_elses_leftover(agent_machines) -> None:
    laptop: AgentMachine = agent_machines("laptop")
    place = laptop.place
    place.socket.parent.mkdir(mode=0o700, parents=True)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as stale:
        stale.bind(str(place.socket))  # bound, never listening: what a killed agent leaves
    assert laptop.ok("status").stdout.strip() == "No agent is running."


# --- cclink unlock and cclink lock ---------------------------------------------------------------

PASSPHRASE = "correct horse battery"


def with_encrypted_key(machine: Machine, tmp_path) -> str:
    """Give machine an encrypted key of a seed the test knows; the seed's hex."""
    seed = os.urandom(32).hex()
    plain = tmp_path / f"{machine.name}-plain-key"
    plain.write_text(seed + "\n")
    machine.ok("init", "--import", str(plain), env={"CCLINK_PASSPHRASE": PASSPHRASE})
    plain.unlink()
    return seed


def test_unlocked_commands_ask_no_passphrase_until_locked(agent_machines, tmp_path) -> None:
    laptop: AgentMachine = agent_machines("laptop")
    seed = with_encrypted_key(laptop, tmp_path)
    unlocked = laptop.ok("unlock", env={"CCLINK_PASSPHRASE": PASSPHRASE})
    assert "for 15m" in unlocked.stdout and "`cclink lock`" in unlocked.stdout

    published = publish(laptop)  # no passphrase in the environment, no terminal
    picked = json.loads(laptop.ok("pickup", "--json").stdout)
    assert picked["session_id"] == SESSION and picked["publisher"] == published["publisher"]
    laptop.ok("list")
    shown = status(laptop)
    assert shown["unlocked_until"] is not None and len(shown["kept"]) == 1
    assert "Key: unlocked for another" in laptop.ok("status").stdout

    pid = laptop.agent_pid()
    assert pid is not None
    for leaked in seed.encode(), PASSPHRASE.lower().encode():  # both sides are compared in lower case
        assert leaked not in process_strings(pid), "the seed or passphrase is in the agent's argv or environment"
        assert not files_holding(leaked, laptop.home, laptop.runtime_dir)

    assert laptop.ok("lock").stdout.startswith("Locked: the agent forgot the key")
    refused = laptop.run("--missing-ok", SESSION)
    assert refused.returncode == 2 and "set CCLINK_PASSPHRASE" in refused.stderr
    assert laptop.run("pickup", "--json").returncode == 2
    assert status(laptop)["unlocked_until"] is None
    assert "Key: locked" in laptop.ok("status").stdout
    assert laptop.ok("lock").stdout.strip() == "The key was not unlocked; nothing to lock."


def test_an_unlocked_key_is_forgotten_when_its_time_is_up(agent_machines, tmp_path) -> None:
    laptop: AgentMachine = agent_machines("laptop")
    with_encrypted_key(laptop, tmp_path)

    laptop.ok("unlock", "--for", "1s", env={"CCLINK_PASSPHRASE": PASSPHRASE})

    eventually(lambda: status(laptop)["unlocked_until"] is None, "the key's time ran out")
    assert laptop.run("list").returncode == 2


def test_a_key_file_replaced_after_unlock_is_not_opened_with_the_old_key(agent_machines, tmp_path) -> None:
    laptop: AgentMachine = agent_machines("laptop")
    with_encrypted_key(laptop, tmp_path)
    laptop.ok("unlock", env={"CCLINK_PASSPHRASE": PASSPHRASE})
    replacement = with_encrypted_key_replacing(laptop, tmp_path)

    refused = laptop.run("--missing-ok", SESSION)

    assert refused.returncode == 2 and "set CCLINK_PASSPHRASE" in refused.stderr
    assert laptop.public_key_z32() == replacement  # whoami: noted when the new key was made


def with_encrypted_key_replacing(machine: Machine, tmp_path) -> str:
    plain = tmp_path / f"{machine.name}-replacement"
    plain.write_text(os.urandom(32).hex() + "\n")
    result = machine.ok("init", "-y", "--import", str(plain), env={"CCLINK_PASSPHRASE": PASSPHRASE})
    return result.stdout.split()[2].removeprefix("pk:")


def test_unlock_of_a_key_without_a_passphrase_holds_nothing(agent_machines) -> None:
    laptop: AgentMachine = agent_machines("laptop")
    laptop.init()

    result = laptop.ok("unlock")

    assert "has no passphrase; there is nothing to unlock" in result.stdout
    assert laptop.agent_pid() is None


def test_with_the_agent_off_unlock_fails_and_lock_has_nothing_to_do(laptop: Machine) -> None:
    laptop.ok("init", env={"CCLINK_PASSPHRASE": PASSPHRASE})

    refused = laptop.run("unlock", env={"CCLINK_PASSPHRASE": PASSPHRASE})

    assert refused.returncode == 2 and refused.stdout == ""
    assert refused.stderr.count("\n") == 1 and "CCLINK_AGENT=off" in refused.stderr
    locked = laptop.ok("lock")
    assert locked.stdout.strip() == "No agent is running; nothing to lock."


def test_unlock_refuses_a_duration_over_a_day(agent_machines) -> None:
    laptop: AgentMachine = agent_machines("laptop")
    refused = laptop.run("unlock", "--for", "25h", env={"CCLINK_PASSPHRASE": PASSPHRASE})
    assert refused.returncode == 2 and "up to a day" in refused.stderr


def process_strings(pid: int) -> bytes:
    """What anyone allowed to look sees of a process: its argv and its environment."""
    return (Path(f"/proc/{pid}/cmdline").read_bytes() + b"\0" + Path(f"/proc/{pid}/environ").read_bytes()).lower()


def files_holding(secret: bytes, *roots: Path) -> list[Path]:
    """The files below roots whose bytes contain secret (its hex, either case)."""
    found = []
    for root in roots:
        for path in root.rglob("*"):
            if path.is_file() and not path.is_symlink() and secret.lower() in path.read_bytes().lower():
                found.append(path)
    return found
