"""Identities, public keys, z-base-32 and age (docs/wire.md §1, §2 and §12)."""

from __future__ import annotations

import base64
import shutil
import subprocess
from pathlib import Path

import bech32
import nacl.bindings
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cclink.errors import BadSignature, CannotDecrypt, InvalidPublicKey, WireError
from cclink.wire import agecrypt, z32
from cclink.wire.keys import Identity, PublicKey

SEED_42 = bytes([42]) * 32
PUBLIC_HEX = "197f6b23e16c8532c6abc838facd5ea789be0c76b2920334039bfa8b3d368d61"
Z32_42 = "df9sse9bp1nuftim3yhxiuk6w6r5hddsskjygpydux7esxjstioo"
X25519_PUBLIC_HEX = "55c0506c70233f01c32633ba683b9099c4d4adb209a046c3470b78788ec3c13f"
AGE_RECIPIENT = "age12hq9qmrsyvlsrsexxwaxswusn8zdftdjpxsyds68pdu83rkrcyls8ue8fk"
AGE_IDENTITY = "AGE-SECRET-KEY-17G9ZVYAAHN8FJRG2ZFXKL39LJUCE6RXV70M85TPLU46MTWVCVNFQVSTCDW"
Z32_99 = "w95p9mhx8nhjzkgqc1pi1uhthueb9znz98rw1xxw8pxfbkcaqpuo"

# Section 5 vector, here only as a check of Identity.sign / PublicKey.verify.
SIGNABLE = (
    b'{"blob":"dGVzdGJsb2I=","burn":false,"created_at":1700000000,"hostname":"","pin_salt":null,'
    b'"project":"","pubkey":"df9sse9bp1nuftim3yhxiuk6w6r5hddsskjygpydux7esxjstioo","recipient":null,"ttl":3600}'
)
SIGNATURE_B64 = "rFZyqzmJ2jkDsRGlX9fHq8USCgaGCFqsclifIHg7nM8Q83aJqC+fhdhm0yNq7BDkEzATTbsiwevygTLjOgGUDA=="

AGE = shutil.which("age")
needs_age = pytest.mark.skipif(AGE is None, reason="the Debian `age` CLI is not installed (apt-get install age)")
needs_age_keygen = pytest.mark.skipif(
    shutil.which("age-keygen") is None, reason="the Debian `age-keygen` CLI is not installed (apt-get install age)"
)


def bech32_payload(text: str, hrp: str) -> bytes:
    decoded_hrp, data = bech32.bech32_decode(text.lower())
    assert decoded_hrp == hrp
    return bytes(bech32.convertbits(data, 5, 8, False))


# --- section 1 / 2 vectors ---------------------------------------------------------------


def test_seed_42_public_key() -> None:
    identity = Identity(SEED_42)
    assert identity.public_key.raw.hex() == PUBLIC_HEX
    assert identity.public_key.z32 == Z32_42
    assert identity.public_key.display == "pk:" + Z32_42
    assert str(identity.public_key) == "pk:" + Z32_42
    assert identity.public_key.fingerprint == Z32_42[:8] == "df9sse9b"
    assert len(identity.public_key.z32) == 52


def test_seed_42_x25519_and_age() -> None:
    identity = Identity(SEED_42)
    recipient = str(identity.public_key.age_recipient())
    assert recipient == AGE_RECIPIENT
    assert bech32_payload(recipient, "age").hex() == X25519_PUBLIC_HEX
    assert nacl.bindings.crypto_sign_ed25519_pk_to_curve25519(identity.public_key.raw).hex() == X25519_PUBLIC_HEX
    assert str(identity.age_identity()) == AGE_IDENTITY
    assert str(identity.age_identity().to_public()) == AGE_RECIPIENT


def test_x25519_secret_is_sha512_half_and_matches_libsodium_after_clamping() -> None:
    identity = Identity(SEED_42)
    assert bech32_payload(AGE_IDENTITY, "age-secret-key-") == identity.x25519_secret()
    libsodium = nacl.bindings.crypto_sign_ed25519_sk_to_curve25519(SEED_42 + identity.public_key.raw)
    clamped = bytearray(identity.x25519_secret())
    clamped[0] &= 248
    clamped[31] &= 127
    clamped[31] |= 64
    assert libsodium == bytes(clamped)


def test_seed_99() -> None:
    assert Identity(bytes([99]) * 32).public_key.z32 == Z32_99


def test_z32_hello() -> None:
    assert z32.encode(b"hello") == "pb1sa5dx"
    assert z32.decode("pb1sa5dx") == b"hello"


def test_signature_vector() -> None:
    identity = Identity(SEED_42)
    signature = identity.sign(SIGNABLE)
    assert base64.b64encode(signature).decode() == SIGNATURE_B64
    identity.public_key.verify(SIGNABLE, signature)
    with pytest.raises(BadSignature):
        identity.public_key.verify(SIGNABLE + b" ", signature)
    with pytest.raises(BadSignature):
        Identity(bytes([99]) * 32).public_key.verify(SIGNABLE, signature)
    with pytest.raises(BadSignature):
        identity.public_key.verify(SIGNABLE, signature[:63])


def test_identity_repr_hides_the_seed() -> None:
    text = repr(Identity(SEED_42))
    assert Z32_42 in text and SEED_42.hex() not in text and "42, 42" not in text


@pytest.mark.parametrize("seed", [b"", b"x" * 31, b"x" * 33])
def test_identity_needs_32_bytes(seed: bytes) -> None:
    with pytest.raises(ValueError):
        Identity(seed)


def test_generate_is_random() -> None:
    first, second = Identity.generate(), Identity.generate()
    assert first.seed != second.seed and len(first.seed) == 32


# --- parsing public keys ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [Z32_42, "pk:" + Z32_42, "  pk:" + Z32_42 + "\n", Z32_42.upper(), "pk:" + Z32_42.upper(), "\t" + Z32_42],
)
def test_parse_accepts_both_forms(text: str) -> None:
    assert PublicKey.parse(text).raw.hex() == PUBLIC_HEX


def _z32_with_bad_padding() -> str:
    # 52 symbols carry 260 bits: the last symbol's 4 low bits must be zero.
    last = z32.ALPHABET[z32.ALPHABET.index(Z32_42[-1]) | 1]
    return Z32_42[:-1] + last


@pytest.mark.parametrize(
    "text",
    [
        "",
        "pk:",
        "pk:pk:" + Z32_42,
        "PK:" + Z32_42,  # the prefix is lower case
        Z32_42[:-1],
        Z32_42 + "y",
        Z32_42[:-1] + "0",  # 0, l, v, 2 are not z-base-32
        Z32_42[:-1] + "l",
        "pk:" + Z32_42[:20] + " " + Z32_42[21:],
        "age1" + Z32_42[4:],
        PUBLIC_HEX,
        _z32_with_bad_padding(),
        z32.encode(bytes([2]) + bytes(31)),  # y = 2 is not on the curve
        z32.encode(bytes([1]) + bytes(31)),  # the neutral element: small order
        z32.encode(bytes(32)),  # small order
        "pk:" + "é" * 52,
    ],
)
def test_parse_refuses_bad_keys(text: str) -> None:
    with pytest.raises(InvalidPublicKey):
        PublicKey.parse(text)


@pytest.mark.parametrize("raw", [b"", b"\x19" * 31, bytes.fromhex(PUBLIC_HEX) + b"\0", bytes([2]) + bytes(31)])
def test_public_key_refuses_bad_bytes(raw: bytes) -> None:
    with pytest.raises(InvalidPublicKey):
        PublicKey(raw)


def test_invalid_public_key_is_a_usage_error() -> None:
    with pytest.raises(InvalidPublicKey) as caught:
        PublicKey.parse("nonsense")
    assert caught.value.exit_code == 2
    assert "\n" not in str(caught.value)


# --- z-base-32 --------------------------------------------------------------------------------


@given(st.binary(max_size=80))
def test_z32_round_trip(data: bytes) -> None:
    text = z32.encode(data)
    assert len(text) == -(-len(data) * 8 // 5)
    assert set(text) <= set(z32.ALPHABET)
    assert z32.decode(text) == data


@given(st.binary(min_size=32, max_size=32))
def test_z32_keys_are_52_characters(data: bytes) -> None:
    assert len(z32.encode(data)) == 52


@pytest.mark.parametrize("text", ["0", "pb1sa5dX", "yn", "pb1sa5dxy", "y"])  # yn: nonzero padding bits
def test_z32_decode_refuses(text: str) -> None:
    with pytest.raises(WireError):
        z32.decode(text)


def test_z32_alphabet() -> None:
    assert z32.ALPHABET == "ybndrfg8ejkmcpqxot1uwisza345h769"
    assert z32.encode(bytes(32)) == "y" * 52


# --- age ---------------------------------------------------------------------------------------


def test_age_round_trip() -> None:
    identity = Identity(SEED_42)
    ciphertext = agecrypt.encrypt(b"session id", identity.public_key.age_recipient())
    assert ciphertext.startswith(b"age-encryption.org/v1\n")  # binary, not armored
    assert ciphertext.count(b"\n-> X25519 ") == 1  # one recipient
    assert agecrypt.decrypt(ciphertext, identity.age_identity()) == b"session id"


def test_age_raw_key_helpers_match_identity() -> None:
    identity = Identity(SEED_42)
    assert str(agecrypt.recipient_from_public(bytes.fromhex(X25519_PUBLIC_HEX))) == AGE_RECIPIENT
    assert str(agecrypt.identity_from_secret(identity.x25519_secret())) == AGE_IDENTITY


def test_age_wrong_key_or_damage() -> None:
    ciphertext = agecrypt.encrypt(b"session id", Identity(SEED_42).public_key.age_recipient())
    with pytest.raises(CannotDecrypt):
        agecrypt.decrypt(ciphertext, Identity(bytes([99]) * 32).age_identity())
    with pytest.raises(CannotDecrypt):
        agecrypt.decrypt(ciphertext[:-1], Identity(SEED_42).age_identity())
    with pytest.raises(CannotDecrypt):
        agecrypt.decrypt(b"", Identity(SEED_42).age_identity())


@needs_age
def test_age_cli_file_decrypts_with_seed_42() -> None:
    made = subprocess.run(
        [AGE, "-r", AGE_RECIPIENT], input=b"from the age CLI", capture_output=True, check=True, timeout=30
    )
    assert agecrypt.decrypt(made.stdout, Identity(SEED_42).age_identity()) == b"from the age CLI"


@needs_age
def test_agecrypt_file_decrypts_with_age_cli(tmp_path: Path) -> None:
    identity_file = tmp_path / "identity.txt"
    identity_file.write_text(str(Identity(SEED_42).age_identity()) + "\n")
    identity_file.chmod(0o600)
    ciphertext = agecrypt.encrypt(b"from agecrypt", Identity(SEED_42).public_key.age_recipient())
    opened = subprocess.run(
        [AGE, "-d", "-i", str(identity_file)], input=ciphertext, capture_output=True, check=True, timeout=30
    )
    assert opened.stdout == b"from agecrypt"


@needs_age_keygen
def test_age_keygen_derives_the_vector_recipient() -> None:
    derived = subprocess.run(
        ["age-keygen", "-y"], input=AGE_IDENTITY.encode() + b"\n", capture_output=True, check=True, timeout=30
    )
    assert derived.stdout.decode().strip() == AGE_RECIPIENT
