"""Talking to the person at the terminal: prompts, progress and notes on stderr.

Results (what a script would capture) go to stdout through out(); everything
else here writes to stderr so that it never mixes with them. Whatever reaches
the terminal passes through for_terminal() first: text from a publisher or a
peer must not be able to steer the terminal with control characters.
"""

from __future__ import annotations

import getpass
import io
import json
import os
import re
import shutil
import sys
import threading
from types import TracebackType
from typing import TextIO

from cclink.errors import Aborted, NoInput, UsageError


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

# What a terminal may act on instead of showing: C0 controls (ESC starts a
# sequence that can set the window title or erase lines), DEL, C1 controls
# (\x9b is CSI on some terminals), bidi overrides and isolates (text shown in
# another order than it is stored), line and paragraph separators, and lone
# surrogates (they cannot even be encoded, so printing one would fail).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_SHORT_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# The same without C0, which json.dumps escapes in strings itself and uses
# (newlines, indentation) between them.
_UNSAFE_IN_JSON = re.compile("[\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def _escape(character: str) -> str:
    code = ord(character)
    return _SHORT_ESCAPES.get(character) or (f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}")


def printable(text: str) -> str:
    """text safe to show on one line: every character a terminal could act on becomes a visible escape such as \\x1b.

    Backslashes stay as they are, so paths read naturally; a literal `\\x1b`
    and an escaped ESC then look alike, which is harmless.
    """
    return _UNSAFE.sub(lambda match: _escape(match.group()), text)


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
    """One line for the human (progress or a note), on stderr; dropped if the terminal is gone."""
    _write_stderr(for_terminal(message) + "\n")


def _write_stderr(text: str) -> None:
    try:
        sys.stderr.write(text)
        sys.stderr.flush()
    except (AttributeError, OSError, ValueError):
        # No stderr, or a closed terminal (EIO) or pipe: a note is not worth a crash,
        # least of all while cclink is cleaning up after a hang-up.
        pass


# --- questions ---------------------------------------------------------------------


def secret(prompt: str, env_var: str, confirm: bool = False) -> str:
    """A secret from env_var when set, else typed without echo at the terminal."""
    value = os.environ.get(env_var, "")
    if value:
        return value
    if not is_interactive():
        raise NoInput(f"a secret is needed and there is no terminal to type it on; set {env_var} instead")
    first = _getpass(prompt)
    if confirm and _getpass("Type it again to confirm: ") != first:
        raise UsageError("the two entries did not match")
    return first


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


def choose(title: str, options: list[str]) -> int:
    """The 0-based index of an option picked from a numbered menu; asks again until it gets one."""
    if not options:
        raise ValueError("choose() needs at least one option")
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


def spinner(message: str) -> Spinner:
    """`with spinner("Publishing") as spin: ...`; spin.update(text) changes the message."""
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


def qr_text(data: str) -> str:
    """A QR code of data drawn with half blocks, light modules solid (for dark terminals)."""
    import qrcode  # only for --qr; it costs start-up time

    code = qrcode.QRCode(border=2, error_correction=qrcode.constants.ERROR_CORRECT_L)
    code.add_data(data)
    code.make(fit=True)
    out = io.StringIO()
    code.print_ascii(out=out, invert=True)
    # qrcode draws "nothing" as a no-break space, which some fonts render oddly.
    return out.getvalue().replace("\xa0", " ").rstrip("\n")


_UNITS = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))


def format_duration(seconds: float) -> str:
    """The largest unit and the next one when non-zero: "1d 2h", "2h", "3m 20s", "45s"."""
    remaining = max(0, round(seconds))
    for index, (name, size) in enumerate(_UNITS):
        if remaining >= size or size == 1:
            text = f"{remaining // size}{name}"
            if size > 1:
                next_name, next_size = _UNITS[index + 1]
                rest = remaining % size // next_size
                if rest:
                    text += f" {rest}{next_name}"
            return text
    raise AssertionError("unreachable: the last unit is one second")


def format_bytes(count: float) -> str:
    """Bytes in the largest binary unit that keeps the number at or above 1: "512 B", "3.4 MiB"."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


def progress_bar(fraction: float, width: int = 20) -> str:
    filled = round(max(0.0, min(1.0, fraction)) * width)
    return "[" + "#" * filled + "-" * (width - filled) + "]"


def seeding_status(peers: int, sent: int, rate: float) -> str:
    """`Seeding: 1 peer, 3.4 MiB sent, 1.2 MiB/s` (the rate only while sending)."""
    text = f"Seeding: {peers} peer{'' if peers == 1 else 's'}, {format_bytes(sent)} sent"
    return text + (f", {format_bytes(rate)}/s" if rate > 0 else "")


def transfer_status(label: str, done: int, total: int, rate: float) -> str:
    """`label [####----] 12.0 MiB of 20.0 MiB, 4.1 MiB/s, 2s left`."""
    text = f"{label} {progress_bar(done / total if total else 0)} {format_bytes(done)} of {format_bytes(total)}"
    if rate > 0:
        text += f", {format_bytes(rate)}/s, {format_duration((total - done) / rate)} left"
    return text
