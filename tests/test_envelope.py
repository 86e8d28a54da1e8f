"""The CCLINKEK key envelope (docs/wire.md §3)."""

from __future__ import annotations

import struct
import time

import pytest

from cclink.errors import KeyFileError, WrongPassphrase
from cclink.wire import agecrypt, envelope, kdf

SEED = bytes(range(32))
PASSPHRASE = "correct horse"
FAST = {"memory_kib": 8, "time_cost": 1, "parallelism": 1}  # Argon2's minimum: microseconds

# An envelope made without cclink: the KEK of "correct horse battery" with salt
# "cclink-test-salt-0123456789abcde", m=1024 KiB, t=2, p=1 comes from the Debian
# argon2 CLI + `openssl kdf ... HKDF` (tests/test_kdf.py, vector key-info-1MiB-t2),
# its recipient from `age-keygen -y`; then
#   { printf 'CCLINKEK\x01\x00\x00\x04\x00\x00\x00\x00\x02\x00\x00\x00\x01'; printf '%s' "$SALT";
#     printf '\x2a%.0s' $(seq 32) | age -r age1djn9hrf5590wtthk5wxt3wqtgkd40297mrpxvf3yanvslj38e57qkjp5d3; } | xxd -p
CLI_PASSPHRASE = "correct horse battery"
CLI_SEED = bytes([42]) * 32
CLI_ENVELOPE = bytes.fromhex(
    "43434c494e4b454b0100000400000000020000000163636c696e6b2d746573742d73616c742d3031323334353637"
    "383961626364656167652d656e6372797074696f6e2e6f72672f76310a2d3e20583235353139204b312f754b3358"
    "68394277584e536b776837726f536454707459613278456f7973322f457a7057646d6d510a356b336c3075686733"
    "324758573035577a5533416168724e58465a476e4d5a6f5934667a526d506330644d0a2d2d2d20754d4b7541594c"
    "66676a7275396a394d536c6b4d316b4d654155444e474a3851442f2f796b6452776732510ac0820fe33fe12c7e3d"
    "9db92a3800f073ad6786ea39dc6ce51d481cd64fad259748fb6bf7e54de0116f187b5c41679cf1097e28113fd6d8"
    "a00b8b144ea109c71d"
)


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


# --- independent vector --------------------------------------------------------------


def test_envelope_made_by_cli_tools_opens() -> None:
    assert envelope.is_envelope(CLI_ENVELOPE)
    header = envelope.read_header(CLI_ENVELOPE)
    assert (header.memory_kib, header.time_cost, header.parallelism) == (1024, 2, 1)
    assert header.salt == b"cclink-test-salt-0123456789abcde"
    assert envelope.open_envelope(CLI_ENVELOPE, CLI_PASSPHRASE) == CLI_SEED


def test_envelope_made_by_cli_tools_refuses_wrong_passphrase() -> None:
    with pytest.raises(WrongPassphrase):
        envelope.open_envelope(CLI_ENVELOPE, "correct horse batterY")


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


@pytest.mark.parametrize("magic", [b"CCLINKEJ", b"cclinkek", b"AGE-ENCR", b"\0" * 8])
def test_wrong_magic(sealed: bytes, magic: bytes) -> None:
    data = magic + sealed[8:]
    assert not envelope.is_envelope(data)
    with pytest.raises(KeyFileError, match="CCLINKEK"):
        envelope.open_envelope(data, PASSPHRASE)


@pytest.mark.parametrize("version", [0, 2, 255])
def test_wrong_version(sealed: bytes, version: int) -> None:
    data = sealed[:8] + bytes([version]) + sealed[9:]
    with pytest.raises(KeyFileError, match=f"version {version}"):
        envelope.open_envelope(data, PASSPHRASE)


@pytest.mark.parametrize(
    "memory_kib,time_cost,parallelism",
    [
        (0xFFFFFFFF, 3, 1),  # 4 TiB
        (262145, 3, 1),  # one KiB over the bound
        (65536, 0xFFFFFFFF, 1),
        (65536, 17, 1),
        (65536, 0, 1),
        (65536, 3, 0),
        (65536, 3, 17),
        (65536, 3, 0xFFFFFFFF),
        (0, 3, 1),
        (7, 1, 1),
        (15, 1, 2),  # under Argon2's 8 KiB per lane
        (0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF),
    ],
)
def test_hostile_parameters_fail_fast(sealed: bytes, memory_kib: int, time_cost: int, parallelism: int) -> None:
    data = with_params(sealed, memory_kib, time_cost, parallelism)
    start = time.monotonic()
    with pytest.raises(KeyFileError, match="unsafe") as caught:
        envelope.open_envelope(data, PASSPHRASE)
    assert not isinstance(caught.value, WrongPassphrase)
    assert time.monotonic() - start < 0.5


@pytest.mark.parametrize("params", [(262144, 16, 16), (8, 1, 1), (128, 1, 16), (16, 16, 2)])
def test_parameters_at_the_bounds_are_accepted(sealed: bytes, params: tuple[int, int, int]) -> None:
    header = envelope.read_header(with_params(sealed, *params))
    assert (header.memory_kib, header.time_cost, header.parallelism) == params


def test_parameters_at_the_bounds_run(sealed: bytes) -> None:
    data = envelope.seal(SEED, PASSPHRASE, memory_kib=128, time_cost=16, parallelism=16)
    assert envelope.open_envelope(data, PASSPHRASE) == SEED


def test_garbage_after_header(sealed: bytes) -> None:
    with pytest.raises(KeyFileError, match="damaged") as caught:
        envelope.open_envelope(sealed[:53] + b"not an age file at all", PASSPHRASE)
    assert not isinstance(caught.value, WrongPassphrase)


def test_damaged_body_with_right_passphrase_is_not_a_wrong_passphrase(sealed: bytes) -> None:
    damaged = sealed[:-1] + bytes([sealed[-1] ^ 1])
    with pytest.raises(KeyFileError, match="damaged") as caught:
        envelope.open_envelope(damaged, PASSPHRASE)
    assert not isinstance(caught.value, WrongPassphrase)


@pytest.mark.parametrize("size", [0, 31, 33, 64])
def test_plaintext_of_wrong_size(size: int) -> None:
    data = handmade(b"\x07" * size, PASSPHRASE)
    with pytest.raises(KeyFileError, match="32-byte seed"):
        envelope.open_envelope(data, PASSPHRASE)


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
