"""Archives built by hand, byte by byte, for the tests of hostile carried sessions (docs/wire.md §9)."""

from __future__ import annotations

import io
import tarfile

import zstandard

SESSION = "0b5f8a52-6a53-4c4e-9a43-2f1f3c0d7e11"


def zstd(data: bytes) -> bytes:
    return zstandard.ZstdCompressor().compress(data)


def raw_header(name: str, kind: bytes, size: int) -> bytes:
    """One 512-byte tar header announcing whatever it is told to."""
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = size
    return info.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape")


def padded(data: bytes) -> bytes:
    return data + bytes(-len(data) % tarfile.BLOCKSIZE)


def pax(**records: str) -> bytes:
    """The body of a PAX header: "<length> <key>=<value>\\n" records (keys may not be Python names: use **{...})."""
    body = b""
    for key, value in records.items():
        record = f" {key}={value}\n".encode("utf-8", "surrogateescape")
        length = len(record) + len(str(len(record)))
        length += len(str(length)) - len(str(len(record)))
        body += str(length).encode() + record
    return body


def raw_member(name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE) -> bytes:
    return raw_header(name, kind, len(data)) + padded(data)


def raw_archive(*pieces: bytes) -> io.BytesIO:
    return io.BytesIO(zstd(b"".join(pieces) + bytes(2 * tarfile.BLOCKSIZE)))


SESSION_FILE = raw_member(f"{SESSION}.jsonl", b"{}\n")


def pax_member(name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE, **records: str) -> bytes:
    """A member whose PAX header says what it is told to (name, mtime, size...)."""
    return raw_member("././@PaxHeader", pax(path=name, **records), tarfile.XHDTYPE) + raw_member(
        "placeholder", data, kind
    )


HOSTILE = {
    "file-twice": [SESSION_FILE, SESSION_FILE],
    "directory-twice": [
        raw_member(SESSION, kind=tarfile.DIRTYPE),
        raw_member(SESSION, kind=tarfile.DIRTYPE),
        SESSION_FILE,
    ],
    "file-then-directory": [
        SESSION_FILE,
        raw_member(f"{SESSION}/x", b"1"),
        raw_member(f"{SESSION}/x", kind=tarfile.DIRTYPE),
    ],
    "directory-then-file": [
        SESSION_FILE,
        raw_member(f"{SESSION}/x", kind=tarfile.DIRTYPE),
        raw_member(f"{SESSION}/x", b"1"),
    ],
    "file-as-a-parent": [SESSION_FILE, raw_member(f"{SESSION}/x", b"1"), raw_member(f"{SESSION}/x/y", b"1")],
    "directory-named-like-the-transcript": [raw_member(f"{SESSION}.jsonl", kind=tarfile.DIRTYPE), SESSION_FILE],
    "file-named-like-the-session-directory": [SESSION_FILE, raw_member(SESSION, b"1")],
    "mtime-1e300": [pax_member(f"{SESSION}.jsonl", b"{}\n", mtime="1e300")],
    "mtime-minus-1e300": [pax_member(f"{SESSION}.jsonl", b"{}\n", mtime="-1e300")],
    "mtime-inf": [pax_member(f"{SESSION}.jsonl", b"{}\n", mtime="inf")],
    "name-part-too-long": [SESSION_FILE, pax_member(f"{SESSION}/" + "x" * 300, b"1")],
    "name-too-long": [SESSION_FILE, pax_member(f"{SESSION}/" + "/".join(["x" * 200] * 3), b"1")],
    "nested-too-deep": [SESSION_FILE, pax_member(f"{SESSION}/" + "d/" * 40 + "f", b"1")],
    "name-not-utf-8": [SESSION_FILE, pax_member(f"{SESSION}/\udcff", b"1", hdrcharset="BINARY")],
    "negative-size": [SESSION_FILE, pax_member(f"{SESSION}/x", b"1", size="-1024")],
}
