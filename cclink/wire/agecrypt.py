"""age encryption to raw X25519 keys (binary age v1 files, to one recipient or several)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import BinaryIO, TypeAlias

import bech32
import pyrage
from pyrage.x25519 import Identity, Recipient

from cclink.errors import CannotDecrypt


def _bech32(hrp: str, key: bytes) -> str:
    words = bech32.convertbits(key, 8, 5)
    # convertbits answers None only for a value outside 0..255 (or bad padding with pad=False); bytes are never that.
    assert words is not None
    return bech32.bech32_encode(hrp, words)


def recipient_from_public(x25519_public: bytes) -> Recipient:
    """The age recipient for a 32-byte X25519 public key."""
    return Recipient.from_str(_bech32("age", x25519_public))


def identity_from_secret(x25519_secret: bytes) -> Identity:
    """The age identity for a 32-byte X25519 secret (age clamps it)."""
    return Identity.from_str(_bech32("age-secret-key-", x25519_secret).upper())


# A handoff to one's own key and paired devices is one file with a stanza per recipient; any one identity opens it.
Recipients: TypeAlias = Recipient | Sequence[Recipient]


def recipient_list(recipients: Recipients) -> list[Recipient]:
    """recipients as a non-empty list."""
    listed = [recipients] if isinstance(recipients, Recipient) else list(recipients)
    if not listed:
        raise ValueError("age needs at least one recipient")
    return listed


def encrypt(plaintext: bytes, recipients: Recipients) -> bytes:
    return pyrage.encrypt(plaintext, recipient_list(recipients))


# age adds a "grease" stanza of random length (0 to about 170 bytes) to every
# file, so one plaintext encrypts to sizes far apart. A DHT record has a hard
# cap of 1000 bytes; keeping the smallest of a few encryptions makes its size
# predictable. Each encryption costs microseconds.
COMPACT_TRIES = 16
# When the smallest of those does not fit, the smallest of many more often does: a handoff at the edge
# (a paired device more, a longer path) then fits every time rather than now and then. Milliseconds, once.
LAST_RESORT_TRIES = 256


def encrypt_compact(plaintext: bytes, recipients: Recipients, tries: int = COMPACT_TRIES) -> bytes:
    """The smallest of `tries` encryptions of plaintext: an ordinary age file, grease and all."""
    listed = recipient_list(recipients)
    return min((encrypt(plaintext, listed) for _ in range(tries)), key=len)


def decrypt(ciphertext: bytes, identity: Identity) -> bytes:
    """Decrypt an age file; CannotDecrypt when it is not for this identity or is damaged."""
    try:
        return pyrage.decrypt(ciphertext, [identity])
    except pyrage.DecryptError:
        raise CannotDecrypt("the data is not encrypted to this key, or is damaged") from None


# --- the header of a binary age file ---------------------------------------------------

MAGIC = b"age-encryption.org/v1\n"
# rage parses an age header in time quadratic in its length (32 KiB take
# seconds, 1 MiB most of an hour), so a header from someone else is measured
# before rage sees it. A genuine one (one X25519 stanza and age's grease
# stanza) is well under 1 KiB.
MAX_HEADER_SIZE = 4096
# The header ends with the line "--- <base64 MAC>"; no earlier line can start
# with "---" (stanzas start with "-> ", their bodies are base64).
_MAC_LINE = b"\n--- "


def header_size(start: bytes) -> int | None:
    """The size of the age v1 header that start begins with.

    None when start is no age file or its header runs past MAX_HEADER_SIZE.
    """
    start = start[:MAX_HEADER_SIZE]
    if not start.startswith(MAGIC):
        return None
    mac_line = start.find(_MAC_LINE, len(MAGIC) - 1)
    end = start.find(b"\n", mac_line + 1) if mac_line >= 0 else -1
    return end + 1 if end >= 0 else None


def has_small_header(source: BinaryIO) -> bool:
    """Whether the seekable source, from where it is, holds an age v1 file whose header is within MAX_HEADER_SIZE.

    source is left where it was.
    """
    at = source.tell()
    try:
        return header_size(source.read(MAX_HEADER_SIZE)) is not None
    finally:
        source.seek(at)
