"""Reading and writing the secret key file: 64 hex characters, or a CCLINKEK envelope."""

from __future__ import annotations

import os
import re
import shlex
import stat
import sys
from collections.abc import Callable
from pathlib import Path

from cclink.errors import KeyFileError
from cclink.local import files
from cclink.wire import envelope, kdf
from cclink.wire.keys import Identity, PublicKey

KEY_FILE_MODE = 0o600
# fullmatch on the stripped text; bytes.fromhex alone would also accept inner spaces.
_HEX_SEED = re.compile(r"[0-9a-fA-F]{64}")
_MAX_KEY_FILE_SIZE = 1 << 16  # a real key file is under 300 bytes


def identity_from_bytes(data: bytes, passphrase: Callable[[], str], source: str) -> Identity:
    """The identity held in key-file bytes; passphrase() is asked only for an envelope.

    source names where the bytes came from (a path, or "standard input") in errors.
    """
    if envelope.is_envelope(data):
        # A broken or hostile header fails here, before the user is asked anything.
        envelope.read_header(data, source=source)
        return Identity(envelope.open_envelope(data, passphrase(), source=source))
    return Identity(_plaintext_seed(data, source))


def read_for_import(source: str) -> tuple[bytes, str]:
    """The bytes of a key file to import from a path, or "-" for standard input, and a name for errors.

    Only the key file cclink keeps must be 0600; an import source is just read,
    but never more than a key file can hold.
    """
    if source == "-":
        data, name = sys.stdin.buffer.read(_MAX_KEY_FILE_SIZE + 1), "standard input"
    else:
        name = source
        try:
            with open(Path(source).expanduser(), "rb") as f:
                data = f.read(_MAX_KEY_FILE_SIZE + 1)
        except OSError as error:
            raise KeyFileError(f"cannot read {source}: {_reason(error)}") from None
    if len(data) > _MAX_KEY_FILE_SIZE:
        raise KeyFileError(f"{name} is too large to be a key file")
    return data, name


def load_identity(path: Path, passphrase: Callable[[], str]) -> Identity:
    """Load the key file at path, insisting on mode 0600."""
    return identity_from_bytes(read_key_file(path), passphrase, str(path))


def read_key_file(path: Path) -> bytes:
    """The bytes of the key file at path (mode 0600, bounded), as load_identity reads them."""
    return _read_private(Path(path))


def plain_public_key(data: bytes, source: str) -> PublicKey | None:
    """The public key of an unencrypted key file's bytes, or None for an envelope (it needs the passphrase)."""
    if envelope.is_envelope(data):
        return None
    return Identity(_plaintext_seed(data, source)).public_key


def save_identity(path: Path, identity: Identity, passphrase: str | None) -> None:
    """Write identity atomically (0600): an envelope with a passphrase, else 64 hex characters."""
    if passphrase is None:
        data = identity.seed.hex().encode("ascii") + b"\n"
    else:
        kdf.check_passphrase(passphrase)
        data = envelope.seal(identity.seed, passphrase)
    try:
        files.write_private(Path(path), data)
    except OSError as error:
        raise KeyFileError(f"cannot write the key to {path}: {_reason(error)}") from None


def is_encrypted(path: Path) -> bool:
    """Whether the key file at path is a CCLINKEK envelope; KeyFileError when it cannot be read."""
    try:
        with open(path, "rb") as handle:
            return envelope.is_envelope(handle.read(len(envelope.MAGIC)))
    except FileNotFoundError:
        raise KeyFileError(_missing(path)) from None
    except OSError as error:
        raise KeyFileError(f"cannot read {path}: {_reason(error)}") from None


def _plaintext_seed(data: bytes, source: str) -> bytes:
    try:
        text = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise KeyFileError(f"the key in {source} is neither 64 hexadecimal characters nor an encrypted key") from None
    if not text:
        raise KeyFileError(f"the key in {source} is empty")
    if not _HEX_SEED.fullmatch(text):
        raise KeyFileError(f"the key in {source} is not 64 hexadecimal characters")
    return bytes.fromhex(text)


def _read_private(path: Path) -> bytes:
    """Read path through one descriptor, so the mode checked is the mode of the file read."""
    # O_NONBLOCK: opening a FIFO planted at the key path must not hang.
    flags = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise KeyFileError(_missing(path)) from None
    except OSError as error:
        raise KeyFileError(f"cannot open {path}: {_reason(error)}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise KeyFileError(f"{path} is not a regular file, so it cannot be a key file")
        mode = stat.S_IMODE(info.st_mode)
        if mode != KEY_FILE_MODE:
            raise KeyFileError(
                f"{path} has mode {mode:04o} but a key file must be private (0600); "
                f"fix it with `chmod 600 {shlex.quote(str(path))}`"
            )
        data = _read_at_most(fd, _MAX_KEY_FILE_SIZE + 1)
        if len(data) > _MAX_KEY_FILE_SIZE:
            raise KeyFileError(f"{path} is too large to be a key file")
        return data
    except OSError as error:
        raise KeyFileError(f"cannot read {path}: {_reason(error)}") from None
    finally:
        os.close(fd)


def _read_at_most(fd: int, limit: int) -> bytes:
    chunks: list[bytes] = []
    remaining = limit
    while remaining > 0 and (chunk := os.read(fd, remaining)):
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def _missing(path: Path) -> str:
    return f"no key at {path}; run `cclink init` first"


def _reason(error: OSError) -> str:
    return (error.strerror or str(error)).lower()
