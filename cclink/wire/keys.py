"""Ed25519 identities and public keys, and their X25519 (age) counterparts."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import nacl.bindings
import nacl.exceptions
import nacl.signing

from cclink.errors import BadSignature, InvalidPublicKey, WireError
from cclink.wire import agecrypt, z32

SEED_SIZE = 32
PUBLIC_KEY_SIZE = 32
SIGNATURE_SIZE = 64
DISPLAY_PREFIX = "pk:"


@dataclass(frozen=True)
class PublicKey:
    """An Ed25519 public key that is a valid curve point (so it maps to X25519)."""

    raw: bytes

    def __post_init__(self) -> None:
        if len(self.raw) != PUBLIC_KEY_SIZE:
            raise InvalidPublicKey("a public key is 32 bytes")
        try:
            nacl.bindings.crypto_sign_ed25519_pk_to_curve25519(self.raw)
        except (nacl.exceptions.RuntimeError, nacl.exceptions.ValueError):
            raise InvalidPublicKey("that public key is not a valid Ed25519 key") from None

    @classmethod
    def parse(cls, text: str) -> PublicKey:
        """Read `pk:<z32>` or bare `<z32>` as typed by a user."""
        candidate = text.strip()
        if candidate.startswith(DISPLAY_PREFIX):
            candidate = candidate[len(DISPLAY_PREFIX) :]
        if len(candidate) != 52:
            raise InvalidPublicKey(f"'{_printable(text)}' is not a public key (expected 52 z-base-32 characters)")
        try:
            if not candidate.isascii():  # Unicode lower-casing would read the Kelvin sign as "k"
                raise WireError("not ASCII")
            raw = z32.decode(candidate.lower())
        except WireError:
            raise InvalidPublicKey(f"'{_printable(text)}' is not a public key (not z-base-32)") from None
        return cls(raw)

    @property
    def z32(self) -> str:
        return z32.encode(self.raw)

    @property
    def display(self) -> str:
        return DISPLAY_PREFIX + self.z32

    @property
    def fingerprint(self) -> str:
        return self.z32[:8]

    def age_recipient(self) -> agecrypt.Recipient:
        x25519 = nacl.bindings.crypto_sign_ed25519_pk_to_curve25519(self.raw)
        return agecrypt.recipient_from_public(x25519)

    def verify(self, message: bytes, signature: bytes) -> None:
        """Raise BadSignature unless signature is this key's over message."""
        if len(signature) != SIGNATURE_SIZE:
            raise BadSignature("a signature is not 64 bytes long")
        try:
            nacl.signing.VerifyKey(self.raw).verify(message, signature)
        except nacl.exceptions.BadSignatureError:
            raise BadSignature("a signature does not verify") from None

    def __str__(self) -> str:
        return self.display


class Identity:
    """An Ed25519 keypair held as its 32-byte seed."""

    def __init__(self, seed: bytes) -> None:
        if len(seed) != SEED_SIZE:
            raise ValueError("an Ed25519 seed is 32 bytes")
        self._signing_key = nacl.signing.SigningKey(seed)
        self.seed = seed
        self.public_key = PublicKey(bytes(self._signing_key.verify_key))

    @classmethod
    def generate(cls) -> Identity:
        return cls(bytes(nacl.signing.SigningKey.generate()))

    def sign(self, message: bytes) -> bytes:
        return self._signing_key.sign(message).signature

    def age_identity(self) -> agecrypt.Identity:
        return agecrypt.identity_from_secret(self.x25519_secret())

    def x25519_secret(self) -> bytes:
        return hashlib.sha512(self.seed).digest()[:32]

    def __repr__(self) -> str:  # never show the seed
        return f"Identity({self.public_key.display})"


def _printable(text: str, limit: int = 60) -> str:
    """User input made safe to echo in one line."""
    shown = "".join(c if c.isprintable() else "?" for c in text)
    return shown if len(shown) <= limit else shown[: limit - 1] + "…"
