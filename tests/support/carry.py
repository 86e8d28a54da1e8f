"""Carried sessions: a publisher's stderr, how a command ends, what a pickup left behind, a hostile age file."""

from __future__ import annotations

import selectors
import subprocess
import time
from pathlib import Path

READY = "Offering the session"  # what `cclink --carry` says once the record is out
WAIT = 120  # seconds: a guard against hangs, never a measurement


def wait_for_line(process: subprocess.Popen, text: str, timeout: float = WAIT) -> str:
    """Read the process's stderr until a line containing text; fail if it exits or the guard runs out."""
    selector = selectors.DefaultSelector()
    selector.register(process.stderr, selectors.EVENT_READ)
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if selector.select(timeout=1):
            line = process.stderr.readline()
            if not line:
                break
            seen.append(line)
            if text in line:
                return line
    process.kill()
    out, err = process.communicate()
    raise AssertionError(f"never saw {text!r}; exit {process.returncode}\nstdout: {out}\nstderr: {''.join(seen)}{err}")


def finish(process: subprocess.Popen, timeout: float = WAIT) -> tuple[int, str, str]:
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
    return process.returncode, out, err


def short_project(base: Path, name: str = "app") -> Path:
    path = base / name
    path.mkdir(exist_ok=True)
    return path


def files_under(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file()) if path.exists() else []


def with_junk_stanzas(data: bytes, size: int) -> bytes:
    """An age file whose header is padded with empty stanzas to about size bytes (its MAC then fails)."""
    mac_line = data.index(b"\n--- ") + 1
    return data[:mac_line] + b"-> junk\n\n" * (size // 9) + data[mac_line:]
