from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import textwrap
import threading
import time

import pytest
import qrcode
from support import terminal

from cclink import text
from cclink.cli import console
from cclink.errors import NoInput, UsageError

VAR = "CCLINK_TEST_SECRET"


# --- a real terminal for the interactive paths ------------------------------------------


def on_terminal(
    code: str, exchanges: list[tuple[str, bytes]] = (), *, env: dict[str, str] | None = None, columns: int = 80
) -> tuple[int, str]:
    """Run Python code on a pseudo-terminal (see terminal.on_terminal), without the caller's CCLINK_ settings."""
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("CCLINK_")}
    child_env.pop("COLUMNS", None)
    child_env.update(env or {})
    return terminal.on_terminal(
        [sys.executable, "-c", textwrap.dedent(code)], exchanges, env=child_env, columns=columns
    )


PRELUDE = """
import sys
from cclink.cli import console
from cclink.errors import CclinkError
def report(value):
    print("RESULT=" + repr(value))
def run(f):
    try:
        report(f())
    except CclinkError as e:
        report(type(e).__name__ + ": " + str(e))
"""


def interactive(body: str, exchanges: list[tuple[str, bytes]] = (), **kwargs) -> tuple[str, str]:
    """(the repr after RESULT=, the whole terminal output) of running body on a terminal."""
    status, output = on_terminal(PRELUDE + textwrap.dedent(body), exchanges, **kwargs)
    assert status == 0, output
    result = output.split("RESULT=", 1)[1].splitlines()[0]
    return result, output


# --- is_interactive and say -------------------------------------------------------------


def test_not_interactive_without_terminals() -> None:
    code = "from cclink.cli import console; print(console.is_interactive())"
    result = subprocess.run(
        [sys.executable, "-c", code], stdin=subprocess.DEVNULL, capture_output=True, text=True, check=True
    )
    assert result.stdout == "False\n"


def test_interactive_on_a_terminal() -> None:
    assert interactive("report(console.is_interactive())")[0] == "True"


def test_say_writes_one_line_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    console.say("Publishing to the DHT")
    assert capsys.readouterr() == ("", "Publishing to the DHT\n")


# --- printable and the boundary filter ------------------------------------------------------

ESC = "\x1b"
TITLE = "\x1b]0;pwned\x07"  # sets the terminal window's title
ERASE = "\x1b[2K"  # erases the line the cursor is on


@pytest.mark.parametrize(
    ("unsafe", "shown"),
    [
        (TITLE, "\\x1b]0;pwned\\x07"),
        (ERASE, "\\x1b[2K"),
        ("\x00\x01\x1f", "\\x00\\x01\\x1f"),
        ("one\ntwo\rthree\tfour", "one\\ntwo\\rthree\\tfour"),
        ("\x7f", "\\x7f"),
        ("\x80\x9b2K\x9f", "\\x80\\x9b2K\\x9f"),  # C1: \x9b is CSI on some terminals
        ("txt.\u202egnp", "txt.\\u202egnp"),  # right-to-left override
        ("\u202a\u202b\u202c\u202d", "\\u202a\\u202b\\u202c\\u202d"),
        ("\u2066\u2067\u2068\u2069", "\\u2066\\u2067\\u2068\\u2069"),  # isolates
        ("a\u2028b\u2029c", "a\\u2028b\\u2029c"),  # line and paragraph separators
        ("\ud800", "\\ud800"),  # a lone surrogate could not even be encoded
    ],
)
def test_printable_escapes_what_a_terminal_acts_on(unsafe: str, shown: str) -> None:
    assert text.printable(unsafe) == shown


@pytest.mark.parametrize(
    "ordinary",
    [
        "",
        "laptop",
        "/home/me/work/my app",
        "C:\\Users\\me",
        "a lone \\ backslash",
        "caf\u00e9 \u65e5\u672c \u00a0 \U0001f600",
        "\u200b~!@#$%^&*()",
    ],
)
def test_printable_leaves_ordinary_text_alone(ordinary: str) -> None:
    assert text.printable(ordinary) == ordinary


def test_printable_output_is_one_line_without_any_control_character() -> None:
    every = "".join(chr(c) for c in range(0x100)) + "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
    shown = text.printable(every)
    assert all(0x20 <= ord(c) < 0x7F or 0xA0 <= ord(c) <= 0xFF for c in shown), shown
    assert text.printable(shown) == shown  # escaping twice changes nothing


def test_for_terminal_keeps_only_the_line_breaks() -> None:
    assert console.for_terminal(f"Session: x\n  on {TITLE}\r\n") == "Session: x\n  on \\x1b]0;pwned\\x07\\r\n"


def test_safe_json_escapes_every_control_and_decodes_to_the_same_strings() -> None:
    data = {
        "hostname": f"{TITLE}host\x7f\x9b\u202e\u2066\u2028",
        "project": "/home/caf\u00e9/\u65e5\u672c",
        "n": 1,
        "none": None,
    }
    text = console.safe_json(data)
    assert json.loads(text) == data
    assert text == console.for_terminal(text)  # nothing left for the terminal filter to change
    assert "caf\u00e9/\u65e5\u672c" in text  # readable text stays readable
    assert "\\u009b" in text and "\\u202e" in text and "\\u001b" in text


def test_say_escapes_control_characters(capsys: pytest.CaptureFixture[str]) -> None:
    console.say(f"Note: {TITLE}{ERASE}\x9b2K\u202e")
    assert capsys.readouterr() == ("", "Note: \\x1b]0;pwned\\x07\\x1b[2K\\x9b2K\\u202e\n")


def test_out_escapes_control_characters_but_keeps_lines(capsys: pytest.CaptureFixture[str]) -> None:
    console.out(f"Session: x\nProject: /tmp/{ERASE}")
    assert capsys.readouterr() == ("Session: x\nProject: /tmp/\\x1b[2K\n", "")


class ClosedTerminal(io.StringIO):
    def write(self, text: str) -> int:  # type: ignore[override]
        raise OSError(5, "Input/output error")


def test_say_to_a_closed_terminal_is_dropped_quietly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stderr", ClosedTerminal())
    console.say("Stopped offering the session.")  # raises nothing


def test_prompts_menus_and_spinner_escape_what_they_show() -> None:
    body = f"""
    import time
    TITLE, ERASE = {TITLE!r}, {ERASE!r}
    with console.progress("Looking up " + TITLE) as spin:
        time.sleep(0.25)
        spin.update("Fetching " + ERASE)
        time.sleep(0.25)
    console.choose("Pick " + ERASE, ["first " + TITLE], when_not_interactive=0)
    report(console.confirm("Resume " + TITLE + "?", assume_yes=False, when_not_interactive=True))
    """
    _, output = interactive(body, [("Number (1-1): ", b"1\n"), ("? [y/N] ", b"n\n")])
    # The spinner's own way of redrawing its line is the only escape sequence that gets through.
    assert output.replace("\r\x1b[K", "").count(ESC) == 0, output
    for shown in (
        "Looking up \\x1b]0;pwned\\x07",
        "Fetching \\x1b[2K",
        "Pick \\x1b[2K",
        "first \\x1b]0;pwned\\x07",
        "Resume \\x1b]0;pwned\\x07?",
    ):
        assert shown in output, shown


def test_secret_prompt_is_escaped() -> None:
    result, output = interactive(
        f"run(lambda: console.secret('PIN for ' + {ERASE!r} + ': ', {VAR!r}))", [("PIN for ", b"hunter22\n")]
    )
    assert result == "'hunter22'"
    assert ESC not in output and "PIN for \\x1b[2K: " in output


# --- secret -----------------------------------------------------------------------------------


def test_secret_from_environment(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv(VAR, "correct horse")
    assert console.secret("PIN: ", VAR, confirm=True) == "correct horse"
    assert capsys.readouterr() == ("", "")


def test_secret_environment_wins_over_terminal() -> None:
    result, output = interactive(f"run(lambda: console.secret('PIN: ', {VAR!r}))", env={VAR: "from-env"})
    assert result == "'from-env'"
    assert "PIN:" not in output


@pytest.mark.parametrize("value", [None, ""])
def test_secret_without_terminal_or_variable(value: str | None) -> None:
    code = f"from cclink.cli import console; console.secret('PIN: ', {VAR!r})"
    env = {k: v for k, v in os.environ.items() if k != VAR}
    if value is not None:
        env[VAR] = value
    result = subprocess.run(
        [sys.executable, "-c", code], stdin=subprocess.DEVNULL, env=env, capture_output=True, text=True
    )
    assert result.returncode != 0
    assert (
        f"cclink.errors.NoInput: a secret is needed and there is no terminal to type it on; set {VAR} instead"
        in result.stderr
    )


def test_secret_without_terminal_in_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(VAR, raising=False)
    monkeypatch.setattr(sys, "stdin", io.StringIO("typed\n"))
    with pytest.raises(NoInput, match=VAR):
        console.secret("PIN: ", VAR)


def test_secret_typed_without_echo() -> None:
    result, output = interactive(f"run(lambda: console.secret('PIN: ', {VAR!r}))", [("PIN: ", b"hunter22\n")])
    assert result == "'hunter22'"
    assert "hunter22" not in output.split("RESULT=")[0]


def test_secret_confirmed() -> None:
    result, _ = interactive(
        f"run(lambda: console.secret('New PIN: ', {VAR!r}, confirm=True))",
        [("New PIN: ", b"hunter22\n"), ("confirm: ", b"hunter22\n")],
    )
    assert result == "'hunter22'"


def test_secret_confirmation_mismatch() -> None:
    result, output = interactive(
        f"run(lambda: console.secret('New PIN: ', {VAR!r}, confirm=True))",
        [("New PIN: ", b"hunter22\n"), ("confirm: ", b"hunter23\n")],
    )
    assert result == "'UsageError: the two entries did not match'"
    assert "hunter2" not in output


def test_a_refused_secret_is_said_before_it_is_typed_again_and_another_may_be_typed() -> None:
    check = "from cclink.wire import kdf; check = kdf.check_pin"
    result, output = interactive(
        f"{check}\nrun(lambda: console.secret('New PIN: ', {VAR!r}, confirm=True, check=check))",
        [
            ("New PIN: ", b"1234\n"),
            ("New PIN: ", b"correct horse\n"),
            ("confirm: ", b"correct horse\n"),
        ],
    )
    assert result == "'correct horse'"
    assert output.index("try another.") < output.index("Type it again")


def test_three_refused_secrets_end_it() -> None:
    check = "from cclink.wire import kdf; check = kdf.check_pin"
    result, output = interactive(
        f"{check}\nrun(lambda: console.secret('New PIN: ', {VAR!r}, confirm=True, check=check))",
        [("New PIN: ", b"1234\n"), ("New PIN: ", b"1111\n"), ("New PIN: ", b"12345678\n")],
    )
    assert result.startswith("'WeakSecret:")
    assert "Type it again" not in output


def test_a_secret_from_the_environment_is_checked_too(monkeypatch: pytest.MonkeyPatch) -> None:
    from cclink.errors import WeakSecret
    from cclink.wire import kdf

    monkeypatch.setenv(VAR, "1234")
    with pytest.raises(WeakSecret):
        console.secret("New PIN: ", VAR, confirm=True, check=kdf.check_pin)
    assert not console.can_retype(VAR)


# --- confirm ------------------------------------------------------------------------------------


class Unreadable(io.StringIO):
    def read(self, *args):  # type: ignore[override]
        raise AssertionError("stdin must not be read")

    readline = read


def test_confirm_assume_yes_never_asks(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "stdin", Unreadable())
    assert console.confirm("Overwrite?", assume_yes=True, when_not_interactive=False) is True
    assert capsys.readouterr() == ("", "")


@pytest.mark.parametrize("default", [True, False])
def test_confirm_not_interactive_gives_the_default(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], default: bool
) -> None:
    monkeypatch.setattr(sys, "stdin", Unreadable())
    assert console.confirm("Overwrite?", assume_yes=False, when_not_interactive=default) is default
    assert capsys.readouterr() == ("", "")


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        (b"y\n", True),
        (b"YES\n", True),
        (b"  y \n", True),
        (b"n\n", False),
        (b"\n", False),
        (b"yep\n", False),
        (b"\x04", False),
    ],
)
def test_confirm_asks_on_the_terminal(typed: bytes, expected: bool) -> None:
    result, _ = interactive(
        "report(console.confirm('Resume session x?', assume_yes=False, when_not_interactive=True))",
        [("Resume session x? [y/N] ", typed)],
    )
    assert result == repr(expected)


# --- choose --------------------------------------------------------------------------------------


def test_choose_reasks_until_a_valid_number() -> None:
    result, output = interactive(
        "run(lambda: console.choose('Several sessions match; which one?', ['first', 'second', 'third'],"
        " when_not_interactive=0))",
        [
            ("Number (1-3): ", b"abc\n"),
            ("Number (1-3): ", b"0\n"),
            ("Number (1-3): ", b"4\n"),
            ("Number (1-3): ", b" 2\n"),
        ],
    )
    assert result == "1"
    assert "Several sessions match; which one?\r\n  1) first\r\n  2) second\r\n  3) third\r\n" in output
    assert output.count("Please type a number from 1 to 3.") == 3


def test_choose_end_of_input_aborts() -> None:
    result, _ = interactive(
        "run(lambda: console.choose('Pick', ['a', 'b'], when_not_interactive=0))", [("Number (1-2): ", b"\x04")]
    )
    assert result == "'Aborted: nothing was chosen'"


def test_choose_without_a_terminal_takes_the_given_option_and_shows_nothing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("1\n"))
    assert console.choose("Pick", ["a", "b", "c"], when_not_interactive=2) == 2
    assert capsys.readouterr() == ("", "")


# --- spinner ---------------------------------------------------------------------------------------


def test_spinner_silent_when_stderr_is_not_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    threads = threading.active_count()
    with console.progress("Publishing") as spin:
        assert threading.active_count() == threads
        spin.update("Retrying")
        time.sleep(0.25)
    assert capsys.readouterr() == ("", "")


def test_spinner_lets_exceptions_through() -> None:
    with pytest.raises(UsageError):
        with console.progress("Publishing"):
            raise UsageError("boom")


def test_spinner_on_a_terminal() -> None:
    body = """
    import time
    with console.progress("Publishing to the DHT") as spin:
        time.sleep(0.35)
        spin.update("Retrying in 2s")
        time.sleep(0.35)
    sys.stderr.write("<after>")
    sys.stderr.flush()
    import threading
    report(threading.active_count())
    """
    result, output = interactive(body, env={"PYTHONIOENCODING": "utf-8"})
    assert result == "1"  # the spinner's thread is gone
    assert "\u280b Publishing to the DHT" in output
    assert "Retrying in 2s" in output
    # The line is cleared before anything else is written.
    assert output.split("<after>")[0].endswith("\r\x1b[K")


def test_spinner_never_wraps_a_narrow_terminal() -> None:
    body = """
    import time
    with console.progress("x" * 100):
        time.sleep(0.2)
    report(0)
    """
    _, output = interactive(body, columns=30)
    drawn = [part for part in output.split("\r\x1b[K") if "x" in part]
    assert drawn and all(len(part) <= 29 and part.endswith("...") for part in drawn)


def test_spinner_falls_back_to_ascii() -> None:
    _, output = interactive(
        """
    import time
    with console.progress("Working"):
        time.sleep(0.25)
    report(0)
    """,
        env={"PYTHONIOENCODING": "ascii"},
    )
    assert "| Working" in output


# --- qr_text ---------------------------------------------------------------------------------------

# Half blocks as qr_text draws them: solid is a light module (top, bottom).
_LIGHT = {"\u2588": (1, 1), "\u2580": (1, 0), "\u2584": (0, 1), " ": (0, 0)}


def _modules_drawn(text: str) -> list[list[bool]]:
    """The dark/light grid a QR reader would see, without the quiet zone."""
    grid: list[list[bool]] = []
    for line in text.split("\n"):
        pairs = [_LIGHT[c] for c in line]
        grid.append([not top for top, _ in pairs])
        grid.append([not bottom for _, bottom in pairs])

    def uniform(row: list[bool]) -> bool:
        return all(row) or not any(row)

    for _ in range(2):  # rows, then columns (by transposing)
        while grid and uniform(grid[0]):
            grid.pop(0)
        while grid and uniform(grid[-1]):
            grid.pop()
        grid = [list(column) for column in zip(*grid, strict=True)]
    return grid


def test_qr_text_draws_the_qr_code() -> None:
    data = "cclink pickup df9sse9bp1nuftim3yhxiuk6w6r5hddsskjygpydux7esxjstioo"
    drawn = _modules_drawn(console.qr_text(data))
    expected = []
    for level in (qrcode.constants.ERROR_CORRECT_L, qrcode.constants.ERROR_CORRECT_M):
        code = qrcode.QRCode(border=0, error_correction=level)
        code.add_data(data)
        code.make(fit=True)
        expected.append([[bool(m) for m in row] for row in code.modules])
    assert drawn in expected


def test_qr_text_is_multiline_deterministic_and_rectangular() -> None:
    text = console.qr_text("3f2b9c1e-7a44-4d1b-9e0f-0123456789ab")
    lines = text.split("\n")
    assert len(lines) > 10
    assert len({len(line) for line in lines}) == 1
    assert not text.endswith("\n")
    assert set(text) <= set(_LIGHT) | {"\n"}
    assert console.qr_text("3f2b9c1e-7a44-4d1b-9e0f-0123456789ab") == text
    assert console.qr_text("something else") != text


# --- format_duration ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (0, "0s"),
        (0.4, "0s"),
        (-5, "0s"),
        (1, "1s"),
        (45, "45s"),
        (59.6, "1m"),
        (60, "1m"),
        (200, "3m 20s"),
        (3599, "59m 59s"),
        (3600, "1h"),
        (3660, "1h 1m"),
        (3601, "1h"),
        (7500, "2h 5m"),
        (86399, "23h 59m"),
        (86400, "1d"),
        (93600, "1d 2h"),
        (86400 + 300, "1d"),
        (30 * 86400, "30d"),
    ],
)
def test_format_duration(seconds: float, expected: str) -> None:
    assert text.format_duration(seconds) == expected


@pytest.mark.parametrize(
    ("done", "total", "rate", "expected"),
    [
        (0, 20 * 2**20, 0, "Fetching [--------------------] 0 B of 20.0 MiB"),
        (5 * 2**20, 20 * 2**20, 2**20, "Fetching [#####---------------] 5.0 MiB of 20.0 MiB, 1.0 MiB/s, 15s left"),
        (20 * 2**20, 20 * 2**20, 4 * 2**20, "Fetching [####################] 20.0 MiB of 20.0 MiB, 4.0 MiB/s, 0s left"),
        (0, 0, 0, "Fetching [--------------------] 0 B of 0 B"),
    ],
)
def test_transfer_status_shows_bytes_rate_and_time_left(done: int, total: int, rate: float, expected: str) -> None:
    assert text.transfer_status("Fetching", done, total, rate) == expected


@pytest.mark.parametrize(
    ("peers", "sent", "rate", "expected"),
    [
        (0, 0, 0, "Seeding: 0 peers, 0 B sent"),
        (1, 3 * 2**20, 1.5 * 2**20, "Seeding: 1 peer, 3.0 MiB sent, 1.5 MiB/s"),
        (2, 512, 0, "Seeding: 2 peers, 512 B sent"),
    ],
)
def test_seeding_status_shows_peers_bytes_sent_and_rate(peers: int, sent: int, rate: float, expected: str) -> None:
    assert text.seeding_status(peers, sent, rate) == expected


# --- what a new user is told after `cclink init` -------------------------------------------------------


@pytest.mark.e2e
def test_init_ends_with_what_to_run_next_here_and_on_the_other_machine(laptop, desktop) -> None:
    created = laptop.ok("init", "--no-passphrase")
    imported = desktop.ok("init", "--no-passphrase", "--import", str(laptop.key_file))

    # stdout keeps only the result, for scripts; the next step is for the person, on stderr.
    assert [line.split()[0] for line in created.stdout.splitlines()] == ["Created", "Saved"]
    assert re.search(r"^\s+here, in a project:\s+cclink\s", created.stderr, re.MULTILINE), created.stderr
    assert "cclink pair " in created.stderr and "`cclink pair CODE` there" in created.stderr, created.stderr
    assert "cclink pickup" in created.stderr
    # An imported key is shared with the machine it came from: nothing to pair.
    assert [line.split()[0] for line in imported.stdout.splitlines()] == ["Imported", "Saved"]
    assert "cclink pickup" in imported.stderr and "pair CODE" not in imported.stderr, imported.stderr


@pytest.mark.parametrize("line", ["Note: it stays published", "Burn-after-read: the handoff was revoked."])
def test_notes_and_burn_lines_stand_out_on_a_terminal(line: str, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setattr(console, "_isatty", lambda stream: True)
    console.say(line)
    prefix, rest = line.split(":", 1)
    assert capsys.readouterr().err == f"\x1b[1;33m{prefix}:\x1b[0m{rest}\n"
