"""Keys derived from PINs and passphrases: Argon2id, then HKDF-SHA256 (docs/wire.md §3)."""

from __future__ import annotations

from itertools import pairwise

from cclink.errors import WeakSecret
from cclink.wire import agecrypt

ARGON2_MEMORY_KIB = 65536
ARGON2_TIME = 3
ARGON2_PARALLELISM = 1
ARGON2_VERSION = 0x13
PIN_INFO = b"cclink-pin-v1"
KEY_INFO = b"cclink-key-v1"
SALT_SIZE = 32
KEY_SIZE = 32

MIN_SECRET_LENGTH = 8
MIN_CARRY_PIN_LENGTH = 12

# Refused case-insensitively, exactly as the Rust cclink 1.3 list (some are
# shorter than 8 characters and so already refused by the length rule).
PIN_BLOCKLIST = frozenset(
    {
        "password",
        "qwerty",
        "letmein",
        "welcome",
        "monkey",
        "dragon",
        "master",
        "iloveyou",
        "sunshine",
        "princess",
        "football",
        "baseball",
        "123456789",
        "12345678",
        "87654321",
        "qwertyui",
        "asdfghjk",
    }
)


def derive(
    secret: str,
    salt: bytes,
    info: bytes,
    memory_kib: int = ARGON2_MEMORY_KIB,
    time_cost: int = ARGON2_TIME,
    parallelism: int = ARGON2_PARALLELISM,
) -> bytes:
    """HKDF-SHA256(Argon2id v1.3(secret, salt), info): a 32-byte X25519 secret.

    Callers must bound the parameters: this function runs whatever it is given.
    Parameters Argon2 itself refuses (salt under 8 bytes, memory under 8 KiB per
    lane, zero passes) raise ValueError, as they are a programming error.
    """
    # Imported here: commands that never derive a key (a plain key file, no
    # PIN) should not pay their start-up time.
    from argon2.exceptions import HashingError
    from argon2.low_level import Type, hash_secret_raw
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    try:
        stretched = hash_secret_raw(
            secret=secret.encode("utf-8"),
            salt=salt,
            time_cost=time_cost,
            memory_cost=memory_kib,
            parallelism=parallelism,
            hash_len=KEY_SIZE,
            type=Type.ID,
            version=ARGON2_VERSION,
        )
    except HashingError as error:
        raise ValueError(f"Argon2 refused its parameters: {error}") from None
    # No salt: RFC 5869's default (a zero-filled key), as the Rust `hkdf` crate's Hkdf::new(None, ...).
    return HKDF(algorithm=hashes.SHA256(), length=KEY_SIZE, salt=None, info=info).derive(stretched)


def pin_identity(pin: str, salt: bytes) -> agecrypt.Identity:
    """The age identity that opens a handoff protected by pin and salt."""
    return agecrypt.identity_from_secret(derive(pin, salt, PIN_INFO))


def pin_recipient(pin: str, salt: bytes) -> agecrypt.Recipient:
    """The age recipient a handoff protected by pin and salt is encrypted to."""
    return pin_identity(pin, salt).to_public()


def check_pin(pin: str, *, carry: bool = False) -> None:
    """Raise WeakSecret unless pin follows the PIN rules of the Rust cclink, and with carry the stricter ones.

    With --carry the PIN guards the whole conversation, and anyone can read
    the record from the DHT and try PINs offline: it must be longer, and
    more than digits.
    """
    # Rust counts UTF-8 bytes here; counting characters is never looser.
    if len(pin) < MIN_SECRET_LENGTH:
        raise WeakSecret(f"a PIN must be at least {MIN_SECRET_LENGTH} characters long")
    if carry and (len(pin) < MIN_CARRY_PIN_LENGTH or pin.isdigit()):
        raise WeakSecret(
            f"with --carry a PIN guards the whole conversation: it must be at least {MIN_CARRY_PIN_LENGTH} "
            "characters long and not only digits (a few words work well)"
        )
    if len(set(pin)) == 1:
        raise WeakSecret("a PIN must not repeat a single character")
    if _is_run(pin, 1) or _is_run(pin, -1):
        raise WeakSecret("a PIN must not be a run of consecutive characters such as 12345678 or hgfedcba")
    if pin.lower() in PIN_BLOCKLIST:
        raise WeakSecret("that PIN is on the list of common passwords; choose another")


def check_passphrase(passphrase: str) -> None:
    """Raise WeakSecret unless passphrase is at least 8 characters long."""
    if len(passphrase) < MIN_SECRET_LENGTH:
        raise WeakSecret(f"a passphrase must be at least {MIN_SECRET_LENGTH} characters long")


def _is_run(text: str, step: int) -> bool:
    """Each code point is the previous one plus step (the Rust 'sequential pattern')."""
    return all(ord(b) - ord(a) == step for a, b in pairwise(text))
