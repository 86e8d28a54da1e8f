"""age encryption to raw X25519 keys (binary age v1 files, one recipient)."""

from __future__ import annotations

import bech32
import pyrage

from cclink.errors import CannotDecrypt

Identity = pyrage.x25519.Identity
Recipient = pyrage.x25519.Recipient


def _bech32(hrp: str, key: bytes) -> str:
    return bech32.bech32_encode(hrp, bech32.convertbits(key, 8, 5))


def recipient_from_public(x25519_public: bytes) -> Recipient:
    """The age recipient for a 32-byte X25519 public key."""
    return Recipient.from_str(_bech32("age", x25519_public))


def identity_from_secret(x25519_secret: bytes) -> Identity:
    """The age identity for a 32-byte X25519 secret (age clamps it)."""
    return Identity.from_str(_bech32("age-secret-key-", x25519_secret).upper())


def encrypt(plaintext: bytes, recipient: Recipient) -> bytes:
    return pyrage.encrypt(plaintext, [recipient])


# age adds a "grease" stanza of random length (0 to about 170 bytes) to every
# file, so one plaintext encrypts to sizes far apart. A DHT record has a hard
# cap of 1000 bytes; keeping the smallest of a few encryptions makes its size
# predictable. Each encryption costs microseconds.
COMPACT_TRIES = 16


def encrypt_compact(plaintext: bytes, recipient: Recipient, tries: int = COMPACT_TRIES) -> bytes:
    """The smallest of `tries` encryptions of plaintext: an ordinary age file, grease and all."""
    return min((encrypt(plaintext, recipient) for _ in range(tries)), key=len)


def decrypt(ciphertext: bytes, identity: Identity) -> bytes:
    """Decrypt an age file; CannotDecrypt when it is not for this identity or is damaged."""
    try:
        return pyrage.decrypt(ciphertext, [identity])
    except pyrage.DecryptError:
        raise CannotDecrypt("the data is not encrypted to this key, or is damaged") from None
