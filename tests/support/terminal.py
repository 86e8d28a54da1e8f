"""Run a program on a pseudo-terminal and answer its questions, as a person at a keyboard would."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import shutil
import struct
import subprocess
import termios
import time
from pathlib import Path

GUARD = 120  # seconds to wait for expected output: a guard against hangs, never a measurement
SETSID = shutil.which("setsid") or "/usr/bin/setsid"  # util-linux


def on_terminal(
    argv: list[str],
    exchanges: list[tuple[str, bytes]] = (),
    *,
    env: dict[str, str],
    cwd: Path | None = None,
    columns: int = 80,
) -> tuple[int, str]:
    """Run argv with a pseudo-terminal as its controlling TTY, stdin, stdout and stderr.

    For each (expected, reply), wait until `expected` appears in the output
    (after the previous one), then type `reply`. Returns (exit status, all output).
    """
    child, master = start_on_terminal(argv, env=env, cwd=cwd, columns=columns)
    output = b""
    seen = 0
    try:
        for expected, reply in exchanges:
            output = _read_until(master, output, expected.encode(), seen)
            # Whatever came so far (prompt, echo) must not satisfy the next expectation.
            seen = len(output)
            os.write(master, reply)
        output = _read_to_end(master, output)
    finally:
        os.close(master)
        if child.poll() is None:
            child.kill()
    return child.wait(), output.decode("utf-8", "replace")


def start_on_terminal(
    argv: list[str], *, env: dict[str, str], cwd: Path | None = None, columns: int = 80
) -> tuple[subprocess.Popen, int]:
    """Start argv with a new pseudo-terminal as its controlling TTY and standard streams.

    Returns the process and the terminal's master end; closing that end hangs
    the terminal up, as closing a terminal window does.
    """
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    # Not pty.fork(): the test process runs libtorrent's threads, and a child forked from a
    # threaded process can hang before it reaches exec. subprocess runs no Python in the
    # child; `setsid --ctty` gives the program its own session with this terminal in control.
    try:
        child = subprocess.Popen([SETSID, "--ctty", *argv], stdin=slave, stdout=slave, stderr=slave, env=env, cwd=cwd)
    except BaseException:
        os.close(master)
        raise
    finally:
        os.close(slave)
    return child, master


def wait_for(master: int, expected: str) -> str:
    """What the terminal shows up to and including `expected` (fails if it never comes)."""
    return _read_until(master, b"", expected.encode(), 0).decode("utf-8", "replace")


def _read_until(master: int, output: bytes, expected: bytes, start: int) -> bytes:
    deadline = time.monotonic() + GUARD
    while expected not in output[start:]:
        chunk = _read_some(master, deadline - time.monotonic())
        if not chunk:
            raise AssertionError(f"never saw {expected!r}; output so far: {output!r}")
        output += chunk
    return output


def _read_to_end(master: int, output: bytes) -> bytes:
    deadline = time.monotonic() + GUARD
    while chunk := _read_some(master, deadline - time.monotonic()):
        output += chunk
    return output


def _read_some(master: int, timeout: float) -> bytes:
    if timeout <= 0 or not select.select([master], [], [], timeout)[0]:
        return b""
    try:
        return os.read(master, 4096)
    except OSError:  # EIO: the child closed the terminal
        return b""
