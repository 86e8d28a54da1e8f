"""Where cclink keeps its files (docs/wire.md §11), and how it writes private ones."""

from __future__ import annotations

import fcntl
import os
import stat
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

PRIVATE_FILE_MODE = 0o600
PRIVATE_DIR_MODE = 0o700


def key_path() -> Path:
    return Path.home() / ".pubky" / "secret_key"


def cache_dir() -> Path:
    """$XDG_CACHE_HOME/cclink, or ~/.cache/cclink; not created here."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    # The XDG spec says relative values are invalid and must be ignored.
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "cclink"
    return Path.home() / ".cache" / "cclink"


def state_dir() -> Path:
    """Where cclink keeps state that must outlive a cache clean-up; not created here.

    $XDG_STATE_HOME/cclink or ~/.local/state/cclink, and on macOS
    ~/Library/Application Support/cclink, where that system keeps a user's
    application state.
    """
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "cclink"
    xdg = os.environ.get("XDG_STATE_HOME", "")
    # As for the cache: the XDG spec says relative values must be ignored.
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "cclink"
    return Path.home() / ".local" / "state" / "cclink"


def write_private(path: Path, data: bytes, *, durable: bool = True) -> None:
    """Atomically replace path with data, readable by its owner only (0600).

    Raises OSError; a reader never sees a partial file, and no temporary file
    is left behind on failure. durable=False skips the fsyncs, for a cache
    whose loss in a crash costs nothing: each is tens of milliseconds on a
    slow disk, in the middle of a command.
    """
    path = Path(path)
    directory = path.parent
    make_private_dirs(directory)
    temp, fd = _create_temp(directory, path.name)
    try:
        try:
            # The umask may have removed bits; loading insists on exactly 0600.
            os.fchmod(fd, PRIVATE_FILE_MODE)
            _write_all(fd, data)
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, path)
    except BaseException:
        try:
            os.unlink(temp)
        except FileNotFoundError:
            pass
        raise
    if durable:
        _fsync_dir(directory)


def create_private(path: Path, buffering: int = -1) -> BinaryIO:
    """A new file, readable by its owner only (0600), open for writing.

    FileExistsError if path exists, even as a link.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), PRIVATE_FILE_MODE)
    return os.fdopen(fd, "wb", buffering=buffering)


def make_private_dirs(directory: Path) -> None:
    """Create missing directories one by one, each 0700 (Path.mkdir(parents=True) would ignore the mode for parents)."""
    missing: list[Path] = []
    current = directory
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for component in reversed(missing):
        try:
            os.mkdir(component, PRIVATE_DIR_MODE)
        except FileExistsError:
            pass  # created concurrently; fine as long as it is a directory
    if not directory.is_dir():
        raise NotADirectoryError(f"{directory} is not a directory")


def make_private_temp_dir(parent: Path, prefix: str = "") -> Path:
    """A new directory (0700) with a name of its own in parent; a missing parent is made as make_private_dirs does."""
    make_private_dirs(parent)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=parent))  # mkdtemp makes it 0700


def _create_temp(directory: Path, name: str) -> tuple[Path, int]:
    """An exclusive 0600 temp file beside the target, so os.replace stays on one filesystem."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
    for _ in range(100):
        temp = directory / f".{name}.{os.urandom(6).hex()}.tmp"
        try:
            return temp, os.open(temp, flags, PRIVATE_FILE_MODE)
        except FileExistsError:
            continue
    raise FileExistsError(f"cannot create a temporary file in {directory}")


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _fsync_dir(directory: Path) -> None:
    """Make the rename durable; some filesystems refuse fsync on a directory, which is harmless."""
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# --- reading and locking state files ------------------------------------------------------

LOCK_RETRY = 0.01  # seconds between tries at a lock


def read_bounded(path: Path, limit: int) -> bytes | None:
    """path's bytes if it is a regular file of at most limit bytes; None otherwise, never following a link."""
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > limit:
            return None
        data = os.read(fd, limit + 1)
    except OSError:
        return None
    finally:
        os.close(fd)
    return data if len(data) <= limit else None


@contextmanager
def locked(lock_path: Path, *, wait: float) -> Iterator[bool]:
    """Hold an exclusive flock on lock_path (0600) for the block; yields whether it was had within wait seconds.

    flock works alike on Linux and macOS, and the kernel releases it when its holder dies.
    """
    make_private_dirs(lock_path.parent)
    flags = os.O_RDWR | os.O_CREAT | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(lock_path, flags, PRIVATE_FILE_MODE)
    try:
        give_up = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                held = True
                break
            except BlockingIOError:
                if time.monotonic() >= give_up:
                    held = False
                    break
                time.sleep(LOCK_RETRY)
        yield held
    finally:
        os.close(fd)  # closing releases the lock
