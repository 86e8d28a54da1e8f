"""End-to-end: what reaches the terminal, how cclink stops on SIGTERM and SIGHUP, and what a typo'd command does.

The real `cclink` command runs in temporary HOMEs against the local DHT swarm
(see tests/support/machines.py); a publisher's hostile words are put on the DHT as a crafted
record signed with the test machine's own key.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from support import terminal
from support.carry import READY, WAIT, finish, wait_for_line
from support.machines import Machine

from cclink.net.record_store import RecordStore
from cclink.wire import payload
from cclink.wire.keys import Identity
from cclink.wire.payload import Payload
from cclink.wire.record import new_record

pytestmark = pytest.mark.e2e

ESC, BEL = "\x1b", "\x07"
TITLE = "\x1b]0;pwned\x07"  # sets the terminal window's title
ERASE = "\x1b[2K"  # erases the line the cursor is on (the resume question's)
HOSTILE = TITLE + ERASE
HOSTILE_SHOWN = "\\x1b]0;pwned\\x07\\x1b[2K"
# Raw in JSON unless cclink escapes them: DEL, a C1 CSI and a right-to-left override.
NOT_ESCAPED_BY_JSON = "\x7f\x9b2K\u202e"
SPINNER_REDRAW = "\r\x1b[K"  # the spinner's own line clearing: the one sequence cclink itself sends
SESSION_ERROR = 4


def describe(result: subprocess.CompletedProcess) -> str:
    return f"{result.args}\nexit {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"


# cclink's own colours (console.say, console.say_error); what follows them is escaped text.
COLOURED_NOTE, COLOURED_ERROR = "\x1b[1;33mNote:\x1b[0m", "\x1b[1;31mcclink: error:\x1b[0m"


def without_spinner(output: str) -> str:
    """output without cclink's own escape sequences: the spinner's redraws and the colour of its prefixes."""
    return output.replace(SPINNER_REDRAW, "").replace(COLOURED_NOTE, "Note:").replace(COLOURED_ERROR, "cclink: error:")


def seed_of(machine: Machine) -> bytes:
    """The seed in an unencrypted key file (64 hex characters)."""
    return bytes.fromhex(machine.key_file.read_text().strip())


def publish_crafted(machine: Machine, swarm, body: Payload) -> None:
    """Put a handoff of body on the swarm, as a hostile publisher of machine's key could.

    It is signed and encrypted with machine's own key.
    """
    identity = Identity(seed_of(machine))
    record = new_record(identity, payload.seal(body, identity.public_key.age_recipient()), ttl=3600, now=time.time())
    RecordStore.on_dht(swarm.network).publish(identity, record)


def outgoing_cache(machine: Machine) -> Path:
    return machine.home / ".cache" / "cclink" / "outgoing"


# --- a publisher's words cannot steer the picker's terminal -----------------------------------------


def test_hostile_hostname_and_project_are_shown_escaped_in_the_resume_question(paired, swarm) -> None:
    laptop, desktop = paired
    session_id = desktop.add_session(desktop.project("app"))  # here, so pickup gets as far as asking
    publish_crafted(laptop, swarm, Payload(session_id, f"laptop{HOSTILE}", f"/work/{HOSTILE}/app"))

    code, output = desktop.on_terminal("pickup", exchanges=[("[y/N] ", b"n\n")])

    assert code == 0, output  # declining is no failure
    assert "Not resumed; the handoff is still published." in output and "error" not in output
    assert f"(/work/{HOSTILE_SHOWN}/app on laptop{HOSTILE_SHOWN}, published " in output, output
    assert ESC not in without_spinner(output) and BEL not in output, repr(output)
    assert desktop.launches() == []


def test_hostile_fields_in_json_are_escaped_and_decode_to_what_was_published(paired, swarm) -> None:
    laptop, desktop = paired
    hostname, project = f"laptop{HOSTILE}{NOT_ESCAPED_BY_JSON}", f"/work/{NOT_ESCAPED_BY_JSON}{HOSTILE}"
    publish_crafted(laptop, swarm, Payload("3f2b9c1e-7a44-4d1b-9e0f-0123456789ab", hostname, project))

    result = desktop.run("pickup", "--json")

    assert result.returncode == 0, describe(result)
    for character in (ESC, BEL, "\x7f", "\x9b", "\u202e"):
        assert character not in result.stdout, repr(character)
    handoff = json.loads(result.stdout)
    assert (handoff["hostname"], handoff["project"]) == (hostname, project)


def test_list_shows_a_hostile_project_escaped(paired, swarm) -> None:
    laptop, _ = paired
    publish_crafted(laptop, swarm, Payload("3f2b9c1e-7a44-4d1b-9e0f-0123456789ab", "laptop", f"/work/{HOSTILE}\u202e"))

    result = laptop.run("list")

    assert result.returncode == 0, describe(result)
    assert f"  Project:   /work/{HOSTILE_SHOWN}\\u202e\n" in result.stdout, describe(result)
    assert ESC not in result.stdout and "\u202e" not in result.stdout


# --- SIGTERM and SIGHUP clean up like Ctrl-C ------------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_a_signal_to_a_seeding_publisher_removes_the_encrypted_session(laptop, short_dir, signum) -> None:
    laptop.init()
    project = short_dir / "app"
    project.mkdir()
    laptop.add_session(project)
    publisher = laptop.spawn("--carry", cwd=project)
    wait_for_line(publisher, READY)
    assert list(outgoing_cache(laptop).iterdir()), "the publisher offers no encrypted session"

    publisher.send_signal(signum)
    code, _, err = finish(publisher)

    assert code == 128 + signum, err
    assert "Traceback" not in err, err
    assert err.strip().splitlines()[-1] == f"cclink: error: Stopped by {signal.Signals(signum).name}.", err
    assert list(outgoing_cache(laptop).iterdir()) == []


def test_closing_the_publishers_terminal_removes_the_encrypted_session(laptop, short_dir) -> None:
    laptop.init()
    project = short_dir / "app"
    project.mkdir()
    laptop.add_session(project)
    publisher, master = terminal.start_on_terminal(laptop.command("--carry"), env=laptop.env, cwd=project)
    try:
        terminal.wait_for(master, READY)
        assert list(outgoing_cache(laptop).iterdir()), "the publisher offers no encrypted session"
    finally:
        os.close(master)  # the window closes: the kernel sends SIGHUP, and every later write fails (EIO)
    try:
        code = publisher.wait(timeout=WAIT)
    finally:
        if publisher.poll() is None:
            publisher.kill()

    # Exit 1 (a traceback) or 120 (a failed write at exit) would mean the hang-up was not handled cleanly.
    assert code == 128 + signal.SIGHUP
    assert list(outgoing_cache(laptop).iterdir()) == []


def test_a_publisher_started_with_nohup_outlives_sighup(paired, short_dir) -> None:
    laptop, desktop = paired
    nohup = shutil.which("nohup")
    if nohup is None:
        pytest.skip("nohup is not installed")
    project = short_dir / "app"
    project.mkdir()
    session_id = laptop.add_session(project)
    publisher = laptop.spawn("--carry", cwd=project, wrap=[nohup])
    try:
        wait_for_line(publisher, READY)
        publisher.send_signal(signal.SIGHUP)  # ignored, as nohup asked
        desktop.ok("pickup", "-y", "--project-dir", str(desktop.project("app")))
        code, _, err = finish(publisher)
    finally:
        if publisher.poll() is None:
            publisher.kill()
            publisher.communicate()

    assert code == 0, err
    assert "The session was fetched" in err
    launches = desktop.launches()
    assert len(launches) == 1 and any(session_id in argument for argument in launches[0].argv), launches


# --- a typo'd command publishes nothing ---------------------------------------------------------------


@pytest.fixture
def published(laptop) -> tuple[Machine, str]:
    """A laptop whose own handoff is on the DHT: (laptop, its session id)."""
    laptop.init()
    project = laptop.project("app")
    session_id = laptop.add_session(project)
    laptop.ok(cwd=project)
    return laptop, session_id


def published_session(machine: Machine) -> str:
    return json.loads(machine.ok("list", "--json").stdout)["session_id"]


def test_help_shows_help_and_publishes_nothing(published) -> None:
    laptop, session_id = published

    result = laptop.ok("help")
    assert result.stdout == laptop.ok("--help").stdout
    assert result.stdout.startswith("Usage: cclink [OPTIONS] COMMAND") and "pickup" in result.stdout
    pickup_help = laptop.ok("help", "pickup")
    assert pickup_help.stdout == laptop.ok("pickup", "--help").stdout

    assert published_session(laptop) == session_id


def test_help_for_no_such_command_is_one_escaped_error_line(laptop) -> None:
    result = laptop.run("help", f"nope\ncclink: error: Fake{ERASE}")

    assert result.returncode == 2, describe(result)
    assert result.stderr.splitlines() == [
        "cclink: error: There is no command 'nope\\ncclink: error: Fake\\x1b[2K'; `cclink help` lists them."
    ], describe(result)


def test_help_with_nothing_published_publishes_nothing(laptop) -> None:
    laptop.init()
    laptop.ok("help")
    result = laptop.run("list")
    assert result.returncode == 0, describe(result)
    assert result.stdout.startswith("No handoff is published under"), describe(result)  # still nothing on the DHT


def test_a_typo_of_a_command_suggests_it_and_publishes_nothing(published) -> None:
    laptop, session_id = published

    result = laptop.run("pikcup")

    assert result.returncode == SESSION_ERROR, describe(result)
    assert result.stdout == "" and "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [
        "cclink: error: There is no session pikcup in ~/.claude/projects on this machine; did you mean `cclink pickup`?"
    ]
    assert published_session(laptop) == session_id


def test_an_unknown_session_id_says_how_to_publish_it_anyway(published) -> None:
    laptop, session_id = published
    elsewhere = "7d1c0a52-5b7e-4d8a-a1f3-9c2e4b6d8f00"

    result = laptop.run(elsewhere)

    assert result.returncode == SESSION_ERROR, describe(result)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("cclink: error: ") and "--missing-ok" in lines[0], describe(result)
    assert "did you mean" not in lines[0]
    assert published_session(laptop) == session_id

    laptop.ok(elsewhere, "--missing-ok")
    assert published_session(laptop) == elsewhere


def test_sigterm_while_the_picker_places_a_carried_session_leaves_no_staging_folder(paired, short_dir) -> None:
    laptop, desktop = paired
    project = short_dir / "app"
    project.mkdir()
    session_id = laptop.add_session(project)
    # Random bytes as hex barely compress: placing tens of megabytes gives the signal time to land.
    with open(laptop.sessions_folder(project) / f"{session_id}.jsonl", "a") as session:
        session.write(json.dumps({"cwd": str(project), "blob": os.urandom(40_000_000).hex()}) + "\n")
    publisher = laptop.spawn("--carry", cwd=project)
    try:
        wait_for_line(publisher, READY)
        picker = desktop.spawn("pickup", "-y", "--project-dir", str(desktop.project("app")))
        projects = desktop.home / ".claude" / "projects"
        deadline = time.monotonic() + WAIT
        while not list(projects.glob("*/.cclink-incoming-*")):  # placing has begun
            assert picker.poll() is None, (
                f"the picker ended before placing could be interrupted: {picker.communicate()}"
            )
            assert time.monotonic() < deadline, "the picker never started placing"
            time.sleep(0.01)  # polling interval, not synchronisation
        picker.send_signal(signal.SIGTERM)
        code, _, err = finish(picker)
    finally:
        publisher.kill()
        publisher.communicate()

    assert code == 128 + signal.SIGTERM, err
    assert "Traceback" not in err, err
    assert err.strip().splitlines()[-1] == "cclink: error: Stopped by SIGTERM.", err
    assert list(projects.glob("*/.cclink-incoming-*")) == []
    assert desktop.launches() == []


# --- colour --------------------------------------------------------------------------------------


def test_errors_stand_out_in_colour_on_a_terminal_only(laptop: Machine) -> None:
    laptop.init()

    _, coloured = laptop.on_terminal("pickup", "not-a-key", exchanges=[])
    piped = laptop.run("pickup", "not-a-key")

    assert coloured.startswith(COLOURED_ERROR + " "), repr(coloured)
    assert piped.stderr.startswith("cclink: error: ") and "\x1b" not in piped.stderr


@pytest.mark.parametrize("turned_off", ["NO_COLOR", "--no-color"])
def test_no_color_and_the_flag_turn_colour_off(laptop: Machine, turned_off: str) -> None:
    laptop.init()
    env = {"NO_COLOR": "1"} if turned_off == "NO_COLOR" else {}
    args = ["pickup", "not-a-key", *(["--no-color"] if turned_off == "--no-color" else [])]

    code, output = terminal.on_terminal(laptop.command(*args), env={**laptop.env, **env}, cwd=laptop.home)

    assert code == 2 and output.startswith("cclink: error: "), repr(output)
    assert "\x1b" not in output


def test_burn_and_pin_stand_out_in_colour_on_a_terminal(laptop: Machine) -> None:
    laptop.init()
    project = laptop.project()
    laptop.add_session(project)
    env = {**laptop.env, "CCLINK_PIN": "correct horse battery"}

    code, output = terminal.on_terminal(laptop.command("--burn", "--pin"), [], env=env, cwd=project)
    piped = subprocess.run(laptop.command("--burn", "--pin"), env=env, cwd=project, capture_output=True, text=True)

    assert code == 0, output
    assert "\x1b[1;33m PIN-protected, burn after read.\x1b[0m" in output, repr(output)
    assert piped.returncode == 0 and " PIN-protected, burn after read." in piped.stdout
    assert "\x1b" not in piped.stdout + piped.stderr
