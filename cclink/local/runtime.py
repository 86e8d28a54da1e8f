"""Where the agent lives on this machine, Linux and macOS alike (docs/design.md, "The agent").

- Its socket directory: `$XDG_RUNTIME_DIR/cclink` when that is set, absolute
  and ours; else `run` in cclink's state directory. A Unix socket's path must
  fit in sun_path (104 bytes on macOS, 108 on Linux, the final NUL included),
  which a long HOME exceeds: then /tmp/cclink-<uid>/<hash of HOME>. Each is
  made 0700 and checked before use (a directory, not a link, ours, 0700),
  since anyone can create names in /tmp first.
- Who is at the other end of a Unix socket: SO_PEERCRED on Linux,
  LOCAL_PEERCRED (struct xucred) on macOS, one function.
- Starting a process that outlives the command that starts it: a new
  session (so the terminal's SIGHUP never reaches it), standard input from
  /dev/null, output to a log file that is rotated once it grows past a bound.

Also the two small file tools the agent's files need: reading a private file
within a bound without following links or blocking on a FIFO, and a lock.
"""

from __future__ import annotations

import hashlib
import os
import socket
import stat
import struct
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from cclink.local import files

RUNTIME_ENV = "XDG_RUNTIME_DIR"
# sun_path's size less its terminating NUL.
MAX_SOCKET_PATH = 103 if sys.platform == "darwin" else 107
# Room left in the directory's path for the longest socket name cclink uses ("/agent-<12 hex>.sock").
SOCKET_NAME_ROOM = 24
SHORT_ROOT = Path("/tmp")
MAX_LOG_SIZE = 256 * 1024  # past this the log becomes <log>.1 when the next agent starts
# macOS: <sys/un.h> and <sys/ucred.h>.
SOL_LOCAL = 0
LOCAL_PEERCRED = 0x001
XUCRED_VERSION = 0


class NotPrivate(OSError):
    """A directory cclink would use is not its own: a link, someone else's, or open to others."""


def socket_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The directory of the agent's socket (not created here; see private_dir)."""
    environ = os.environ if environ is None else environ
    for candidate in _candidates(environ):
        if len(os.fsencode(str(candidate))) + SOCKET_NAME_ROOM <= MAX_SOCKET_PATH:
            return candidate
    home = environ.get("HOME") or str(Path.home())
    digest = hashlib.sha256(os.fsencode(home)).hexdigest()[:16]
    return SHORT_ROOT / f"cclink-{os.getuid()}" / digest


def _candidates(environ: Mapping[str, str]) -> list[Path]:
    found = []
    runtime = environ.get(RUNTIME_ENV, "")
    # The XDG spec says relative values are invalid; a runtime directory not ours is not where ours goes.
    if runtime and os.path.isabs(runtime) and _owned_directory(Path(runtime)):
        found.append(Path(runtime) / "cclink")
    found.append(files.state_dir() / "run")
    return found


def _owned_directory(path: Path) -> bool:
    try:
        info = os.stat(path)
    except OSError:
        return False
    return stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid()


def private_dir(directory: Path, *, create: bool) -> Path:
    """directory, made (when create) and checked: each component cclink made is a 0700 directory of ours.

    Raises NotPrivate (an OSError) when it is not, FileNotFoundError when it is missing and not to be made.
    """
    if create:
        files.make_private_dirs(directory)
    for path in _ours_to_check(directory):
        check_private(path)
    return directory


def _ours_to_check(directory: Path) -> list[Path]:
    """The components of directory that cclink made: the whole /tmp/cclink-<uid>/..., else the last one."""
    if directory.parent.parent == SHORT_ROOT and directory.parent.name.startswith("cclink-"):
        return [directory.parent, directory]
    return [directory]


def check_private(path: Path) -> None:
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise NotPrivate(f"{path} is not a directory")
    if info.st_uid != os.getuid():
        raise NotPrivate(f"{path} belongs to another user")
    if stat.S_IMODE(info.st_mode) & 0o077:
        raise NotPrivate(f"{path} is open to other users")


def peer_uid(sock: socket.socket) -> int:
    """The user id of the process at the other end of a connected Unix socket, as the kernel recorded it."""
    if sys.platform == "darwin":
        # struct xucred: u_int cr_version; uid_t cr_uid; short cr_ngroups; gid_t cr_groups[16].
        size = struct.calcsize("IIh16I")
        data = sock.getsockopt(SOL_LOCAL, LOCAL_PEERCRED, size)
        version, uid = struct.unpack_from("II", data)
        if version != XUCRED_VERSION:
            raise OSError(f"unknown xucred version {version}")
        return int(uid)
    # struct ucred: pid_t pid; uid_t uid; gid_t gid.
    data = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("iII"))
    _pid, uid, _gid = struct.unpack("iII", data)
    return int(uid)


def start_detached(argv: Sequence[str], *, env: Mapping[str, str], log: Path | None) -> int:
    """Start argv in a session of its own, stdin from /dev/null, output to log (or /dev/null); its pid.

    It is never waited for: the command that starts it exits long before it.
    Raises OSError when it cannot be started.
    """
    output = _open_log(log) if log is not None else subprocess.DEVNULL
    try:
        process = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=output,
            start_new_session=True,
            close_fds=True,
            cwd="/",
            env=dict(env),
        )
    finally:
        if isinstance(output, int) and output >= 0:
            os.close(output)
    return process.pid


def _open_log(log: Path) -> int:
    """The log file open for appending (0600), the previous one set aside as <log>.1 once it is over MAX_LOG_SIZE."""
    files.make_private_dirs(log.parent)
    try:
        if os.lstat(log).st_size > MAX_LOG_SIZE:
            os.replace(log, log.with_name(log.name + ".1"))
    except FileNotFoundError:
        pass
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    return os.open(log, flags, files.PRIVATE_FILE_MODE)
