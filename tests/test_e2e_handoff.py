"""End-to-end: the real `cclink` command between separate HOMEs on the local DHT swarm.

Only `claude` is fake (see tests/support/machines.py); keys, age, Argon2, the DHT and the
files under each HOME are real. Failing paths are checked for the one
`cclink: error:` line, the exit code, the absence of a traceback, and that
nothing was launched.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import socket
import stat
import subprocess
import time
from pathlib import Path

import pytest
from support.machines import Machine

import cclink
from cclink.net.record_store import RecordStore
from cclink.wire import payload
from cclink.wire.keys import Identity
from cclink.wire.payload import Payload
from cclink.wire.record import new_record

pytestmark = pytest.mark.e2e

PIN = "tulip-harbor-42"
WRONG_PIN = "maple-harbor-42"
PASSPHRASE = "correct horse battery"
ERROR_PREFIX = "cclink: error:"
# A QR code drawn with half blocks: rows of these characters only.
QR_ROW = re.compile(r"^[ \u2580\u2584\u2588]+$")
COMMANDS = ("publish", "pickup", "init", "whoami", "list", "revoke", "testnet", "demo")


# --- helpers ------------------------------------------------------------------------


def describe(result: subprocess.CompletedProcess) -> str:
    return f"exit {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"


def assert_fails(
    result: subprocess.CompletedProcess, code: int, *fragments: str, machines: tuple[Machine, ...] = ()
) -> str:
    """A clean failure: the exit code, one error line holding every fragment, no traceback, no launch."""
    assert result.returncode == code, describe(result)
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout, describe(result)
    errors = [line for line in result.stderr.splitlines() if line.startswith(ERROR_PREFIX)]
    assert len(errors) == 1, describe(result)
    for fragment in fragments:
        # The CLI capitalises the sentence, so a fragment may start it in either case.
        assert fragment.lower() in errors[0].lower(), f"{fragment!r} not in {errors[0]!r}"
    for machine in machines:
        assert machine.launches() == [], f"{machine.name} launched claude"
    return errors[0]


def assert_resumed(machine: Machine, session_id: str, directory: Path) -> None:
    """The machine started exactly one `claude --resume session_id` in directory."""
    launches = machine.launches()
    assert [launch.argv for launch in launches] == [[f"--resume={session_id}"]]
    assert Path(launches[0].cwd) == directory.resolve()


def as_json(result: subprocess.CompletedProcess) -> dict:
    return json.loads(result.stdout)


def qr_rows(text: str) -> list[str]:
    """The lines of text that are drawn QR modules."""
    return [line for line in text.splitlines() if QR_ROW.match(line) and line.strip()]


def seed_of(machine: Machine) -> bytes:
    """The seed in an unencrypted key file (64 hex characters)."""
    return bytes.fromhex(machine.key_file.read_text().strip())


def publish_json(machine: Machine, *args: str, cwd: Path, env: dict[str, str] | None = None) -> dict:
    return as_json(machine.ok(*args, "--json", cwd=cwd, env=env))


def new_key(machine: Machine, import_from: Path | None = None) -> str:
    """`cclink init` an unencrypted key (or import one); return its z32 as init reports it."""
    args = ["init", "--no-passphrase", *(["--import", str(import_from)] if import_from else [])]
    output = machine.ok(*args).stdout
    match = re.search(r"^(?:Created|Imported) key pk:([a-z0-9]{52})$", output, re.MULTILINE)
    assert match, output
    return match.group(1)


SameKey = tuple[Machine, Machine, str]


@pytest.fixture
def same_key(laptop: Machine, desktop: Machine) -> SameKey:
    """Laptop and desktop holding one key, and its z32: conftest's `paired` with one command per machine."""
    key = new_key(laptop)
    assert new_key(desktop, import_from=laptop.key_file) == key
    return laptop, desktop, key


@pytest.fixture
def stranger(machines) -> Machine:
    """A third machine; it has no key until a test creates one."""
    return machines("stranger")


# --- self handoff (one key on both machines) --------------------------------------------


def test_default_command_publishes_newest_session_of_cwd_and_pickup_resumes_it(same_key: SameKey) -> None:
    laptop, desktop, _ = same_key
    project = laptop.project("app")
    laptop.add_session(laptop.project("other"))  # newer, but not under cwd
    session_id = laptop.add_session(project, age=60)
    laptop.add_session(project, age=7200)
    # The desktop keeps the session under a path of its own; resume must use that one.
    desktop_project = desktop.project("checkout", "app")
    desktop.add_session(desktop_project, session_id)

    published = laptop.ok(cwd=project)
    assert f"Session: {session_id} in ~/work/app" in published.stdout
    assert "cclink pickup" in [line.strip() for line in published.stdout.splitlines()]

    picked = desktop.ok("pickup", "-y")
    assert f"Resuming session {session_id}" in picked.stderr
    assert_resumed(desktop, session_id, desktop_project)
    assert laptop.launches() == []


def test_explicit_session_id_is_published_with_cwd_as_project(same_key: SameKey) -> None:
    laptop, desktop, key = same_key
    session_id = "explicit-session-0001"
    cwd = laptop.project("scratch")  # no session files at all on the laptop
    desktop_project = desktop.project("app")
    desktop.add_session(desktop_project, session_id)

    data = publish_json(laptop, session_id, "--missing-ok", cwd=cwd)
    assert data["session_id"] == session_id
    assert data["project"] == str(cwd)
    assert data["publisher"] == f"pk:{key}"
    assert (data["mode"], data["burn"], data["pin"], data["recipient"]) == ("self", False, False, None)
    assert data["ttl"] == 86400 and data["expires_at"] - data["created_at"] == 86400
    assert data["seq"] > 0 and data["nodes"] >= 1
    assert data["pickup_command"] == "cclink pickup"

    desktop.ok("pickup", "-y")
    assert_resumed(desktop, session_id, desktop_project)


def test_several_sessions_without_tty_publish_the_newest(laptop: Machine) -> None:
    new_key(laptop)
    project = laptop.project("app")
    laptop.add_session(project, age=3000)
    newest = laptop.add_session(project, age=30)
    laptop.add_session(project, age=600)

    assert publish_json(laptop, cwd=project)["session_id"] == newest


def test_session_in_subdirectory_of_cwd_is_found(laptop: Machine) -> None:
    new_key(laptop)
    subdirectory = laptop.project("app", "packages", "core")
    session_id = laptop.add_session(subdirectory)

    data = publish_json(laptop, cwd=laptop.project("app"))
    assert (data["session_id"], data["project"]) == (session_id, str(subdirectory))


@pytest.mark.parametrize("old_session", [True, False], ids=["only-older-than-24h", "none"])
def test_publish_without_recent_session_fails(laptop: Machine, old_session: bool) -> None:
    new_key(laptop)
    project = laptop.project("app")
    if old_session:
        laptop.add_session(project, age=25 * 3600)

    result = laptop.run(cwd=project)
    assert_fails(result, 4, "no Claude Code session from the last 24 hours", str(project), machines=(laptop,))
    assert "Published" not in result.stdout


def test_pickup_of_session_not_on_this_machine_explains_where_sessions_live(same_key: SameKey) -> None:
    laptop, desktop, _ = same_key
    project = laptop.project("app")
    session_id = laptop.add_session(project)
    laptop.ok(cwd=project)

    result = desktop.run("pickup", "-y")
    assert_fails(result, 4, session_id, "~/.claude/projects", machines=(desktop, laptop))


def test_pickup_json_and_qr_print_instead_of_launching(same_key: SameKey) -> None:
    laptop, desktop, key = same_key
    project = laptop.project("app")
    session_id = laptop.add_session(project)
    desktop_project = desktop.project("app")
    desktop.add_session(desktop_project, session_id)
    laptop.ok(cwd=project)

    data = as_json(desktop.ok("pickup", "--json"))
    expected = {
        "session_id": session_id,
        "project": str(project),
        "hostname": socket.gethostname(),
        "publisher": f"pk:{key}",
        "created_at": data["created_at"],
        "expires_at": data["created_at"] + 86400,
        "ttl": 86400,
        "burn": False,
        "pin": False,
        "recipient": None,
        "revoked": False,
        "session_on_this_machine": True,
        "resume_directory": str(desktop_project),
    }
    # Other fields may come and go with other features; these must be there as they are.
    assert {key: data.get(key) for key in expected} == expected

    shown = desktop.ok("pickup", "--qr")
    assert len(qr_rows(shown.stdout)) >= 10, shown.stdout
    assert f"Session: {session_id}" in shown.stdout
    assert desktop.launches() == []


def test_publish_qr_prints_a_qr_block(laptop: Machine) -> None:
    new_key(laptop)
    project = laptop.project("app")
    laptop.add_session(project)

    result = laptop.ok("--qr", cwd=project)
    assert "Published!" in result.stdout
    assert len(qr_rows(result.stdout)) >= 10, result.stdout


# --- pickup --wait --------------------------------------------------------------------------


def test_a_waiting_pickup_takes_the_handoff_published_after_it_started(same_key: SameKey) -> None:
    laptop, desktop, _ = same_key
    project = laptop.project("app")
    desktop_project = desktop.project("app")
    first, second = laptop.add_session(project), laptop.add_session(project)
    for session_id in (first, second):
        desktop.add_session(desktop_project, session_id)
    laptop.ok(first, cwd=project)
    desktop.ok("pickup", "--json")  # the desktop has picked the first one up

    waiting = desktop.spawn("pickup", "--wait", "-y")
    try:
        laptop.ok(second, cwd=project)
        _, err = waiting.communicate(timeout=120)
    finally:
        if waiting.poll() is None:
            waiting.kill()
            waiting.communicate()

    assert waiting.returncode == 0, err
    assert_resumed(desktop, second, desktop_project)


def test_a_waiting_pickup_gives_up_at_its_time_with_one_sentence(same_key: SameKey) -> None:
    laptop, desktop, _ = same_key
    project = laptop.project("app")
    laptop.ok(laptop.add_session(project), cwd=project)
    desktop.ok("pickup", "--json")

    assert_fails(desktop.run("pickup", "--wait", "1"), 7, "no new handoff from", "appeared within 1s")
    assert_fails(desktop.run("pickup", "--wait", "0"), 2, "--wait takes a number of seconds")


# --- --share -----------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["pk:", ""], ids=["pk-prefix", "bare-z32"])
def test_share_is_picked_up_by_the_recipient(laptop: Machine, desktop: Machine, prefix: str) -> None:
    publisher, recipient = new_key(laptop), new_key(desktop)
    assert publisher != recipient
    project = laptop.project("app")
    session_id = laptop.add_session(project)
    desktop_project = desktop.project("app")
    desktop.add_session(desktop_project, session_id)

    data = publish_json(laptop, "--share", prefix + recipient, cwd=project)
    assert (data["mode"], data["recipient"]) == ("share", "pk:" + recipient)
    assert data["pickup_command"] == f"cclink pickup {publisher}"

    desktop.ok("pickup", publisher, "-y")
    assert_resumed(desktop, session_id, desktop_project)


def test_share_cannot_be_opened_by_a_third_key_or_the_publisher(
    laptop: Machine, desktop: Machine, stranger: Machine
) -> None:
    publisher, recipient = new_key(laptop), new_key(desktop)
    new_key(stranger)
    project = laptop.project("app")
    session_id = laptop.add_session(project)
    for machine in (desktop, stranger):
        machine.add_session(machine.project("app"), session_id)
    laptop.ok("--share", recipient, cwd=project)

    third = stranger.run("pickup", publisher, "-y")
    assert_fails(third, 6, f"was shared with pk:{recipient}", machines=(stranger,))

    own = laptop.run("pickup", "-y")
    assert_fails(own, 6, f"was shared with pk:{recipient}, not with your key pk:{publisher}", machines=(laptop,))


# --- --pin -------------------------------------------------------------------------------


def test_pin_handoff_opens_with_the_pin_from_another_key_and_from_no_key(
    laptop: Machine, desktop: Machine, stranger: Machine
) -> None:
    publisher = new_key(laptop)
    new_key(desktop)  # a different key: the PIN alone must open the handoff
    project = laptop.project("app")
    session_id = laptop.add_session(project)
    desktop_project = desktop.project("app")
    desktop.add_session(desktop_project, session_id)

    data = publish_json(laptop, "--pin", cwd=project, env={"CCLINK_PIN": PIN})
    assert (data["mode"], data["pin"], data["recipient"]) == ("pin", True, None)
    assert data["pickup_command"] == f"cclink pickup {publisher}"

    desktop.ok("pickup", publisher, "-y", env={"CCLINK_PIN": PIN})
    assert_resumed(desktop, session_id, desktop_project)

    assert not stranger.key_file.exists()
    opened = as_json(stranger.ok("pickup", publisher, "--json", env={"CCLINK_PIN": PIN}))
    assert (opened["session_id"], opened["project"], opened["pin"]) == (session_id, str(project), True)


def test_pin_handoff_refuses_wrong_or_missing_pin(laptop: Machine, stranger: Machine) -> None:
    publisher = new_key(laptop)
    project = laptop.project("app")
    session_id = laptop.add_session(project)
    stranger.add_session(stranger.project("app"), session_id)  # so a wrong launch could happen
    laptop.ok("--pin", cwd=project, env={"CCLINK_PIN": PIN})

    wrong = stranger.run("pickup", publisher, "-y", env={"CCLINK_PIN": WRONG_PIN})
    assert_fails(wrong, 6, "incorrect PIN", machines=(stranger,))

    missing = stranger.run("pickup", publisher, "-y", timeout=30)
    assert_fails(missing, 2, "no terminal", "CCLINK_PIN", machines=(stranger,))


def test_weak_or_missing_pin_at_publish_publishes_nothing(laptop: Machine) -> None:
    new_key(laptop)
    project = laptop.project("app")
    laptop.add_session(project)
    refusals = {
        "12345678": "run of consecutive characters",
        "password": "list of common passwords",
        "Password": "list of common passwords",
        "a1b2c3": "at least 8 characters",
        "": "CCLINK_PIN",  # unset: there is no TTY to ask on, so no hang either
    }
    for pin, reason in refusals.items():
        result = laptop.run("--pin", cwd=project, env={"CCLINK_PIN": pin}, timeout=30)
        assert_fails(result, 2, reason, machines=(laptop,))
        assert "Published" not in result.stdout

    assert_fails(laptop.run("pickup", "-y"), 7, "no handoff is published", machines=(laptop,))


# --- --burn ------------------------------------------------------------------------------


def test_burn_pickup_with_own_key_resumes_and_revokes(same_key: SameKey) -> None:
    laptop, desktop, _ = same_key
    project = laptop.project("app")
    session_id = laptop.add_session(project)
    desktop_project = desktop.project("app")
    desktop.add_session(desktop_project, session_id)
    published = laptop.ok("--burn", cwd=project)
    assert "burn after read" in published.stdout.lower()

    first = desktop.ok("pickup", "-y")
    assert "Burn-after-read: the handoff was revoked." in first.stderr
    assert_resumed(desktop, session_id, desktop_project)

    second = desktop.run("pickup", "-y")
    assert_fails(second, 7, "no handoff is published", "revoked")
    assert len(desktop.launches()) == 1  # still only the first pickup's launch


def test_burn_with_share_is_refused_with_the_reason(laptop: Machine, desktop: Machine) -> None:
    new_key(laptop)
    recipient = new_key(desktop)
    project = laptop.project("app")
    laptop.add_session(project)

    result = laptop.run("--burn", "--share", recipient, cwd=project)
    assert_fails(
        result,
        2,
        "--burn cannot be combined with --share",
        "only the key that signed a record can revoke it",
        machines=(laptop,),
    )
    assert laptop.ok("list").stdout.startswith("No handoff is published under")


def test_burn_with_pin_notes_that_only_own_key_revokes(laptop: Machine, stranger: Machine) -> None:
    publisher = new_key(laptop)
    project = laptop.project("app")
    session_id = laptop.add_session(project)

    published = laptop.ok("--burn", "--pin", cwd=project, env={"CCLINK_PIN": PIN})
    assert "Note: Only a pickup made with your own key can revoke this handoff" in published.stderr

    picked = stranger.ok("pickup", publisher, "--json", env={"CCLINK_PIN": PIN})
    assert "only its publisher's key can revoke it" in picked.stderr
    assert (as_json(picked)["session_id"], as_json(picked)["revoked"]) == (session_id, False)
    # A PIN pickup by someone else leaves the record in place.
    assert as_json(laptop.ok("list", "--json"))["burn"] is True


# --- revoke ------------------------------------------------------------------------------


def test_revoke_then_pickup_finds_nothing(laptop: Machine) -> None:
    new_key(laptop)
    project = laptop.project("app")
    laptop.add_session(project)
    laptop.ok(cwd=project)

    assert laptop.ok("revoke", "-y").stdout.strip() == "Revoked."
    assert_fails(laptop.run("pickup", "-y"), 7, "no handoff is published", "revoked", machines=(laptop,))


def test_revoke_without_tty_or_yes_keeps_the_record(laptop: Machine) -> None:
    new_key(laptop)
    project = laptop.project("app")
    session_id = laptop.add_session(project)
    laptop.ok(cwd=project)

    result = laptop.run("revoke", timeout=30)
    assert_fails(result, 2, "nothing revoked", "no terminal to ask on; pass -y", machines=(laptop,))
    assert as_json(laptop.ok("list", "--json"))["session_id"] == session_id


# --- list and whoami -----------------------------------------------------------------------


def test_list_shows_own_record_with_session_and_project(laptop: Machine) -> None:
    publisher = new_key(laptop)
    project = laptop.project("app")
    session_id = laptop.add_session(project)
    laptop.ok("--burn", "--ttl", "3600", cwd=project)

    lines = laptop.ok("list").stdout.splitlines()
    assert lines[0] == f"Handoff by pk:{publisher}"
    assert re.fullmatch(r"  Expires:   in (59m \d+s|1h) \(.+ UTC\), 1h after publishing", lines[2]), lines
    assert lines[3:] == [
        "  Burn:      yes",
        "  For:       your own key",
        f"  Session:   {session_id}",
        "  Project:   ~/work/app",
    ]

    data = as_json(laptop.ok("list", "--json"))
    assert (data["publisher"], data["burn"], data["pin"], data["recipient"]) == (f"pk:{publisher}", True, False, None)
    assert (data["session_id"], data["project"], data["expired"]) == (session_id, str(project), False)
    assert data["ttl"] == 3600 and data["seq"] > 0
    # Time left is counted from publishing, which was moments ago.
    assert 3000 < data["expires_at"] - time.time() <= 3600


def test_list_of_shared_record_names_recipient_but_no_session(laptop: Machine, desktop: Machine) -> None:
    new_key(laptop)
    recipient = new_key(desktop)
    project = laptop.project("app")
    laptop.add_session(project)
    laptop.ok("--share", recipient, cwd=project)

    text = laptop.ok("list").stdout
    assert f"  For:       pk:{recipient}" in text.splitlines()
    assert "Session:" not in text and "Project:" not in text

    data = as_json(laptop.ok("list", "--json"))
    assert data["recipient"] == f"pk:{recipient}"
    assert "session_id" not in data and "project" not in data


def test_whoami_text_and_json(laptop: Machine) -> None:
    z32 = new_key(laptop)

    data = as_json(laptop.ok("whoami", "--json"))
    assert data == {"public_key": f"pk:{z32}", "fingerprint": z32[:8], "key_file": str(laptop.key_file)}
    assert laptop.ok("whoami").stdout.splitlines() == [
        f"Public Key:  pk:{z32}",
        f"Fingerprint: {z32[:8]}",
        f"Key file:    {laptop.key_file}",
    ]


# --- expiry --------------------------------------------------------------------------------


def test_expired_record_is_refused_with_how_long_ago(laptop: Machine, swarm) -> None:
    new_key(laptop)
    project = laptop.project("app")
    session_id = laptop.add_session(project)  # present, so only expiry stops the launch
    identity = Identity(seed_of(laptop))
    blob = payload.seal(Payload(session_id, "laptop", str(project)), identity.public_key.age_recipient())
    # Published 2h 1m ago for one minute: it expired two hours (and the seconds this test takes) ago.
    record = new_record(identity, blob, ttl=60, now=time.time() - 7260)
    RecordStore.on_dht(swarm.network).publish(identity, record)

    result = laptop.run("pickup", "-y")
    error = assert_fails(result, 7, f"the handoff from {identity.public_key.fingerprint} expired", machines=(laptop,))
    assert re.search(r"expired 2h( [1-9]m)? ago\.$", error), error


# --- keys ----------------------------------------------------------------------------------


def test_init_keeps_existing_key_without_yes_and_replaces_it_with_yes(laptop: Machine) -> None:
    first = new_key(laptop)
    original = laptop.key_file.read_bytes()
    assert stat.S_IMODE(laptop.key_file.stat().st_mode) == 0o600

    refused = laptop.run("init", "--no-passphrase", timeout=30)
    assert_fails(refused, 2, "kept the existing key", "pass -y", machines=(laptop,))
    assert laptop.key_file.read_bytes() == original

    laptop.ok("init", "--no-passphrase", "-y")
    assert laptop.key_file.read_bytes() != original
    assert laptop.public_key_z32() != first
    assert stat.S_IMODE(laptop.key_file.stat().st_mode) == 0o600


def test_passphrase_protected_key(laptop: Machine) -> None:
    unlock = {"CCLINK_PASSPHRASE": PASSPHRASE}
    no_input = laptop.run("init", timeout=30)
    assert_fails(no_input, 2, "CCLINK_PASSPHRASE", machines=(laptop,))
    assert not laptop.key_file.exists()

    created = laptop.ok("init", env=unlock).stdout
    assert "passphrase-protected" in created
    z32 = re.search(r"Created key pk:([a-z0-9]{52})", created).group(1)
    assert laptop.key_file.read_bytes().startswith(b"CCLINKEK")
    assert stat.S_IMODE(laptop.key_file.stat().st_mode) == 0o600

    assert as_json(laptop.ok("whoami", "--json", env=unlock))["public_key"] == f"pk:{z32}"
    # whoami needs no passphrase: the public key was noted when the key was created.
    assert as_json(laptop.ok("whoami", "--json"))["public_key"] == f"pk:{z32}"
    assert_fails(laptop.run("list", timeout=30), 2, "CCLINK_PASSPHRASE", machines=(laptop,))
    wrong = laptop.run("list", env={"CCLINK_PASSPHRASE": "not the passphrase"})
    assert_fails(wrong, 3, "wrong passphrase", machines=(laptop,))


def test_pickup_without_any_key_or_pubkey_says_to_init(laptop: Machine) -> None:
    result = laptop.run("pickup", "-y")
    assert_fails(result, 3, f"no key at {laptop.key_file}", "cclink init", machines=(laptop,))


# --- demo and testnet ------------------------------------------------------------------------


def test_demo_shows_a_publish_and_a_pickup(laptop: Machine) -> None:
    result = laptop.ok("demo")
    published = re.search(r"^\s+Session: (\S+) in ~/work/my-app$", result.stdout, re.MULTILINE)
    assert published, result.stdout
    session_id = published.group(1)
    joined = re.search(r"^\s+\$ cclink pair \d+-[a-z]+-[a-z]+ -y --name laptop$", result.stdout, re.MULTILINE)
    assert joined, result.stdout
    assert "Paired with desktop" in result.stdout and "Paired with laptop" in result.stdout
    assert "Published! Stored on" in result.stdout
    assert "$ cclink pickup -y" in result.stdout
    assert f"Resuming session {session_id}" in result.stdout
    assert f"would now run: claude --resume={session_id}" in result.stdout
    assert laptop.launches() == []  # the demo uses a stand-in of its own


def read_line(stream, deadline: float) -> str:
    """One line from a binary pipe, or fail when the deadline passes first."""
    buffer = b""
    while not buffer.endswith(b"\n"):
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no complete line before the deadline; got {buffer!r}"
        ready, _, _ = select.select([stream], [], [], remaining)
        if ready:
            chunk = os.read(stream.fileno(), 1)
            assert chunk, f"the stream closed; got {buffer!r}"
            buffer += chunk
    return buffer.decode().rstrip("\n")


def start_testnet(machine: Machine, nodes: int) -> tuple[subprocess.Popen, dict[str, str]]:
    """`cclink testnet` running in the background, and the environment its line exports."""
    process = machine.spawn("testnet", "--nodes", str(nodes), text=False)
    try:
        line = read_line(process.stdout, time.monotonic() + 60)
        match = re.fullmatch(r"export CCLINK_NETWORK=test CCLINK_BOOTSTRAP=(127\.0\.0\.1:\d+)", line)
        assert match, line
        # The note on stderr comes last before the command waits for a signal.
        assert "DHT nodes on 127.0.0.1" in read_line(process.stderr, time.monotonic() + 30)
    except BaseException:
        process.kill()
        process.wait()
        raise
    return process, {"CCLINK_NETWORK": "test", "CCLINK_BOOTSTRAP": match.group(1)}


def wait_until_main_thread_sleeps(process: subprocess.Popen, deadline: float) -> None:
    """Wait until the process's main thread is blocked, which for `cclink testnet` means inside its wait for a signal.

    The command waits with Event.wait(3600). A signal that arrives while the
    main thread is still on its way there is either raised as KeyboardInterrupt
    before the command's `try` (a silent exit 130) or, if it lands after the
    last bytecode and before the thread blocks, not handled until the hour-long
    wait times out (a cclink bug: the wait should poll with a short timeout).
    Once the thread sleeps, a signal interrupts the wait and the command stops.
    """
    stat_file = Path(f"/proc/{process.pid}/task/{process.pid}/stat")
    if not stat_file.exists():
        pytest.skip("needs Linux /proc to see when the command is waiting")
    # The state letter follows the parenthesised command name.
    while stat_file.read_text().rsplit(")", 1)[1].split()[0] != "S":
        assert time.monotonic() < deadline, "cclink testnet never settled into its wait"
        time.sleep(0.01)  # polling interval, not synchronisation


def stop(process: subprocess.Popen, signum: int) -> tuple[int, str]:
    """Signal the waiting process; return its exit code and the rest of stderr (killing it if it does not stop)."""
    wait_until_main_thread_sleeps(process, time.monotonic() + 30)
    process.send_signal(signum)
    try:
        _, stderr = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise
    return process.returncode, stderr.decode(errors="replace")


def test_testnet_command_carries_a_handoff_and_stops_on_sigterm(same_key: SameKey) -> None:
    laptop, desktop, _ = same_key
    process, own_dht = start_testnet(laptop, 3)
    try:
        project = laptop.project("app")
        session_id = laptop.add_session(project)
        desktop_project = desktop.project("app")
        desktop.add_session(desktop_project, session_id)
        laptop.ok(cwd=project, env=own_dht)
        desktop.ok("pickup", "-y", env=own_dht)
        assert_resumed(desktop, session_id, desktop_project)
        # The shared swarm never saw this handoff: it went through the new testnet.
        assert_fails(desktop.run("pickup", "--json"), 7, "no handoff is published")
    finally:
        code, stderr = stop(process, signal.SIGTERM)
    assert (code, stderr) == (0, "")


def test_testnet_command_stops_on_sigint(laptop: Machine) -> None:
    process, _ = start_testnet(laptop, 3)
    assert stop(process, signal.SIGINT) == (0, "")


# --- help and version -------------------------------------------------------------------------


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help_of_every_command(laptop: Machine, command: str | None) -> None:
    args = ["--help"] if command is None else [command, "--help"]
    result = laptop.ok(*args)
    assert result.stdout.startswith("Usage: cclink"), result.stdout
    if command is None:
        for name in COMMANDS:
            assert name in result.stdout
    else:
        assert f"cclink {command}" in result.stdout.splitlines()[0]


@pytest.mark.parametrize("args", [["--version"], ["-V"], ["--version", "--help"], ["-V", "pickup"]])
def test_version(laptop: Machine, args: list[str]) -> None:
    assert laptop.ok(*args).stdout == f"cclink {cclink.__version__}\n"


def test_the_overall_help_shows_how_to_publish_too(laptop: Machine) -> None:
    for args in (["--help"], ["help"], ["-h"]):
        shown = laptop.ok(*args).stdout
        assert "Publishing (cclink [SESSION_ID] [OPTIONS]" in shown, args
        for option in ("--ttl", "--burn", "--pin", "--share", "--qr", "--carry"):
            assert option in shown, (args, option)


def test_shell_completion_completes_commands_and_options(laptop: Machine) -> None:
    def complete(words: str) -> list[str]:
        env = {"_CCLINK_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": str(len(words.split()) - 1)}
        return laptop.ok(env=env).stdout.split()

    assert complete("cclink pi") == ["pickup"]
    assert "--fetch-timeout" in complete("cclink pickup --fe")
    assert "complete -o" in laptop.ok("--show-completion", "bash").stdout


def test_short_help_flag(laptop: Machine) -> None:
    result = laptop.run("-h")
    assert result.returncode == 0 and result.stdout.startswith("Usage: cclink"), describe(result)
    pickup = laptop.run("pickup", "-h")
    assert pickup.returncode == 0 and "--project-dir" in pickup.stdout, describe(pickup)
