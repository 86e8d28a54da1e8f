"""End to end: the background agent with the real `cclink` command on a local DHT swarm.

Machines from `agent_machines` let their commands start the agent, each in a
runtime directory of its own; the fixture stops every agent when the test
ends. Waits are bounded by guards, never asserted on.
"""

from __future__ import annotations

import hashlib
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
from support.carry import finish, short_project, wait_for_line
from support.machines import Machine

from cclink.dev.testnet import Testnet
from cclink.local import files
from cclink.net import agent, bittorrent
from cclink.net.endpoints import Network
from cclink.wire import contacts, packet
from cclink.wire.agent_protocol import Carry, Item, Transfer
from cclink.wire.contacts import Contact, ContactBook
from cclink.wire.keys import Identity, PublicKey
from cclink.wire.record import new_record

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


# --- cclink --carry through the agent ---------------------------------------------------------------


def carrying_pair(agent_machines, machines) -> tuple[AgentMachine, Machine, Path, str]:
    """A laptop whose commands use the agent, with a session to carry; a desktop holding the same key."""
    laptop: AgentMachine = agent_machines("laptop")
    laptop.init()
    desktop = machines("desktop")
    desktop.init(import_from=laptop.key_file)
    project = laptop.project("app")
    session_id = laptop.add_session(project, messages=[("user", "carry me " * 2000)])
    return laptop, desktop, project, session_id


def transfers(machine: Machine) -> list[dict]:
    return status(machine)["transfers"]


def test_carry_returns_at_once_and_the_agent_offers_the_session_until_it_is_fetched(agent_machines, machines) -> None:
    laptop, desktop, project, session_id = carrying_pair(agent_machines, machines)

    published = laptop.ok("--carry", cwd=project)

    assert "The background agent offers the session" in published.stderr and "`cclink status`" in published.stderr
    assert "Seeding" not in published.stderr
    assert list((laptop.home / ".cache" / "cclink" / "outgoing").iterdir()) == []  # its temp dir is gone
    (offered,) = transfers(laptop)
    assert (offered["session_id"], offered["state"]) == (session_id, "offering") and offered["size"] > 0
    shown = laptop.ok("status").stdout
    assert f"Session {session_id}" in shown and "offering" in shown

    desktop.ok("pickup", "-y", "--project-dir", str(desktop.project("app")))

    [launch] = desktop.launches()
    assert session_id in "".join(launch.argv)
    eventually(lambda: [t["state"] for t in transfers(laptop)] in ([], ["fetched"]), "the agent saw it fetched")
    assert list(laptop.place.carry.iterdir()) == []  # the encrypted file is deleted once it is fetched


def test_the_agent_offers_the_session_on_the_port_the_records_hints_name(
    agent_machines, machines, short_dir, tmp_path, monkeypatch
) -> None:
    """The command's seeder, whose endpoints the record names, is gone once it returns: the agent must be there."""
    laptop, desktop, _, _ = carrying_pair(agent_machines, machines)
    project = short_project(short_dir)  # under pytest's long paths the record has no room left for hints
    session_id = laptop.add_session(project, messages=[("user", "carry me " * 2000)])
    laptop.ok("--carry", cwd=project)
    carry = json.loads(desktop.ok("pickup", "--json").stdout)["carry"]
    hints = [bittorrent.parse_endpoint(hint) for hint in carry["hints"]]
    assert hints and None not in hints

    # A picker whose DHT has no node, so that no peer comes from it: only the hints lead to the agent.
    monkeypatch.setenv("HOME", str(tmp_path / "picker"))  # where its libtorrent keeps its DHT cache
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    with bittorrent.Fetcher(
        bytes.fromhex(carry["info_hash"]), carry["size"], tmp_path / "in", a_network_without_nodes(), hints
    ) as fetcher:
        give_up = time.monotonic() + GUARD
        while not fetcher.poll(0.2).finished:
            assert time.monotonic() < give_up, "the hinted port led to no seeder"
        fetcher.flush()
        assert hashlib.sha256(fetcher.path.read_bytes()).hexdigest() == carry["sha256"]

    assert [t["state"] for t in transfers(laptop)] == ["offering"]  # only the recipient's acknowledgement ends it
    desktop.ok("pickup", "-y", "--project-dir", str(desktop.project("app")))
    assert session_id in "".join(desktop.launches()[0].argv)


def a_network_without_nodes() -> Network:
    """A test network on this machine whose bootstrap port nobody listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return Network((("127.0.0.1", port),), test=True)


def test_carry_burn_through_the_agent_leaves_the_handoff_revoked_after_the_pickup(agent_machines, machines) -> None:
    laptop, desktop, project, session_id = carrying_pair(agent_machines, machines)
    laptop.ok("--carry", "--burn", cwd=project)
    assert transfers(laptop)[0]["state"] == "offering"

    desktop.ok("pickup", "-y", "--project-dir", str(desktop.project("app")))

    eventually(lambda: [t["state"] for t in transfers(laptop)] == ["fetched"], "the agent saw it fetched")
    assert desktop.run("pickup", "-y").returncode == 7  # revoked before the transfer counts as fetched
    (ended,) = transfers(laptop)
    assert (ended["session_id"], ended["state"], ended["revoked"]) == (session_id, "fetched", True)
    assert "the burn-after-read handoff was revoked" in laptop.ok("status").stdout
    (kept,) = status(laptop)["kept"]
    assert kept["kind"] == "revocation"  # and the agent keeps the revocation alive


def test_carry_foreground_offers_from_the_command_as_before(agent_machines, machines) -> None:
    laptop, desktop, project, _ = carrying_pair(agent_machines, machines)
    publisher = laptop.spawn("--carry", "--foreground", cwd=project)
    try:
        wait_for_line(publisher, "Offering the session")
        assert laptop.agent_pid() is None  # nothing was handed to an agent

        desktop.ok("pickup", "-y", "--project-dir", str(desktop.project("app")))

        code, _, err = finish(publisher)
        assert code == 0, err
        assert "The session was fetched" in err and "background agent" not in err
    finally:
        if publisher.poll() is None:
            publisher.kill()
            publisher.communicate()


def test_foreground_is_only_for_carry(agent_machines) -> None:
    laptop: AgentMachine = agent_machines("laptop")
    laptop.init()
    refused = laptop.run("--missing-ok", SESSION, "--foreground")
    assert refused.returncode == 2 and "--foreground is for --carry" in refused.stderr


def test_with_the_agent_off_carry_stays_in_the_foreground_without_a_word(paired) -> None:
    laptop, desktop = paired
    project = laptop.project("app")
    laptop.add_session(project)
    publisher = laptop.spawn("--carry", cwd=project)
    try:
        line = wait_for_line(publisher, "Offering the session")
        assert "keep this running" in line

        desktop.ok("pickup", "-y", "--project-dir", str(desktop.project("app")))

        code, _, err = finish(publisher)
        assert code == 0 and "Note:" not in err, err
    finally:
        if publisher.poll() is None:
            publisher.kill()
            publisher.communicate()


def test_a_carry_nobody_fetches_times_out_in_the_agent(agent_machines, machines) -> None:
    laptop, _, project, _ = carrying_pair(agent_machines, machines)

    laptop.ok("--carry", "--carry-timeout", "2", cwd=project)

    eventually(lambda: [t["state"] for t in transfers(laptop)] == ["timed out"], "the transfer timed out")
    assert "stopped: nobody fetched it in time" in laptop.ok("status").stdout
    assert list(laptop.place.carry.iterdir()) == []


def test_after_an_agent_restart_the_carried_session_is_offered_again(agent_machines, machines) -> None:
    laptop, desktop, project, session_id = carrying_pair(agent_machines, machines)
    laptop.ok("--carry", cwd=project)
    first = laptop.agent_pid(wait=GUARD)
    assert first is not None
    os.kill(first, signal.SIGKILL)  # the machine went down without a word to the agent
    eventually(lambda: ended(first), "the agent was killed")
    (directory,) = laptop.place.carry.iterdir()
    assert oct(directory.stat().st_mode & 0o777) == oct(0o700)
    assert {path.name: oct(path.stat().st_mode & 0o777) for path in directory.iterdir()} == {
        "carry.age": oct(0o600),
        "transfer.json": oct(0o600),
    }

    laptop.ok("list")  # any command that uses the network starts the agent again

    second = laptop.agent_pid(wait=GUARD)
    assert second is not None and second != first
    eventually(lambda: [t["state"] for t in transfers(laptop)] == ["offering"], "the new agent offers it")
    desktop.ok("pickup", "-y", "--project-dir", str(desktop.project("app")))
    assert session_id in "".join(desktop.launches()[0].argv)


def test_the_agent_offers_no_file_from_outside_its_own_directory(agent_machines, tmp_path) -> None:
    laptop: AgentMachine = agent_machines("laptop")
    key = Identity(os.urandom(32))
    handoff = signed_handoff(key)
    outside = tmp_path / "secret.txt"
    outside.write_bytes(b"not for peers" * 100)
    laptop.ok("agent")
    place = laptop.place
    transfer = Transfer(SESSION, handoff, None, bytes(20), outside.stat().st_size, bytes(32), bytes(32), 2**40)

    # The protocol names a directory of the agent's by id, and an id is 32 hex digits: no path gets through.
    line = json.dumps({"v": 1, "op": "carry", "id": f"../../..{outside}", "transfer": {}}).encode() + b"\n"
    assert b"transfer id" in raw_answer(place, line)
    # A link planted in its directory is not followed either.
    planted = place.carry / ("ab" * 16)
    files.make_private_dirs(planted)
    (planted / "carry.age").symlink_to(outside)
    refused = agent.ask(place, Carry("ab" * 16, transfer))
    assert refused is not None and not refused.ok and "not a file of this user" in (refused.error or "")
    # Nor is an id it was never handed.
    missing = agent.ask(place, Carry("cd" * 16, transfer))
    assert missing is not None and not missing.ok
    assert status(laptop)["transfers"] == []


def signed_handoff(identity: Identity) -> Item:
    record = new_record(identity, b"sealed payload", ttl=3600, now=time.time())
    message = packet.record_message(identity.public_key, record.to_json())
    signature = packet.SignedPacket.create(identity, 1, message).signature
    return Item(identity.public_key.raw, 1, signature, message, record.expires_at)


def raw_answer(place: agent.Place, line: bytes) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
        connection.settimeout(GUARD)
        connection.connect(str(place.socket))
        connection.sendall(line)
        return connection.makefile("rb").readline()


def test_when_the_agent_cannot_take_the_carry_the_command_offers_it_itself_and_says_why(
    agent_machines, machines
) -> None:
    laptop, desktop, project, _ = carrying_pair(agent_machines, machines)
    state = laptop.home / ".local" / "state"
    state.mkdir(parents=True, exist_ok=True)
    (state / "cclink").write_text("not a directory")  # nowhere for the agent's files
    publisher = laptop.spawn("--carry", cwd=project)
    try:
        note = wait_for_line(publisher, "Note:")
        assert "could not be handed to the agent" in note and "offering the session from here instead" in note

        desktop.ok("pickup", "-y", "--project-dir", str(desktop.project("app")))

        code, _, err = finish(publisher)
        assert code == 0 and "The session was fetched" in err, err
    finally:
        if publisher.poll() is None:
            publisher.kill()
            publisher.communicate()


@pytest.mark.parametrize("elsewhere", ["revoked", "replaced"])
def test_the_agent_stops_offering_a_handoff_revoked_or_replaced_elsewhere(agent_machines, machines, elsewhere) -> None:
    laptop, desktop, project, _ = carrying_pair(agent_machines, machines)
    laptop.extra_env[agent.REPUBLISH_ENV] = "0.5"  # it looks at the key before each renewal
    laptop.ok("--carry", cwd=project)
    assert laptop.agent_pid(wait=GUARD) is not None

    if elsewhere == "revoked":
        desktop.ok("revoke", "-y")
    else:
        desktop.ok("--missing-ok", SESSION)

    eventually(lambda: [t["state"] for t in transfers(laptop)] == ["revoked"], "the agent stopped offering it")
    assert "stopped: the handoff was revoked or replaced elsewhere" in laptop.ok("status").stdout
    assert list(laptop.place.carry.iterdir()) == []
    if elsewhere == "replaced":
        assert json.loads(desktop.ok("pickup", "--json").stdout)["session_id"] == SESSION  # not undone


def test_a_newer_carry_of_the_same_key_ends_the_older_transfer_at_once(agent_machines, machines) -> None:
    laptop, desktop, project, session_id = carrying_pair(agent_machines, machines)
    laptop.ok("--carry", cwd=project)
    (first,) = transfers(laptop)

    laptop.ok("--carry", cwd=project)

    eventually(lambda: sorted(t["state"] for t in transfers(laptop)) == ["offering", "revoked"], "the first ended")
    assert len(list(laptop.place.carry.iterdir())) == 1
    desktop.ok("pickup", "-y", "--project-dir", str(desktop.project("app")))
    eventually(lambda: sorted(t["state"] for t in transfers(laptop)) == ["fetched", "revoked"], "the second fetched")
    assert first["session_id"] == session_id


def test_a_burn_carry_fetched_through_the_record_has_the_agent_revoke_the_other_devices_items(
    agent_machines, machines, short_dir
) -> None:
    laptop: AgentMachine = agent_machines("laptop")
    desktop, tablet = machines("desktop"), machines("tablet")
    keys = {machine: machine.init() for machine in (laptop, desktop, tablet)}
    for machine in keys:
        book = ContactBook(machine.key_file.parent / contacts.FILE_NAME)
        for other, key in keys.items():
            if other is not machine:
                book.add(Contact(other.name, PublicKey.parse(key), "device", int(time.time())))
    project = short_dir / "a"  # with a short session id, the --carry record has room for the desktop alone
    project.mkdir()
    laptop.add_session(project, "s1")

    published = laptop.ok("--carry", "--burn", "--json", cwd=project)

    assert "The background agent offers the session" in published.stderr
    data = json.loads(published.stdout)
    assert data["devices"] == ["desktop", "tablet"] and [item["device"] for item in data["device_items"]] == ["tablet"]
    desktop.ok("pickup", "-y", "--project-dir", str(desktop.project("app")))  # through the record
    eventually(lambda: [t["state"] for t in transfers(laptop)] == ["fetched"], "the agent saw it fetched")
    gone = tablet.run("pickup", "laptop", "--json")
    assert gone.returncode == 7 and "the last one was revoked" in gone.stderr, gone.stderr
