"""A Claude Code session as one compressed archive, and back (for `--carry`).

The archive is a zstd-compressed tar stream holding `<id>.jsonl` and, when
Claude Code made one, the directory `<id>/` beside it (sub-agent transcripts,
large tool results). Everything streams in fixed-size chunks, so memory stays
flat however large the session is. Unpacking trusts nothing in the archive:
only those two names, regular files and directories, no links, no escapes.
"""

from __future__ import annotations

import json
import os
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

import zstandard

from cclink import files, streams
from cclink.errors import MalformedArchive, NoSpace

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
        with tarfile.open(fileobj=compressed, mode="w", format=tarfile.PAX_FORMAT, copybufsize=CHUNK) as tar:
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
    source: BinaryIO, session_id: str, staging: Path, rewrite: Callable[[BinaryIO, BinaryIO], None], *, limit: int
) -> Unpacked:
    """Unpack an archive of session_id into the empty directory staging.

    `rewrite(src, dst)` copies each .jsonl file (so the caller can change
    paths inside it); other files are copied as they are. Raises
    MalformedArchive for anything but the session's own files, and NoSpace
    before the files would add up to more than `limit` bytes (a few KB of
    zstd can unpack to terabytes).
    """
    allowed_file, allowed_dir = f"{session_id}.jsonl", session_id
    seen_session = False
    unpacked = 0
    try:
        with zstandard.ZstdDecompressor().stream_reader(source, read_size=CHUNK, closefd=False) as decompressed, \
                streams.read_ahead(decompressed, DECOMPRESS_AHEAD) as ahead:
            # "r:" rather than the stream mode "r|", which copies every block
            # several times; tarfile only ever seeks this reader forwards.
            with tarfile.open(fileobj=ahead, mode="r:") as tar:
                for member in tar:
                    target = staging / _checked_name(member.name, allowed_file, allowed_dir)
                    if member.isdir():
                        target.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
                        continue
                    if not member.isfile():
                        raise MalformedArchive(f"the carried session holds '{member.name}', which is not a regular file")
                    unpacked += member.size
                    if unpacked > limit:
                        raise NoSpace(f"the carried session unpacks to more than the {limit} bytes allowed")
                    target.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
                    _extract_file(tar, member, target, rewrite if target.suffix == ".jsonl" else _copy)
                    seen_session |= member.name == allowed_file
    except (tarfile.TarError, zstandard.ZstdError, EOFError, OSError, ValueError) as error:
        if isinstance(error, OSError) and error.errno is not None:
            raise  # a local disk problem, not a bad archive
        raise MalformedArchive(f"the carried session is not a valid archive ({type(error).__name__})") from None
    if not seen_session:
        raise MalformedArchive(f"the carried archive does not hold session {session_id}")
    return Unpacked(staging, session_id)


def _checked_name(name: str, allowed_file: str, allowed_dir: str) -> str:
    """The member's name if it is the session file or inside the session directory."""
    parts = name.split("/")
    safe = name and not name.startswith("/") and all(part not in ("", ".", "..") for part in parts)
    if safe and (name == allowed_file or parts[0] == allowed_dir):
        return name
    raise MalformedArchive(f"the carried session holds an unexpected path '{name[:80]}'")


def _extract_file(tar: tarfile.TarFile, member: tarfile.TarInfo, target: Path, copy: Callable[[BinaryIO, BinaryIO], None]) -> None:
    source = tar.extractfile(member)
    if source is None:
        raise MalformedArchive(f"the carried session's '{member.name}' cannot be read")
    with files.create_private(target) as out:
        copy(source, out)
    os.utime(target, (member.mtime, member.mtime))


def _copy(source: BinaryIO, out: BinaryIO) -> None:
    shutil.copyfileobj(source, out, CHUNK)


# --- rewriting paths in a transcript ------------------------------------------------------


def replace_cwd(source: BinaryIO, out: BinaryIO, old: str, new: str, chunk_size: int = CHUNK) -> None:
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
    pieces, start = [], 0
    while (at := data.find(pattern, start, end)) >= 0:
        follows = data[at + len(pattern):at + len(pattern) + 1]
        pieces += (view[start:at], replacement if follows in (b'"', b"/") else pattern)
        start = at + len(pattern)
    if not pieces:
        return view[:end]
    pieces.append(view[start:end])
    return b"".join(pieces)


def _json_inner(text: str) -> bytes:
    """text as it appears between the quotes of a JSON string written by Claude Code (JSON.stringify)."""
    return json.dumps(text, ensure_ascii=False)[1:-1].encode()
