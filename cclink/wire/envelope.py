"""The CCLINKEK envelope: a key file's seed, age-encrypted to a passphrase-derived key (docs/wire.md §3)."""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

import pyrage

from cclink.errors import KeyFileError, WrongPassphrase
from cclink.wire import agecrypt, kdf

MAGIC = b"CCLINKEK"
VERSION = 1
SEED_SIZE = 32
_PARAMS = struct.Struct(">III")  # m_cost KiB, t_cost, p_cost
HEADER_SIZE = len(MAGIC) + 1 + _PARAMS.size + kdf.SALT_SIZE  # 53
AGE_MAGIC = b"age-encryption.org/v1\n"

# What a header may ask of Argon2. 256 MiB and 16 passes cost a few seconds at
# worst; anything beyond is refused before Argon2 runs, so a planted key file
# cannot exhaust memory or hang the command. The Rust defaults sit well inside.
MAX_MEMORY_KIB = 262144
MAX_TIME_COST = 16
MAX_PARALLELISM = 16
MIN_MEMORY_KIB_PER_LANE = 8  # Argon2's own floor
# A real envelope is under 500 bytes (header, one X25519 stanza, age's grease
# stanza, a 32-byte seed). rage parses an age header in time quadratic in its
# length (60 KiB of junk stanzas take about ten seconds, 1 MiB most of an hour), so a
# larger file is refused before the passphrase is asked or anything is decrypted.
MAX_ENVELOPE_SIZE = 4096


@dataclass(frozen=True)
class Header:
    """The fixed 53-byte start of an envelope, already checked against the bounds."""

    memory_kib: int
    time_cost: int
    parallelism: int
    salt: bytes


def is_envelope(data: bytes) -> bool:
    return data.startswith(MAGIC)


def seal(
    seed: bytes,
    passphrase: str,
    *,
    memory_kib: int = kdf.ARGON2_MEMORY_KIB,
    time_cost: int = kdf.ARGON2_TIME,
    parallelism: int = kdf.ARGON2_PARALLELISM,
) -> bytes:
    """Encrypt a 32-byte seed under passphrase; the Argon2 parameters go in the header."""
    if len(seed) != SEED_SIZE:
        raise ValueError("an Ed25519 seed is 32 bytes")
    # Never write an envelope that open_envelope would refuse.
    problem = _parameter_problem(memory_kib, time_cost, parallelism)
    if problem is not None:
        raise ValueError(f"Argon2 parameters out of bounds: {problem}")
    salt = os.urandom(kdf.SALT_SIZE)
    recipient = _kek_identity(passphrase, Header(memory_kib, time_cost, parallelism, salt)).to_public()
    header = MAGIC + bytes([VERSION]) + _PARAMS.pack(memory_kib, time_cost, parallelism) + salt
    return header + agecrypt.encrypt(seed, recipient)


def read_header(data: bytes, *, source: str | None = None) -> Header:
    """Parse and bound the header, and check an age file follows, all without Argon2; KeyFileError when unusable."""
    where = _where(source)
    if not is_envelope(data) and not (data and MAGIC.startswith(data)):
        raise KeyFileError(f"the {where} does not start with the CCLINKEK marker")
    if len(data) < HEADER_SIZE:
        raise KeyFileError(f"the {where} is truncated: its header is shorter than {HEADER_SIZE} bytes")
    if len(data) > MAX_ENVELOPE_SIZE:
        raise KeyFileError(f"the {where} is {len(data)} bytes, too large to be an encrypted key")
    version = data[len(MAGIC)]
    if version != VERSION:
        raise KeyFileError(f"the {where} has format version {version}, which this cclink does not know")
    memory_kib, time_cost, parallelism = _PARAMS.unpack_from(data, len(MAGIC) + 1)
    problem = _parameter_problem(memory_kib, time_cost, parallelism)
    if problem is not None:
        raise KeyFileError(f"the {where} asks for unsafe key derivation settings ({problem})")
    if not data[HEADER_SIZE:].startswith(AGE_MAGIC):
        raise KeyFileError(f"the {where} is damaged: no age ciphertext follows its header")
    salt = data[HEADER_SIZE - kdf.SALT_SIZE : HEADER_SIZE]
    return Header(memory_kib, time_cost, parallelism, salt)


def open_envelope(data: bytes, passphrase: str, *, source: str | None = None) -> bytes:
    """The 32-byte seed inside an envelope; WrongPassphrase or KeyFileError otherwise."""
    where = _where(source)
    header = read_header(data, source=source)
    ciphertext = data[HEADER_SIZE:]
    identity = _kek_identity(passphrase, header)
    try:
        # pyrage directly, not agecrypt.decrypt, to tell a wrong key from damage.
        seed = pyrage.decrypt(ciphertext, [identity])
    except pyrage.DecryptError as error:
        # age says this when the header parses but no stanza opens with our key.
        if "no matching keys" in str(error).lower():
            raise WrongPassphrase(f"wrong passphrase for the {where}") from None
        raise KeyFileError(f"the {where} is damaged or truncated, so it cannot be decrypted") from None
    if len(seed) != SEED_SIZE:
        raise KeyFileError(f"the {where} holds {len(seed)} bytes instead of a 32-byte seed")
    return seed


def _kek_identity(passphrase: str, header: Header) -> agecrypt.Identity:
    kek = kdf.derive(
        passphrase,
        header.salt,
        kdf.KEY_INFO,
        memory_kib=header.memory_kib,
        time_cost=header.time_cost,
        parallelism=header.parallelism,
    )
    return agecrypt.identity_from_secret(kek)


def _parameter_problem(memory_kib: int, time_cost: int, parallelism: int) -> str | None:
    """Why these Argon2 parameters are refused, or None when they are acceptable."""
    if not 1 <= parallelism <= MAX_PARALLELISM:
        return f"parallelism {parallelism}, allowed 1 to {MAX_PARALLELISM}"
    if not 1 <= time_cost <= MAX_TIME_COST:
        return f"{time_cost} passes, allowed 1 to {MAX_TIME_COST}"
    floor = MIN_MEMORY_KIB_PER_LANE * parallelism
    if not floor <= memory_kib <= MAX_MEMORY_KIB:
        return f"{memory_kib} KiB of memory, allowed {floor} to {MAX_MEMORY_KIB}"
    return None


def _where(source: str | None) -> str:
    return "encrypted key" if source is None else f"encrypted key in {source}"
