"""Argon2id + HKDF derivation and the PIN / passphrase rules (docs/wire.md §3; vectors in tests/vectors/kdf.json)."""

from __future__ import annotations

import pytest
from argon2.low_level import Type, hash_secret_raw
from vector_files import case, cases, load

from cclink.errors import CannotDecrypt, WeakSecret
from cclink.wire import agecrypt, kdf

KDF = load("kdf")
WIRE = case("kdf", "derivations", "PIN validpin (docs/wire.md §12)")


def test_constants_match_wire() -> None:
    defaults = KDF["defaults"]
    assert (kdf.ARGON2_MEMORY_KIB, kdf.ARGON2_TIME, kdf.ARGON2_PARALLELISM) == (65536, 3, 1)
    assert (defaults["memory_kib"], defaults["time_cost"], defaults["parallelism"]) == (65536, 3, 1)
    assert (kdf.PIN_INFO, kdf.KEY_INFO, kdf.SALT_SIZE) == (b"cclink-pin-v1", b"cclink-key-v1", 32)
    assert (defaults["pin_info"], defaults["key_info"], defaults["salt_size"]) == ("cclink-pin-v1", "cclink-key-v1", 32)
    assert (defaults["argon2_version"], defaults["hash_len"]) == (0x13, 32)


@pytest.mark.parametrize("vector", cases("kdf", "derivations"))
def test_derivation_vectors(vector: dict) -> None:
    secret, salt, info = vector["secret"], bytes.fromhex(vector["salt_hex"]), vector["info"].encode()
    memory, time, lanes = vector["memory_kib"], vector["time_cost"], vector["parallelism"]
    # The Argon2id stage alone, with argon2-cffi (the reference C implementation), not cclink.
    raw = hash_secret_raw(
        secret.encode(),
        salt,
        time_cost=time,
        memory_cost=memory,
        parallelism=lanes,
        hash_len=32,
        type=Type.ID,
        version=0x13,
    )
    assert raw.hex() == vector["argon2id_hex"]
    derived = kdf.derive(secret, salt, info, memory_kib=memory, time_cost=time, parallelism=lanes)
    assert derived.hex() == vector["key_hex"]
    assert str(agecrypt.identity_from_secret(derived).to_public()) == vector["age_recipient"]


def test_wire_pin_vector_recipient_and_identity() -> None:
    salt = bytes.fromhex(WIRE["salt_hex"])
    identity = kdf.pin_identity(WIRE["secret"], salt)
    recipient = kdf.pin_recipient(WIRE["secret"], salt)
    assert str(identity.to_public()) == str(recipient) == WIRE["age_recipient"]
    ciphertext = agecrypt.encrypt(b"session", recipient)
    assert agecrypt.decrypt(ciphertext, identity) == b"session"


def test_wrong_pin_cannot_decrypt() -> None:
    salt = b"s" * 32
    right = agecrypt.identity_from_secret(kdf.derive("rightpin1", salt, kdf.PIN_INFO, memory_kib=8, time_cost=1))
    wrong = agecrypt.identity_from_secret(kdf.derive("wrongpin1", salt, kdf.PIN_INFO, memory_kib=8, time_cost=1))
    ciphertext = agecrypt.encrypt(b"session", right.to_public())
    with pytest.raises(CannotDecrypt):
        agecrypt.decrypt(ciphertext, wrong)


def test_info_separates_domains() -> None:
    salt = b"x" * 32
    pin = kdf.derive("samesecret", salt, kdf.PIN_INFO, memory_kib=8, time_cost=1)
    key = kdf.derive("samesecret", salt, kdf.KEY_INFO, memory_kib=8, time_cost=1)
    assert pin != key and len(pin) == len(key) == 32


@pytest.mark.parametrize(
    "kwargs",
    [
        {"salt": b"short"},
        {"memory_kib": 7},
        {"memory_kib": 16, "parallelism": 4},
        {"time_cost": 0},
        {"parallelism": 0},
    ],
)
def test_derive_refuses_what_argon2_refuses(kwargs) -> None:
    arguments = {"salt": b"x" * 32, "memory_kib": 8, "time_cost": 1, "parallelism": 1, **kwargs}
    with pytest.raises(ValueError):
        kdf.derive("secret", info=kdf.PIN_INFO, **arguments)


# --- PIN rules ---------------------------------------------------------------------


@pytest.mark.parametrize("vector", cases("kdf", "pins"))
def test_pin_rules(vector: dict) -> None:
    if vector["reason"] is None:
        kdf.check_pin(vector["pin"], carry=vector["carry"])
        return
    with pytest.raises(WeakSecret) as caught:
        kdf.check_pin(vector["pin"], carry=vector["carry"])
    message = str(caught.value)
    assert vector["reason"] in message
    assert "\n" not in message  # one sentence; the CLI capitalises and ends it


def test_every_blocklisted_word_of_eight_or_more_is_refused() -> None:
    for word in kdf.PIN_BLOCKLIST:
        with pytest.raises(WeakSecret):
            kdf.check_pin(word)
        with pytest.raises(WeakSecret):
            kdf.check_pin(word.upper())


@pytest.mark.parametrize("vector", cases("kdf", "passphrases"))
def test_passphrase_rules(vector: dict) -> None:
    if vector["reason"] is None:
        kdf.check_passphrase(vector["passphrase"])
        return
    with pytest.raises(WeakSecret, match=vector["reason"]):
        kdf.check_passphrase(vector["passphrase"])
