"""Argon2id + HKDF derivation and the PIN / passphrase rules (docs/wire.md §3)."""

from __future__ import annotations

import pytest
from argon2.low_level import Type, hash_secret_raw

from cclink.errors import CannotDecrypt, WeakSecret
from cclink.wire import agecrypt, kdf

# --- docs/wire.md §12 vector: PIN "validpin", salt = the 32 ASCII bytes below ----------------
WIRE_PIN = "validpin"
WIRE_SALT = b"0123456789abcdef0123456789abcdef"
WIRE_ARGON2 = "c83ea6dba9dfb6294cb945e6ada4fb1bbdccf4daccd542aadc1c4ffd4df21de4"
WIRE_HKDF = "87a90b7cfe3c1e5edd036f9f47cbc0a99e1a1bebefb332e2d0fbca5953ec5d19"
WIRE_RECIPIENT = "age1kfhz26vyx3h6hh73kcn7awrzvj4hecha8pe7v8en4x6ru5kchehsff3h9m"

# --- Our own vectors, made with independent tools (Debian argon2 0~20171227, OpenSSL 3.0) ---
# argon2: echo -n "$SECRET" | argon2 "$SALT" -id -k <KiB> -t <t> -p <p> -l 32 -r
# HKDF:   openssl kdf -keylen 32 -kdfopt digest:SHA256 -kdfopt hexkey:<argon2 hex> \
#             -kdfopt info:<info> HKDF
# recipient: bech32("age-secret-key-", hkdf bytes).upper() | age-keygen -y   (age 1.1.1)
OWN_VECTORS = [
    pytest.param(
        "correct horse battery",
        b"cclink-test-salt-0123456789abcde",
        kdf.KEY_INFO,
        1024,
        2,
        1,
        "865eb0fd6c0a17e0ac9514a9d7df70d77b7e9253fed23db50673b6aa0cf56ce1",
        "d4b498ffc0c9dcaebd69941f9dba41c2764962803ac1dd9e649e0cf865be9981",
        "age1djn9hrf5590wtthk5wxt3wqtgkd40297mrpxvf3yanvslj38e57qkjp5d3",
        id="key-info-1MiB-t2",
    ),
    pytest.param(
        # Non-ASCII secret (UTF-8 on the argon2 CLI's stdin) and four lanes.
        "pässwörd-ünïcode",
        b"saltsaltsaltsaltsaltsaltsaltsalt",
        kdf.PIN_INFO,
        64,
        1,
        4,
        "4e05e292633f98c4a29b79ef35cc827d1e9b9e75bddec9e9d01f8badfe50c9ff",
        "0ddc52b63cc1f0567cb3ce81e9f24d19150e42e552b3086679e152f8dcf7818d",
        "age1jcfuzuqg8dqv43unded8z6hr4jr89347c5r2h6863wnrs2nsns4qu6f4xz",
        id="pin-info-unicode-p4",
    ),
    pytest.param(
        # The default (envelope) parameters: -k 65536 -t 3 -p 1.
        "hunter22hunter22",
        b"0123456789abcdef0123456789abcdef",
        kdf.KEY_INFO,
        65536,
        3,
        1,
        "d814c99c1426d51c9a5a4ca510db97f0aafefebc8ab83cc6267a36f9779fa5a5",
        "e2abc0f688486c577bcf3f62f6610799aa38574caaba53675842090200098a82",
        "age15lk5knf5h6j9qgvhte38l6xjd6mcgx92uhjp360nqqua4jnc64ks63t8da",
        id="key-info-defaults",
    ),
]


def test_constants_match_wire() -> None:
    assert (kdf.ARGON2_MEMORY_KIB, kdf.ARGON2_TIME, kdf.ARGON2_PARALLELISM) == (65536, 3, 1)
    assert (kdf.PIN_INFO, kdf.KEY_INFO, kdf.SALT_SIZE) == (b"cclink-pin-v1", b"cclink-key-v1", 32)


def test_wire_pin_vector_argon2_stage() -> None:
    raw = hash_secret_raw(
        WIRE_PIN.encode(),
        WIRE_SALT,
        time_cost=kdf.ARGON2_TIME,
        memory_cost=kdf.ARGON2_MEMORY_KIB,
        parallelism=kdf.ARGON2_PARALLELISM,
        hash_len=32,
        type=Type.ID,
        version=0x13,
    )
    assert raw.hex() == WIRE_ARGON2


def test_wire_pin_vector_after_hkdf() -> None:
    assert kdf.derive(WIRE_PIN, WIRE_SALT, kdf.PIN_INFO).hex() == WIRE_HKDF


def test_wire_pin_vector_recipient_and_identity() -> None:
    identity = kdf.pin_identity(WIRE_PIN, WIRE_SALT)
    recipient = kdf.pin_recipient(WIRE_PIN, WIRE_SALT)
    assert str(identity.to_public()) == str(recipient) == WIRE_RECIPIENT
    ciphertext = agecrypt.encrypt(b"session", recipient)
    assert agecrypt.decrypt(ciphertext, identity) == b"session"


def test_wrong_pin_cannot_decrypt() -> None:
    salt = b"s" * 32
    right = agecrypt.identity_from_secret(kdf.derive("rightpin1", salt, kdf.PIN_INFO, memory_kib=8, time_cost=1))
    wrong = agecrypt.identity_from_secret(kdf.derive("wrongpin1", salt, kdf.PIN_INFO, memory_kib=8, time_cost=1))
    ciphertext = agecrypt.encrypt(b"session", right.to_public())
    with pytest.raises(CannotDecrypt):
        agecrypt.decrypt(ciphertext, wrong)


@pytest.mark.parametrize("secret,salt,info,memory,time,lanes,argon2_hex,hkdf_hex,recipient", OWN_VECTORS)
def test_own_vectors(secret, salt, info, memory, time, lanes, argon2_hex, hkdf_hex, recipient) -> None:
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
    assert raw.hex() == argon2_hex
    derived = kdf.derive(secret, salt, info, memory_kib=memory, time_cost=time, parallelism=lanes)
    assert derived.hex() == hkdf_hex
    assert str(agecrypt.identity_from_secret(derived).to_public()) == recipient


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


@pytest.mark.parametrize(
    "pin",
    ["validpin", "MyS3cur3P1n!", "12345679", "abcdefgi", "aaaaaaab", "correct horse", "ñandú-ñandú", "13572468"],
)
def test_acceptable_pins(pin: str) -> None:
    kdf.check_pin(pin)


@pytest.mark.parametrize(
    "pin,reason",
    [
        ("", "at least 8"),
        ("1234567", "at least 8"),
        ("abc", "at least 8"),
        ("ñandú", "at least 8"),
        ("00000000", "single character"),
        ("aaaaaaaaaaaa", "single character"),
        ("12345678", "consecutive"),
        ("abcdefgh", "consecutive"),
        ("87654321", "consecutive"),
        ("hgfedcba", "consecutive"),
        ("3456789:", "consecutive"),  # by code point, not just digits and letters
        ("αβγδεζηθ", "consecutive"),
        ("password", "common"),
        ("Password", "common"),
        ("PASSWORD", "common"),
        ("qwertyui", "common"),
        ("QwErTyUi", "common"),
        ("asdfghjk", "common"),
        ("letmein!", None),  # not on the list: accepted (checked below)
        ("iloveyou", "common"),
        ("sunshine", "common"),
        ("princess", "common"),
        ("football", "common"),
        ("baseball", "common"),
        ("123456789", "consecutive"),
    ],
)
def test_pin_rules(pin: str, reason: str | None) -> None:
    if reason is None:
        kdf.check_pin(pin)
        return
    with pytest.raises(WeakSecret) as caught:
        kdf.check_pin(pin)
    message = str(caught.value)
    assert reason in message
    assert "\n" not in message  # one sentence; the CLI capitalises and ends it


@pytest.mark.parametrize(
    ("pin", "accepted"),
    [
        ("tulip-harbor", True),
        ("correct horse", True),
        ("tulip-42", False),
        ("482915637201", False),
        ("12345678901234567", False),
    ],
)
def test_carry_pins_must_be_longer_and_more_than_digits(pin: str, accepted: bool) -> None:
    if accepted:
        kdf.check_pin(pin, carry=True)
        return
    with pytest.raises(WeakSecret):
        kdf.check_pin(pin, carry=True)
    if pin != "12345678901234567":  # a run: refused without --carry too
        kdf.check_pin(pin)


def test_every_blocklisted_word_of_eight_or_more_is_refused() -> None:
    for word in kdf.PIN_BLOCKLIST:
        with pytest.raises(WeakSecret):
            kdf.check_pin(word)
        with pytest.raises(WeakSecret):
            kdf.check_pin(word.upper())


@pytest.mark.parametrize("passphrase", ["", "short", "1234567", "ñandú12"])
def test_short_passphrases_are_refused(passphrase: str) -> None:
    with pytest.raises(WeakSecret, match="at least 8"):
        kdf.check_passphrase(passphrase)


@pytest.mark.parametrize("passphrase", ["12345678", "aaaaaaaa", "password", "correct horse battery staple"])
def test_passphrase_needs_only_length(passphrase: str) -> None:
    kdf.check_passphrase(passphrase)
