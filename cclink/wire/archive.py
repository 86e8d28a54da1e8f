"""A Claude Code session as one compressed archive, and back (for `--carry`; docs/wire.md §9).

The archive is a zstd-compressed tar stream holding `<id>.jsonl` and, when
Claude Code made one, the directory `<id>/` beside it (sub-agent transcripts,
large tool results). Everything streams in fixed-size chunks, so memory stays
flat however large the session is. Unpacking trusts nothing in the archive:
only those two names, regular files and directories, no links, no escapes;
and it bounds what it holds in memory (each header), writes to disk (bytes
and members) and how names may look, whatever the archive declares.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tarfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO, cast

import zstandard

from cclink.errors import MalformedArchive, NoSpace
from cclink.local import files, streams

# Big enough that per-chunk Python work is lost in the noise, small enough
# that the allocator recycles the buffers: with 1 MiB chunks, glibc handed
# each freed buffer back to the kernel and the next one was faulted in again,
# and unpacking 200 MB took 0.85 s instead of 0.57 s (measured).
CHUNK = 256 << 10
# Unpacking decompresses this much at a time in a thread of its own, which
# zstd runs without the GIL while tarfile and the cwd rewrite use it (4 MiB
# was no faster, and held 15 MiB more).
DECOMPRESS_AHEAD = 1 << 20
# zstd's default level: a transcript shrinks about fivefold, at several
# hundred MB/s on one core (gzip -1 is three times slower and 20 % larger).
COMPRESS_LEVEL = 3
FILE_MODE = 0o600
DIR_MODE = 0o700


# --- packing ---------------------------------------------------------------------


def pack(session_file: Path, out: BinaryIO) -> int:
    """Write the session (its .jsonl and its sibling directory, if any) to out; return the bytes packed."""
    session_id = session_file.name.removesuffix(".jsonl")
    packed = 0
    compressor = zstandard.ZstdCompressor(level=COMPRESS_LEVEL, threads=-1)
    with compressor.stream_writer(out, closefd=False) as compressed:
        # Not tarfile's stream mode ("w|"): it re-buffers every write in small
        # blocks, which cost 0.1 s of CPU per 200 MB; "w" writes straight through.
        # TarFile itself, which is all tarfile.open does for "w" (its type stubs leave out copybufsize).
        with tarfile.TarFile(fileobj=compressed, mode="w", format=tarfile.PAX_FORMAT, copybufsize=CHUNK) as tar:
            for path, name in _members(session_file, session_id):
                packed += _add(tar, path, name)
    return packed


def _members(session_file: Path, session_id: str) -> Iterator[tuple[Path, str]]:
    yield session_file, session_file.name
    directory = session_file.with_name(session_id)
    if not directory.is_dir() or directory.is_symlink():
        return
    for root, dirs, names in os.walk(directory):
        dirs.sort()
        base = Path(root)
        relative = base.relative_to(directory.parent).as_posix()
        yield base, relative
        for name in sorted(names):
            yield base / name, f"{relative}/{name}"


def _add(tar: tarfile.TarFile, path: Path, name: str) -> int:
    """Add one regular file or directory, without owner names or ids; skip anything else."""
    if path.is_symlink() or not (path.is_file() or path.is_dir()):
        return 0  # links and devices have no place in a transcript
    info = tar.gettarinfo(str(path), arcname=name)
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mode = DIR_MODE if info.isdir() else FILE_MODE
    if info.isdir():
        tar.addfile(info)
        return 0
    with open(path, "rb") as f:
        tar.addfile(info, f)
    return info.size


# --- unpacking -----------------------------------------------------------------------

# Bounds on what an archive may ask of the picker, whoever signed it. A session
# directory holds sub-agent transcripts and tool results: hundreds of files.
MAX_MEMBERS = 100_000
# Charged against the limit for every member, directories and empty files
# included, on top of the bytes written: about the block each one takes on
# disk, so that a flood of empty files cannot pass a small limit.
MEMBER_COST = 4096
# tarfile reads the body of a PAX or GNU long-name header into memory whole
# (its size is whatever the header says), and follows a header that precedes
# another by recursion. pack writes one such header per member, holding a name
# of at most MAX_NAME bytes and the times.
MAX_HEADER_SIZE = 8192
MAX_CHAINED_HEADERS = 2
_CHAINED_TYPES = (tarfile.XHDTYPE, tarfile.SOLARIS_XHDTYPE, tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK)
# Names relative to the session's folder: 255 bytes is the longest file name
# on the filesystems of Linux and macOS; the rest keeps paths well below the
# 1024 bytes macOS accepts, and rmtree's and rglob's recursion shallow.
MAX_NAME = 512
MAX_NAME_PART = 255
MAX_DEPTH = 32
# The last second of the year 9999: os.utime takes any mtime up to it.
MAX_MTIME = 253_402_300_799


@dataclass(frozen=True)
class Unpacked:
    """A session unpacked into a staging directory, not yet in place."""

    staging: Path
    session_id: str

    @property
    def session_file(self) -> Path:
        return self.staging / f"{self.session_id}.jsonl"

    @property
    def directory(self) -> Path | None:
        path = self.staging / self.session_id
        return path if path.is_dir() else None


def unpack(
    source: BinaryIO,
    session_id: str,
    staging: Path,
    rewrite: Callable[[IO[bytes], BinaryIO], None],
    *,
    limit: int,
    max_members: int = MAX_MEMBERS,
) -> Unpacked:
    """Unpack an archive of session_id into the empty directory staging.

    `rewrite(src, dst)` copies each .jsonl file (so the caller can change
    paths inside it); other files are copied as they are. Raises
    MalformedArchive for anything but the session's own files, and NoSpace
    before the bytes written plus MEMBER_COST for each member would pass
    `limit` (a few KB of zstd can unpack to terabytes).
    """
    budget = _Budget(limit, max_members)
    seen_session = False
    try:
        with (
            zstandard.ZstdDecompressor().stream_reader(source, read_size=CHUNK, closefd=False) as decompressed,
            streams.read_ahead(decompressed, DECOMPRESS_AHEAD) as ahead,
        ):
            # "r:" rather than the stream mode "r|", which copies every block
            # several times; tarfile only ever seeks this reader forwards.
            with tarfile.open(fileobj=ahead, mode="r:", tarinfo=_checked_tarinfo(budget)) as tar:
                while (member := tar.next()) is not None:
                    # tarfile keeps every member it read, however many come.
                    tar.members.clear()  # type: ignore[attr-defined]  # set in TarFile.__init__; typeshed omits it
                    seen_session |= _unpack_member(tar, member, session_id, staging, rewrite, budget)
    except (tarfile.TarError, zstandard.ZstdError, EOFError, OSError, ValueError) as error:
        if isinstance(error, OSError) and error.errno is not None:
            raise  # a local disk problem, not a bad archive
        raise MalformedArchive(f"the carried session is not a valid archive ({type(error).__name__})") from None
    if not seen_session:
        raise MalformedArchive(f"the carried archive does not hold session {session_id}")
    return Unpacked(staging, session_id)


class _Budget:
    """What an archive has used of its limit and of its member count."""

    def __init__(self, limit: int, max_members: int) -> None:
        self.limit = limit
        self.max_members = max_members
        self.used = 0
        self.members = 0

    def admit(self, size: int) -> None:
        """NoSpace when size more bytes would pass the limit."""
        if self.used + size > self.limit:
            raise NoSpace(f"the carried session unpacks to more than the {self.limit} bytes allowed")

    def charge(self, size: int) -> None:
        """Count size bytes as written, after admit() let them."""
        self.admit(size)
        self.used += size

    def count_member(self) -> None:
        self.members += 1
        if self.members > self.max_members:
            raise MalformedArchive(f"the carried session holds more than {self.max_members} files and directories")
        self.charge(MEMBER_COST)


def _checked_tarinfo(budget: _Budget) -> type[tarfile.TarInfo]:
    """A TarInfo class that checks every header against budget before tarfile reads what the header announces."""
    chained = 0

    class CheckedTarInfo(tarfile.TarInfo):
        # _proc_member is tarfile's entry point for subclasses (see its comment in tarfile.py).
        def _proc_member(self, tar: tarfile.TarFile) -> tarfile.TarInfo:
            nonlocal chained
            _check_header(self)
            if self.type in _CHAINED_TYPES:
                chained += 1
                if chained > MAX_CHAINED_HEADERS:
                    raise MalformedArchive(
                        f"the carried session has more than {MAX_CHAINED_HEADERS} tar headers in a row for one member"
                    )
            else:
                chained = 0
                budget.count_member()
            return super()._proc_member(tar)  # type: ignore[misc]  # private, so typeshed omits it

        # tarfile reads a GNU sparse map of any length from the stream.
        def _proc_gnusparse_00(self, *_: object) -> None:
            raise _sparse()

        def _proc_gnusparse_01(self, *_: object) -> None:
            raise _sparse()

        def _proc_gnusparse_10(self, *_: object) -> None:
            raise _sparse()

    return CheckedTarInfo


def _check_header(info: tarfile.TarInfo) -> None:
    if info.type == tarfile.GNUTYPE_SPARSE:
        raise _sparse()
    if info.type == tarfile.XGLTYPE:
        # Its fields would apply to every later member, and pile up.
        raise MalformedArchive("the carried session has a global tar header, which cclink does not accept")
    if info.size < 0:
        raise MalformedArchive("the carried session has a tar header with a negative size")
    if info.type in _CHAINED_TYPES and info.size > MAX_HEADER_SIZE:
        raise MalformedArchive(
            f"the carried session has a tar header of {info.size} bytes; cclink accepts up to {MAX_HEADER_SIZE}"
        )


def _sparse() -> MalformedArchive:
    return MalformedArchive("the carried session holds a sparse file, which cclink does not accept")


def _unpack_member(
    tar: tarfile.TarFile,
    member: tarfile.TarInfo,
    session_id: str,
    staging: Path,
    rewrite: Callable[[IO[bytes], BinaryIO], None],
    budget: _Budget,
) -> bool:
    """Write one member into staging; whether it was the session file."""
    name = _checked_member(member, session_id)
    target = staging / name
    if member.isdir():
        with _creating(name):
            target.mkdir(mode=DIR_MODE, parents=True)
        return False
    budget.admit(member.size)  # what it declares, before any of it is read; what it writes is charged as it goes
    source = tar.extractfile(member)
    if source is None:
        raise MalformedArchive(f"the carried session's '{_shown(name)}' cannot be read")
    with _creating(name):
        target.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        out = files.create_private(target)
    with out:
        copy = rewrite if target.suffix == ".jsonl" else _copy
        copy(source, cast(BinaryIO, _ChargedWriter(out, budget)))
    os.utime(target, (member.mtime, member.mtime))
    return name == f"{session_id}.jsonl"


def _checked_member(member: tarfile.TarInfo, session_id: str) -> str:
    """The member's name, if the member is one of the session's own files or directories, and one this disk can hold."""
    name = _checked_name(member.name, f"{session_id}.jsonl", session_id)
    if not (member.isfile() or member.isdir()):
        raise MalformedArchive(f"the carried session holds '{_shown(name)}', which is not a regular file")
    if (name == f"{session_id}.jsonl" and not member.isfile()) or (name == session_id and not member.isdir()):
        raise MalformedArchive(f"the carried session's '{_shown(name)}' is not the kind of entry its name says")
    if member.sparse is not None or any(key.startswith("GNU.sparse.") for key in member.pax_headers):
        raise _sparse()
    if member.size < 0:
        raise MalformedArchive(f"the carried session's '{_shown(name)}' has a negative size")
    if not 0 <= member.mtime <= MAX_MTIME:  # also refuses NaN
        raise MalformedArchive(f"the carried session's '{_shown(name)}' has an impossible modification time")
    return name


def _checked_name(name: str, allowed_file: str, allowed_dir: str) -> str:
    """The member's name if it is the session file or inside the session directory, and fits any disk."""
    parts = name.split("/")
    safe = name and not name.startswith("/") and all(part not in ("", ".", "..") for part in parts)
    if not (safe and (name == allowed_file or parts[0] == allowed_dir)):
        raise MalformedArchive(f"the carried session holds an unexpected path '{_shown(name)}'")
    try:
        encoded = name.encode("utf-8")  # tarfile keeps undecodable bytes as surrogates, which do not encode
    except UnicodeEncodeError:
        raise MalformedArchive(f"the carried session holds a name that is not UTF-8 '{_shown(name)}'") from None
    if b"\0" in encoded:
        raise MalformedArchive(f"the carried session holds a name with a NUL byte '{_shown(name)}'")
    if len(encoded) > MAX_NAME or len(parts) > MAX_DEPTH or max(map(len, encoded.split(b"/"))) > MAX_NAME_PART:
        raise MalformedArchive(f"the carried session holds a name too long or too deeply nested '{_shown(name)}'")
    return name


@contextmanager
def _creating(name: str) -> Iterator[None]:
    """Create what the archive names in the fresh staging directory, where a clash can only be the archive's doing."""
    try:
        yield
    except (FileExistsError, NotADirectoryError, IsADirectoryError):
        # Case-insensitive disks (macOS) also land here for names differing in case only.
        raise MalformedArchive(
            f"the carried session holds '{_shown(name)}' twice, or both as a file and a directory"
        ) from None
    except OSError as error:
        if error.errno == errno.ENAMETOOLONG:
            raise MalformedArchive(
                f"the carried session holds a name too long for this disk '{_shown(name)}'"
            ) from None
        raise


def _shown(name: str) -> str:
    """A name from the archive as it may appear in a one-line message: escaped, and cut short."""
    return repr(name[:80])[1:-1]


class _ChargedWriter:
    """A writer that charges every byte to the budget before passing it on, so the cwd rewrite's growth counts too."""

    def __init__(self, out: BinaryIO, budget: _Budget) -> None:
        self._out = out
        self._budget = budget

    def write(self, data: bytes | memoryview) -> int:
        self._budget.charge(len(data))
        return self._out.write(data)


def _copy(source: IO[bytes], out: BinaryIO) -> None:
    shutil.copyfileobj(source, out, CHUNK)


# --- rewriting paths in a transcript ------------------------------------------------------


def replace_cwd(source: IO[bytes], out: BinaryIO, old: str, new: str, chunk_size: int = CHUNK) -> None:
    """Copy a JSONL transcript, changing `"cwd":"<old>..."` to `"cwd":"<new>..."`.

    Only cwd values equal to old or below it (old + "/...") change, and only
    those bytes: everything else is copied exactly, so replacing back restores
    the original byte for byte. Works in chunks, so lines of any length pass.
    """
    pattern = b'"cwd":"' + _json_inner(old)
    replacement = b'"cwd":"' + _json_inner(new)
    undecided = b""
    while True:
        chunk = source.read(chunk_size)
        data = undecided + chunk if undecided else chunk
        decided = len(data) if not chunk else _undecided_from(data, pattern)
        out.write(_replaced(data, decided, pattern, replacement))
        undecided = data[decided:]
        if not chunk:
            return


def _undecided_from(data: bytes, pattern: bytes) -> int:
    """Where the end of data begins that the next chunk may make part of a match (len(data) if nowhere).

    A match is the pattern and one byte after it. No end of the pattern is
    also its beginning (it starts with the only unescaped `"cwd":"`), so the
    earliest end of data that begins the pattern is the only one to keep.
    """
    start = max(0, len(data) - len(pattern))
    while (quote := data.find(b'"', start)) >= 0:
        if pattern.startswith(data[quote:]):
            return quote
        start = quote + 1
    return len(data)


def _replaced(data: bytes, end: int, pattern: bytes, replacement: bytes) -> bytes | memoryview:
    """data[:end] with every match rewritten, copying as little as it can (200 MB go through here)."""
    view = memoryview(data)
    pieces: list[bytes | memoryview] = []
    start = 0
    while (at := data.find(pattern, start, end)) >= 0:
        follows = data[at + len(pattern) : at + len(pattern) + 1]
        pieces += (view[start:at], replacement if follows in (b'"', b"/") else pattern)
        start = at + len(pattern)
    if not pieces:
        return view[:end]
    pieces.append(view[start:end])
    return b"".join(pieces)


def _json_inner(text: str) -> bytes:
    """text as it appears between the quotes of a JSON string written by Claude Code (JSON.stringify)."""
    return json.dumps(text, ensure_ascii=False)[1:-1].encode()
