"""Placing a carried session: decrypt, unpack within bounds, rewrite its paths, move it into place (docs/wire.md §9).

The downloaded file has been checked against the signed record already
(carry.check_integrity). It is decrypted and unpacked, within the limits of
carry.py, in a private staging directory beside where Claude Code looks for
it, with its `cwd` lines rewritten for this machine; only when all of that
succeeded are its files moved into place, a differing local copy kept as a
backup.
"""

from __future__ import annotations

import datetime
import errno
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO

import pyrage

from cclink import text
from cclink.errors import CannotDecrypt, MalformedArchive, NoSpace, SessionError
from cclink.flows import carry
from cclink.local import claude, files, streams
from cclink.wire import agecrypt, archive


@dataclass(frozen=True)
class Placed:
    session_file: Path
    backups: list[Path]


def local_copy(session_id: str, local_project: Path) -> Path | None:
    """The session's file (else its directory) where place() would put a carried copy, if one is there."""
    destination = _destination(local_project)
    return next(
        (path for path in (destination / f"{session_id}.jsonl", destination / session_id) if path.exists()), None
    )


def _destination(local_project: Path) -> Path:
    return claude.projects_dir() / claude.project_dir_name(str(local_project))


def place(
    ciphertext: Path,
    identity: agecrypt.Identity,
    session_id: str,
    *,
    publisher_project: str,
    local_project: Path,
    on_decrypted: Callable[[bytes], None] = lambda archive_sha256: None,
) -> Placed:
    """Decrypt and unpack the session into ~/.claude/projects/<dir of local_project>/, paths rewritten.

    on_decrypted gets the decrypted archive's SHA-256 (see
    acknowledgement.acknowledge) while it is still unpacked. A differing
    local copy gives way and is kept beside it as a timestamped backup: the
    caller asks first (see local_copy).
    """
    destination = _destination(local_project)
    try:
        staging = files.make_private_temp_dir(destination, prefix=".cclink-incoming-")
    except OSError as error:
        raise _placing_failed(error) from None
    try:
        unpacked = _decrypt_and_unpack(
            ciphertext, identity, session_id, staging, publisher_project, str(local_project), on_decrypted
        )
        return _move_into_place(unpacked, destination)
    except OSError as error:
        raise _placing_failed(error) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _placing_failed(error: OSError) -> SessionError:
    """A local disk's failure while placing, as one sentence (what the archive holds is checked before it gets here)."""
    if error.errno == errno.ENOSPC:
        return NoSpace(f"the disk under {claude.projects_dir()} filled up while placing the carried session")
    return SessionError(f"cannot place the carried session under {claude.projects_dir()}: {error.strerror or error}")


# --- decrypting and unpacking ------------------------------------------------------------


def _decrypt_and_unpack(
    ciphertext: Path,
    identity: agecrypt.Identity,
    session_id: str,
    staging: Path,
    old: str,
    new: str,
    on_decrypted: Callable[[bytes], None],
) -> archive.Unpacked:
    content = staging / "content"
    content.mkdir(mode=archive.DIR_MODE)
    rewrite = _cwd_rewriter(old, new)
    limit, too_much = _room_to_unpack(content, ciphertext.stat().st_size)
    # Decrypted first, into the same private directory as the session it
    # holds: pyrage keeps the GIL while it works, so decrypting in a thread
    # beside the unpacking slowed both (docs/performance.md, the carry's
    # "what made carries faster").
    packed = staging / "session.tar.zst"
    # Through a large buffer: pyrage writes in small pieces.
    with (
        open(ciphertext, "rb", buffering=archive.CHUNK) as source,
        files.create_private(packed, buffering=archive.CHUNK) as out,
    ):
        hashing = streams.HashingWriter(out)
        _decrypt(source, hashing, identity)
    on_decrypted(hashing.digest())
    try:
        with open(packed, "rb") as source:
            return archive.unpack(source, session_id, content, rewrite, limit=limit)
    except NoSpace:
        raise NoSpace(too_much) from None
    finally:
        packed.unlink()


def _decrypt(source: BinaryIO, out: streams.Writer, identity: agecrypt.Identity) -> None:
    # The publisher chose these bytes (they match its signed record), whatever
    # key opens them: a header rage would take hours to parse is theirs to fix.
    if not agecrypt.has_small_header(source):
        raise MalformedArchive(
            f"the carried session is not an age file with a header of at most {agecrypt.MAX_HEADER_SIZE} bytes"
        )
    try:
        carry.run_age(pyrage.decrypt_io, source, out, [identity])
    except pyrage.DecryptError:
        raise CannotDecrypt("the carried session does not decrypt with the handoff's key; it may be damaged") from None


def _room_to_unpack(directory: Path, archive_size: int) -> tuple[int, str]:
    """How many bytes a session may unpack to in directory, beside its archive, and what to say when it wants more."""
    free = shutil.disk_usage(directory).free - carry.KEEP_FREE - archive_size
    if free < carry.MAX_UNPACKED:
        return max(0, free), (
            f"there is not enough disk space for the carried session under {claude.projects_dir()} "
            f"(cclink leaves {text.format_bytes(carry.KEEP_FREE)} free)"
        )
    return (
        carry.MAX_UNPACKED,
        f"the carried session unpacks to more than {text.format_bytes(carry.MAX_UNPACKED)}, the most cclink accepts",
    )


def _cwd_rewriter(old: str, new: str) -> Callable[[IO[bytes], BinaryIO], None]:
    if not old or old == new:
        return lambda source, out: shutil.copyfileobj(source, out, archive.CHUNK)
    return lambda source, out: archive.replace_cwd(source, out, old, new)


# --- moving into place -------------------------------------------------------------------


def _move_into_place(unpacked: archive.Unpacked, destination: Path) -> Placed:
    target_file = destination / unpacked.session_file.name
    target_dir = destination / unpacked.session_id
    pairs = [(unpacked.session_file, target_file)]
    if unpacked.directory is not None:
        pairs.append((unpacked.directory, target_dir))
    differing = [target for source, target in pairs if target.exists() and not _same_content(source, target)]
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    backups = []
    for source, target in pairs:
        if target in differing:
            backup = target.with_name(f"{target.name}.backup-{stamp}")
            os.replace(target, backup)
            backups.append(backup)
        elif target.exists():
            continue  # identical already
        os.replace(source, target)
    return Placed(target_file, backups)


def _same_content(a: Path, b: Path) -> bool:
    if a.is_dir() != b.is_dir():
        return False
    if a.is_file():
        return a.stat().st_size == b.stat().st_size and carry.sha256_of(a) == carry.sha256_of(b)
    names_a = sorted(p.relative_to(a) for p in a.rglob("*"))
    names_b = sorted(p.relative_to(b) for p in b.rglob("*"))
    return names_a == names_b and all(_same_content(a / n, b / n) for n in names_a if (a / n).is_file())
