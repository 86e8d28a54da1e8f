"""Talking to the person at the terminal: prompts, progress and notes on stderr.

Results (what a script would capture) go to stdout through out(); everything
else here writes to stderr so that it never mixes with them. Whatever reaches
the terminal passes through for_terminal() first: text from a publisher or a
peer must not be able to steer the terminal with control characters. The one
exception, show_qr(), writes only block characters and cclink's own colours.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import shutil
import sys
import threading
from collections.abc import Callable
from types import TracebackType
from typing import TextIO

from cclink.errors import Aborted, NoInput, UsageError, WeakSecret
from cclink.flows.ui import SECRET_TRIES
from cclink.text import printable


def _isatty(stream: TextIO | None) -> bool:
    try:
        return stream is not None and stream.isatty()
    except (ValueError, OSError):
        # A closed or detached stream is no terminal.
        return False


def is_interactive() -> bool:
    """Whether there is a person to ask: stdin and stderr are both terminals."""
    return _isatty(sys.stdin) and _isatty(sys.stderr)


# --- showing text safely ------------------------------------------------------------

# The same without C0, which json.dumps escapes in strings itself and uses
# (newlines, indentation) between them.
_UNSAFE_IN_JSON = re.compile("[\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def for_terminal(text: str) -> str:
    """text with each of its lines made printable: only the line breaks between them survive."""
    return "\n".join(printable(line) for line in text.split("\n"))


def safe_json(data: object) -> str:
    """data as indented JSON with non-ASCII text kept readable but every control character escaped."""
    # With ensure_ascii=False, json.dumps leaves DEL, C1, bidi controls and lone
    # surrogates raw. They can only occur inside strings, where a \\uXXXX escape
    # decodes to the same character.
    text = json.dumps(data, indent=2, ensure_ascii=False)
    return _UNSAFE_IN_JSON.sub(lambda match: f"\\u{ord(match.group()):04x}", text)


# --- writing -------------------------------------------------------------------------


def out(text: str = "", *, flush: bool = False) -> None:
    """A result (one or more lines) on stdout."""
    print(for_terminal(text), flush=flush)


def say(message: str) -> None:
    """One line for the human (progress or a note), on stderr; dropped if the terminal is gone.

    A line that starts with "Note:" or "Burn-after-read:" stands out in colour on a terminal.
    """
    safe = for_terminal(message)
    for prefix in MARKED_PREFIXES:
        if safe.startswith(prefix):
            safe = _coloured(prefix, YELLOW) + safe[len(prefix) :]
            break
    _write_stderr(safe + "\n")


def out_marked(text: str, marked: str) -> None:
    """text, then marked in bold yellow on a terminal, as one line on stdout: what must not be missed (burn, PIN)."""
    tail = for_terminal(marked)
    if tail and colour_on(sys.stdout):
        tail = f"\x1b[{YELLOW}m{tail}\x1b[0m"  # after escaping: cclink's own sequence, never a publisher's
    print(for_terminal(text) + tail)


def say_error(sentence: str) -> None:
    """`cclink: error: <sentence>` on stderr, the prefix in red on a terminal, the sentence on one line."""
    _write_stderr(_coloured(ERROR, RED) + " " + printable(sentence) + "\n")


# --- colour ---------------------------------------------------------------------------

NOTE, ERROR = "Note:", "cclink: error:"
MARKED_PREFIXES = (NOTE, "Burn-after-read:")
RED, YELLOW = "1;31", "1;33"  # SGR parameters: bold red, bold yellow
_colour_wanted = True


def no_colour() -> None:
    """--no-color: plain text even on a terminal."""
    global _colour_wanted
    _colour_wanted = False


def colour_on(stream: TextIO | None = None) -> bool:
    """Colour on stream (stderr by default) only if it is a terminal.

    Never with NO_COLOR set to anything (no-color.org) or --no-color.
    """
    return _colour_wanted and not os.environ.get("NO_COLOR") and _isatty(sys.stderr if stream is None else stream)


def _coloured(text: str, sgr: str) -> str:
    # Added after escaping: these are cclink's own sequences, never a publisher's.
    return f"\x1b[{sgr}m{text}\x1b[0m" if colour_on() else text


def _write_stderr(text: str) -> None:
    try:
        sys.stderr.write(text)
        sys.stderr.flush()
    except (AttributeError, OSError, ValueError):
        # No stderr, or a closed terminal (EIO) or pipe: a note is not worth a crash,
        # least of all while cclink is cleaning up after a hang-up.
        pass


# --- questions ---------------------------------------------------------------------


def secret(prompt: str, env_var: str, *, confirm: bool = False, check: Callable[[str], None] | None = None) -> str:
    """A secret from env_var when set, else typed without echo at the terminal.

    check (raising WeakSecret) judges it first, before it is typed again to
    confirm; a refused one may be typed anew, SECRET_TRIES times in all.
    """
    value = os.environ.get(env_var, "")
    if value:
        if check is not None:
            check(value)
        return value
    if not is_interactive():
        raise NoInput(f"a secret is needed and there is no terminal to type it on; set {env_var} instead")
    attempt = 1
    while True:
        first = _getpass(prompt)
        try:
            if check is not None:
                check(first)
            break
        except WeakSecret as refused:
            if attempt == SECRET_TRIES:
                raise
            say(f"{refused.message[:1].upper()}{refused.message[1:]}; try another.")
            attempt += 1
    if confirm and _getpass("Type it again to confirm: ") != first:
        raise UsageError("the two entries did not match")
    return first


def can_retype(env_var: str) -> bool:
    """Whether a wrong secret can be asked for again: a person types it, it does not come from env_var."""
    return not os.environ.get(env_var, "") and is_interactive()


def _getpass(prompt: str) -> str:
    try:
        return getpass.getpass(printable(prompt), stream=sys.stderr)
    except EOFError:
        raise Aborted("no input was given") from None


def confirm(question: str, *, assume_yes: bool, when_not_interactive: bool) -> bool:
    """Ask a yes/no question; anything but y/yes, including end of input, is no."""
    if assume_yes:
        return True
    if not is_interactive():
        return when_not_interactive
    answer = _ask(f"{question} [y/N] ")
    return answer is not None and answer.strip().lower() in ("y", "yes")


def choose(title: str, options: list[str], *, when_not_interactive: int) -> int:
    """The 0-based index of an option picked from a numbered menu; asks again until it gets one.

    Without a person to ask (see is_interactive), when_not_interactive.
    """
    if not options:
        raise ValueError("choose() needs at least one option")
    if not is_interactive():
        return when_not_interactive
    lines = [title] + [f"  {n}) {option}" for n, option in enumerate(options, 1)]
    sys.stderr.write("\n".join(printable(line) for line in lines) + "\n")
    while True:
        answer = _ask(f"Number (1-{len(options)}): ")
        if answer is None:
            raise Aborted("nothing was chosen")
        answer = answer.strip()
        if answer.isdigit() and 1 <= int(answer) <= len(options):
            return int(answer) - 1
        say(f"Please type a number from 1 to {len(options)}.")


def _ask(prompt: str) -> str | None:
    """A line typed in answer to prompt, or None at end of input."""
    sys.stderr.write(printable(prompt))
    sys.stderr.flush()
    line = sys.stdin.readline()
    return line if line else None


# --- spinner -----------------------------------------------------------------------


class Spinner:
    """A message with a turning wheel on stderr; does nothing unless stderr is a terminal."""

    INTERVAL = 0.1

    def __init__(self, message: str) -> None:
        self._message = printable(message)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._frames = _spinner_frames(sys.stderr)

    def update(self, message: str) -> None:
        with self._lock:
            self._message = printable(message)

    def __enter__(self) -> Spinner:
        if _isatty(sys.stderr):
            self._thread = threading.Thread(target=self._run, name="cclink-spinner", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        self._thread = None
        self._write("\r\x1b[K")

    def _run(self) -> None:
        turn = 0
        while not self._stop.is_set():
            with self._lock:
                message = self._message
            frame = self._frames[turn % len(self._frames)]
            self._write(f"\r\x1b[K{_fit(f'{frame} {message}')}")
            turn += 1
            self._stop.wait(self.INTERVAL)

    @staticmethod
    def _write(text: str) -> None:
        try:
            sys.stderr.write(text)
            sys.stderr.flush()
        except (OSError, ValueError):
            # The terminal went away; progress is not worth a crash.
            pass


def progress(message: str) -> Spinner:
    """`with progress("Publishing") as spin: ...`; spin.update(text) changes the message."""
    return Spinner(message)


def _spinner_frames(stream: TextIO) -> str:
    braille = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
    try:
        braille.encode(getattr(stream, "encoding", None) or "ascii")
    except (UnicodeEncodeError, LookupError):
        return "|/-\\"
    return braille


def _fit(text: str) -> str:
    # A wrapped line cannot be taken back with \r, so never let it wrap.
    try:
        columns = os.get_terminal_size(sys.stderr.fileno()).columns
    except (AttributeError, ValueError, OSError):
        columns = shutil.get_terminal_size().columns
    if columns < 8:
        # An unset size (0 columns) says nothing; do not cut the text to nothing.
        return text
    width = columns - 1
    return text if len(text) <= width else text[: width - 3] + "..."


# --- formatting --------------------------------------------------------------------


# Black and white from the 256-colour palette's cube: fixed colours, where the
# 16 basic ones are the theme's to remap (a theme's "white" may be grey, or dark).
QR_COLOURS = "38;5;231;48;5;16"  # SGR parameters: white light modules on black
QR_BORDER = 4  # modules of quiet zone, as the QR specification asks


def qr_text(data: str, *, colour: bool = False) -> str:
    """A QR code of data drawn with half blocks: light modules solid, quiet zone included.

    Plain, it is right on a dark background, and on a light one it shows
    inverted, which many readers (zbar, Google Lens) take but some do not. With
    colour it paints its own white and black, so it reads on any theme alike.
    """
    rows = _qr_modules(data)
    lines = [
        "".join(_HALF_BLOCKS[(not top, not bottom)] for top, bottom in zip(upper, lower, strict=True))
        for upper, lower in zip(rows[0::2], rows[1::2], strict=True)
    ]
    if colour:
        lines = [f"\x1b[{QR_COLOURS}m{line}\x1b[0m" for line in lines]
    return "\n".join(lines)


def show_qr(data: str, *, on_stderr: bool = False) -> None:
    """A QR code of data on stdout (or stderr), in its own colours if that is a terminal and colour is allowed."""
    stream = sys.stderr if on_stderr else sys.stdout
    # Not through for_terminal(): these are cclink's own sequences, and data is never shown as text.
    drawn = qr_text(data, colour=colour_on(stream)) + "\n"
    if on_stderr:
        _write_stderr(drawn)
    else:
        sys.stdout.write(drawn)
        sys.stdout.flush()


# A cell's character by whether its (top, bottom) halves are light modules.
_HALF_BLOCKS = {(True, True): "\u2588", (True, False): "\u2580", (False, True): "\u2584", (False, False): " "}


def _qr_modules(data: str) -> list[list[bool]]:
    """The code's rows, True for a dark module, in a light quiet zone with one row more below.

    A QR code is an odd number of modules high; the extra row fills the last
    line's lower half with quiet zone rather than with the terminal's background.
    """
    import qrcode  # only for --qr; it costs start-up time

    code = qrcode.QRCode(border=0, error_correction=qrcode.constants.ERROR_CORRECT_L)
    code.add_data(data)
    code.make(fit=True)
    side = [False] * QR_BORDER
    rows = [side + [bool(module) for module in row] + side for row in code.modules]
    blank = [False] * len(rows[0])
    return [blank] * QR_BORDER + rows + [blank] * (QR_BORDER + 1)
