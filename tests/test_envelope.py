"""The CCLINKEK key envelope (docs/wire.md §3; vectors in tests/vectors/envelope.json)."""

from __future__ import annotations

import struct
import time

import pytest
from vector_files import case, cases, load

from cclink.errors import KeyFileError, WrongPassphrase
from cclink.wire import agecrypt, envelope, kdf

SEED = bytes(range(32))
PASSPHRASE = "correct horse"
FAST = {"memory_kib": 8, "time_cost": 1, "parallelism": 1}  # Argon2's minimum: microseconds

ENVELOPES = load("envelope")
CLI = case("envelope", "opened", "made with the argon2, openssl and age commands")


def with_params(data: bytes, memory_kib: int, time_cost: int, parallelism: int) -> bytes:
    """data with its header's Argon2 parameters replaced."""
    return data[:9] + struct.pack(">III", memory_kib, time_cost, parallelism) + data[21:]


def handmade(plaintext: bytes, passphrase: str, salt: bytes = b"s" * 32) -> bytes:
    """An envelope built field by field, around any plaintext."""
    kek = kdf.derive(passphrase, salt, kdf.KEY_INFO, **FAST)
    ciphertext = agecrypt.encrypt(plaintext, agecrypt.identity_from_secret(kek).to_public())
    return b"CCLINKEK\x01" + struct.pack(">III", 8, 1, 1) + salt + ciphertext


@pytest.fixture(scope="module")
def sealed() -> bytes:
    return envelope.seal(SEED, PASSPHRASE, **FAST)


# --- tests/vectors/envelope.json (its first envelope made without cclink) ------------------


def test_layout_matches_the_vector_file() -> None:
    layout = ENVELOPES["layout"]
    assert (layout["magic_text"].encode(), layout["version"], layout["header_size"]) == (
        envelope.MAGIC,
        1,
        envelope.HEADER_SIZE,
    )


@pytest.mark.parametrize("vector", cases("envelope", "opened"))
def test_envelope_vectors_open(vector: dict) -> None:
    data = bytes.fromhex(vector["envelope_hex"])
    assert envelope.is_envelope(data)
    header = envelope.read_header(data)
    assert (header.memory_kib, header.time_cost, header.parallelism) == (
        vector["memory_kib"],
        vector["time_cost"],
        vector["parallelism"],
    )
    assert header.salt.hex() == vector["salt_hex"]
    assert envelope.open_envelope(data, vector["passphrase"]).hex() == vector["seed_hex"]


@pytest.mark.parametrize("vector", cases("envelope", "refused"))
def test_envelope_vectors_refused(vector: dict) -> None:
    data = bytes.fromhex(vector["envelope_hex"])
    assert envelope.is_envelope(data) == (vector["reason"] != "CCLINKEK")
    start = time.monotonic()
    with pytest.raises(KeyFileError, match=vector["reason"]) as caught:
        envelope.open_envelope(data, vector["passphrase"])
    # Only a wrong passphrase is told as one: anything else is a damaged or unusable file.
    assert isinstance(caught.value, WrongPassphrase) == (vector["reason"] == "wrong passphrase")
    if vector["reason"] == "unsafe":  # refused before Argon2 runs
        assert time.monotonic() - start < 0.5


@pytest.mark.parametrize("vector", cases("envelope", "headers_accepted"))
def test_envelope_vector_headers_accepted(vector: dict) -> None:
    header = envelope.read_header(bytes.fromhex(vector["envelope_hex"]))
    assert (header.memory_kib, header.time_cost, header.parallelism) == (
        vector["memory_kib"],
        vector["time_cost"],
        vector["parallelism"],
    )


# --- round trips and layout -----------------------------------------------------------------


def test_default_round_trip_and_layout() -> None:
    data = envelope.seal(SEED, PASSPHRASE)
    assert data[:8] == b"CCLINKEK" and data[8] == 1
    assert struct.unpack(">III", data[9:21]) == (65536, 3, 1)
    assert data[53:].startswith(b"age-encryption.org/v1\n")
    assert envelope.open_envelope(data, PASSPHRASE) == SEED


def test_fast_round_trip(sealed: bytes) -> None:
    assert envelope.open_envelope(sealed, PASSPHRASE) == SEED
    assert struct.unpack(">III", sealed[9:21]) == (8, 1, 1)


def test_each_seal_has_a_fresh_salt() -> None:
    first, second = (envelope.seal(SEED, PASSPHRASE, **FAST) for _ in range(2))
    assert first[21:53] != second[21:53]


def test_unicode_passphrase_round_trip() -> None:
    data = envelope.seal(SEED, "pässwörd ñandú 🔑", **FAST)
    assert envelope.open_envelope(data, "pässwörd ñandú 🔑") == SEED
    with pytest.raises(WrongPassphrase):
        envelope.open_envelope(data, "passwort ñandú 🔑")


def test_header_parameters_are_written_and_honoured() -> None:
    data = envelope.seal(SEED, PASSPHRASE, memory_kib=64, time_cost=2, parallelism=2)
    assert struct.unpack(">III", data[9:21]) == (64, 2, 2)
    assert envelope.open_envelope(data, PASSPHRASE) == SEED
    # Same passphrase and salt, other parameters in the header: another KEK, so no match.
    for changed in [(128, 2, 2), (64, 3, 2), (64, 2, 1)]:
        with pytest.raises(WrongPassphrase):
            envelope.open_envelope(with_params(data, *changed), PASSPHRASE)


def test_wrong_passphrase(sealed: bytes) -> None:
    with pytest.raises(WrongPassphrase) as caught:
        envelope.open_envelope(sealed, "correct horsE")
    assert isinstance(caught.value, KeyFileError)
    assert PASSPHRASE not in str(caught.value)


def test_source_is_named(sealed: bytes) -> None:
    with pytest.raises(WrongPassphrase, match="standard input"):
        envelope.open_envelope(sealed, "nope nope", source="standard input")
    with pytest.raises(KeyFileError, match="/tmp/key"):
        envelope.open_envelope(sealed[:20], PASSPHRASE, source="/tmp/key")


# --- malformed input --------------------------------------------------------------------


def test_truncated_at_every_length(sealed: bytes) -> None:
    for length in range(len(sealed)):
        with pytest.raises(KeyFileError) as caught:
            envelope.open_envelope(sealed[:length], PASSPHRASE)
        # A cut file is damage, not a wrong passphrase.
        assert not isinstance(caught.value, WrongPassphrase), length


def test_truncated_header_fails_before_argon2() -> None:
    data = envelope.seal(SEED, PASSPHRASE)  # default, costly parameters
    start = time.monotonic()
    for length in range(envelope.HEADER_SIZE):
        with pytest.raises(KeyFileError, match=r"CCLINKEK|truncated"):
            envelope.read_header(data[:length])
        with pytest.raises(KeyFileError):
            envelope.open_envelope(data[:length], PASSPHRASE)
    assert time.monotonic() - start < 1.0


def test_handmade_envelope_opens() -> None:
    assert envelope.open_envelope(handmade(SEED, PASSPHRASE), PASSPHRASE) == SEED


# --- seal's own checks ------------------------------------------------------------------


@pytest.mark.parametrize("seed", [b"", b"x" * 31, b"x" * 33, b"x" * 64])
def test_seal_refuses_a_seed_of_wrong_size(seed: bytes) -> None:
    with pytest.raises(ValueError):
        envelope.seal(seed, PASSPHRASE, **FAST)


@pytest.mark.parametrize("params", [(262145, 1, 1), (8, 17, 1), (8, 1, 2), (64, 0, 1), (64, 1, 0)])
def test_seal_refuses_parameters_open_would_refuse(params: tuple[int, int, int]) -> None:
    memory_kib, time_cost, parallelism = params
    with pytest.raises(ValueError):
        envelope.seal(SEED, PASSPHRASE, memory_kib=memory_kib, time_cost=time_cost, parallelism=parallelism)


def test_is_envelope() -> None:
    assert envelope.is_envelope(b"CCLINKEK")
    assert envelope.is_envelope(b"CCLINKEK\x01rest")
    assert not envelope.is_envelope(b"")
    assert not envelope.is_envelope(b"CCLINKE")
    assert not envelope.is_envelope(SEED.hex().encode())
