"""Every QR code cclink prints, read back with a real decoder (zbar) as a light and a dark theme show it.

On a terminal with colour the code paints its own black and white and must read
on both themes as drawn. Plain (piped, NO_COLOR, --no-color) it is drawn for a
dark background; on a light one it shows inverted, which zbar reads only when
told to try inverted codes, as many phone readers do.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from support import qr, terminal
from support.machines import Machine

from cclink.cli import console

PAYLOADS = [
    "x",
    "3f2b9c1e-7a44-4d1b-9e0f-0123456789ab",
    "cclink pickup pk:df9sse9bp1nuftim3yhxiuk6w6r5hddsskjygpydux7esxjstioo",
    "cclink pickup pk:df9sse9bp1nuftim3yhxiuk6w6r5hddsskjygpydux7esxjstioo " + "--pin " * 40,
]


@pytest.fixture(autouse=True)
def _decoder() -> None:
    qr.zbarimg()


def reads_on_both_themes(lines: list[str], data: str) -> None:
    for theme in qr.THEMES:
        assert qr.decode(lines, theme) == [data], f"{theme.name} theme:\n" + "\n".join(lines)


def reads_plain(lines: list[str], data: str) -> None:
    """Drawn for a dark background: read there as it is, on a light one as an inverted code."""
    assert all("\x1b" not in line for line in lines), lines
    assert qr.decode(lines, qr.DARK) == [data]
    assert qr.decode(lines, qr.LIGHT, inverted=True) == [data]


def on_terminal(machine: Machine, *args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    """The output of `cclink args...` run on a terminal, which must succeed."""
    status, output = terminal.on_terminal(
        machine.command(*args), env={**machine.env, **(env or {})}, cwd=cwd or machine.home
    )
    assert status == 0, output
    return output


def pair_offer_piped(machine: Machine) -> str:
    """What `cclink pair --qr` writes to stderr, up to the line that tells what to run on the other machine."""
    offering = machine.spawn("pair", "--qr", "-y")
    assert offering.stderr is not None
    try:
        shown: list[str] = []
        while not (line := offering.stderr.readline()).startswith("On the other machine"):
            assert line, "".join(shown)
            shown.append(line)
        return "".join(shown) + line
    finally:
        offering.kill()
        offering.communicate()


def pair_offer_on_terminal(machine: Machine) -> str:
    """What `cclink pair --qr` shows on a terminal, up to what to run on the other machine."""
    offering, master = terminal.start_on_terminal(machine.command("pair", "--qr"), env=machine.env, cwd=machine.home)
    try:
        return terminal.wait_for(master, "On the other machine")
    finally:
        os.close(master)
        offering.kill()
        offering.wait()


# --- console.qr_text and show_qr ---------------------------------------------------------------


@pytest.mark.parametrize("data", PAYLOADS)
def test_a_qr_code_reads_on_both_themes_in_colour_and_plain_on_a_dark_one(data: str) -> None:
    reads_on_both_themes(console.qr_text(data, colour=True).split("\n"), data)
    reads_plain(console.qr_text(data).split("\n"), data)


def show_qr_on_terminal(data: str, env: dict[str, str]) -> str:
    code = textwrap.dedent(
        f"""
        from cclink.cli import console
        console.show_qr({data!r})
        """
    )
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("CCLINK_") and k != "NO_COLOR"}
    status, output = terminal.on_terminal([sys.executable, "-c", code], env={**child_env, **env})
    assert status == 0, output
    return output


def test_show_qr_paints_its_colours_on_a_terminal() -> None:
    data = "cclink pickup pk:df9sse9bp1nuftim3yhxiuk6w6r5hddsskjygpydux7esxjstioo"
    reads_on_both_themes(qr.qr_lines(show_qr_on_terminal(data, {})), data)


def test_show_qr_is_plain_with_no_color_set() -> None:
    data = "3f2b9c1e-7a44-4d1b-9e0f-0123456789ab"
    reads_plain(qr.qr_lines(show_qr_on_terminal(data, {"NO_COLOR": "1"})), data)


def test_show_qr_is_plain_when_piped() -> None:
    data = "3f2b9c1e-7a44-4d1b-9e0f-0123456789ab"
    code = f"from cclink.cli import console; console.show_qr({data!r})"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    reads_plain(qr.qr_lines(result.stdout), data)


# --- what `cclink --qr` and `cclink pickup --qr` print ----------------------------------------------


@pytest.mark.e2e
def test_the_publish_qr_code_holds_the_pickup_command_in_colour_on_a_terminal_only(laptop: Machine) -> None:
    key = laptop.init()
    project = laptop.project("app")
    laptop.add_session(project)

    piped = qr.qr_lines(laptop.ok("--qr", cwd=project).stdout)
    shown = on_terminal(laptop, "--qr", cwd=project)
    without_colour = [
        on_terminal(laptop, "--qr", cwd=project, env={"NO_COLOR": "1"}),
        on_terminal(laptop, "--qr", "--no-color", cwd=project),
    ]

    [command] = qr.decode(piped, qr.DARK)
    # The full command, with the key a phone needs to pick it up (see issue 18).
    assert command.startswith("cclink pickup ") and key in command, command
    reads_plain(piped, command)
    reads_on_both_themes(qr.qr_lines(shown), command)
    for output in without_colour:
        reads_plain(qr.qr_lines(output), command)


@pytest.mark.e2e
def test_the_pickup_qr_code_holds_the_session_id_on_a_terminal_and_piped(paired: tuple[Machine, Machine]) -> None:
    laptop, desktop = paired
    project = laptop.project("app")
    session_id = laptop.add_session(project)
    laptop.ok(cwd=project)

    piped = desktop.ok("pickup", "--qr")
    shown = on_terminal(desktop, "pickup", "--qr")

    reads_plain(qr.qr_lines(piped.stdout), session_id)
    reads_on_both_themes(qr.qr_lines(shown), session_id)
    assert desktop.launches() == []


@pytest.mark.e2e
def test_the_pair_qr_code_holds_the_code_piped_and_on_a_terminal(laptop: Machine) -> None:
    laptop.init()

    piped, shown = pair_offer_piped(laptop), pair_offer_on_terminal(laptop)

    for output, reads in ((piped, reads_plain), (shown, reads_on_both_themes)):
        [decoded] = qr.decode(qr.qr_lines(output), qr.DARK)
        code = re.search(r"cclink pair (\S+)", output)
        assert code and code.group(1) in decoded, output
        reads(qr.qr_lines(output), decoded)
