"""The way out of a command: every failure becomes one sentence on stderr and an exit code, here alone.

SIGTERM and SIGHUP unwind like Ctrl-C (Terminated), so that every cleanup runs.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import NoReturn

from cclink import text

INTERNAL_ERROR_EXIT = 70
INTERRUPTED_EXIT = 130


def leave(error: BaseException) -> NoReturn:
    """Exit as the way the command ended calls for: a failure is one sentence on stderr, never a traceback."""
    from cclink.errors import CclinkError

    stopped_by = _stopped_by[:1]
    _ignore_termination_signals()
    if stopped_by:
        # Whatever the signal became while unwinding (Typer's exit 130, or an
        # error of a library that caught it), the signal is why cclink stops.
        fail(f"stopped by {signal.Signals(stopped_by[0]).name}", 128 + stopped_by[0])
    if isinstance(error, SystemExit):
        # Typer turns Ctrl-C inside a command into a silent exit 130.
        if _caused_by(error, KeyboardInterrupt):
            fail("interrupted", INTERRUPTED_EXIT)
        written = _flush(sys.stdout)
        _flush(sys.stderr)
        if not written and error.code in (0, None):
            sys.exit(1)  # the result did not get out
        raise error
    if isinstance(error, CclinkError) and error.exit_code == 0:
        finish_with_note(str(error))
    if isinstance(error, CclinkError):
        fail(str(error), error.exit_code)
    if isinstance(error, KeyboardInterrupt):
        fail("interrupted", INTERRUPTED_EXIT)
    if isinstance(error, Exception) and not os.environ.get("CCLINK_DEBUG"):
        # The last line of defence against tracebacks.
        fail(f"internal error ({type(error).__name__}); rerun with CCLINK_DEBUG=1 and report it", INTERNAL_ERROR_EXIT)
    raise error


# --- SIGTERM and SIGHUP -------------------------------------------------------------------


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised in the main thread so that every cleanup written for Ctrl-C runs."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


_TERMINATION_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
# The first termination signal received: set before Terminated is raised, so
# the exit code stays right even where a library turns that exception into another.
_stopped_by: list[int] = []


def unwind_on_termination_signals() -> None:
    """Make SIGTERM and SIGHUP (a closed terminal) unwind like Ctrl-C instead of killing cclink mid-way."""
    for signum in _TERMINATION_SIGNALS:
        # An ignored SIGHUP (nohup) stays ignored: whoever started cclink wants it to outlive the terminal.
        if signal.getsignal(signum) != signal.SIG_IGN:
            signal.signal(signum, _on_termination_signal)


def _on_termination_signal(signum: int, frame: object) -> None:
    if _stopped_by:
        return  # already unwinding: a second signal must not cut the cleanup short
    _stopped_by.append(signum)
    raise Terminated(signum)


def _ignore_termination_signals() -> None:
    """While cclink writes its last words and exits, a late signal must not raise in the middle of them."""
    for signum in _TERMINATION_SIGNALS:
        if signal.getsignal(signum) is _on_termination_signal:
            signal.signal(signum, signal.SIG_IGN)


# --- the way out ----------------------------------------------------------------------------


def _flush(stream) -> bool:
    """Write out what stream holds.

    False when it cannot be (its reader or terminal is gone), and the rest is dropped.
    """
    try:
        stream.flush()
        return True
    except (AttributeError, OSError, ValueError):
        _discard(stream)
        return False


def _discard(stream) -> None:
    # Python flushes both streams once more at exit, and would report the same failure there (exit 120).
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)
    except (AttributeError, OSError, ValueError):
        pass


def _caused_by(error: BaseException, kind: type[BaseException]) -> bool:
    """Whether kind is among the exceptions that led to error (its causes and contexts)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, kind):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def finish_with_note(message: str) -> NoReturn:
    """One line on stderr saying why nothing was done (no `error:`: it is no failure), then exit 0."""
    from cclink.cli import console

    console.say(text.printable(_sentence(message)))
    _flush(sys.stdout)
    _flush(sys.stderr)
    sys.exit(0)


def fail(message: str, code: int) -> NoReturn:
    """One error line on stderr (best effort: the terminal may be gone), then exit with code."""
    from cclink.cli import console

    # One line whatever the message holds: a line break from a hostile name could fake a second message.
    console.say_error(_sentence(message))
    _flush(sys.stdout)
    _flush(sys.stderr)
    sys.exit(code)


def _sentence(message: str) -> str:
    message = message.strip()
    message = message[:1].upper() + message[1:]
    return message if message.endswith((".", "!", "?")) else message + "."
