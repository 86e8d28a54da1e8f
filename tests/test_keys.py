"""Identities, public keys, z-base-32 and age (docs/wire.md §1, §2; vectors in tests/vectors/keys.json, z32.json)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import bech32
import nacl.bindings
import pytest
from hypothesis import given
from hypothesis import strategies as st
from vector_files import VECTORS, case, cases, data, load

from cclink.errors import BadSignature, CannotDecrypt, InvalidPublicKey, WireError
from cclink.wire import agecrypt, z32
from cclink.wire.keys import Identity, PublicKey

KEYS = load("keys")
SEED_42_CASE = case("keys", "identities", "seed 42")
SEED_42 = bytes.fromhex(SEED_42_CASE["seed_hex"])
SEED_99 = bytes.fromhex(case("keys", "identities", "seed 99")["seed_hex"])
Z32_42 = SEED_42_CASE["z32"]
AGE_RECIPIENT = SEED_42_CASE["age_recipient"]
AGE_IDENTITY = SEED_42_CASE["age_identity"]

AGE = shutil.which("age")
needs_age = pytest.mark.skipif(AGE is None, reason="the Debian `age` CLI is not installed (apt-get install age)")
needs_age_keygen = pytest.mark.skipif(
    shutil.which("age-keygen") is None, reason="the Debian `age-keygen` CLI is not installed (apt-get install age)"
)


def bech32_payload(text: str, hrp: str) -> bytes:
    decoded_hrp, data = bech32.bech32_decode(text.lower())
    assert decoded_hrp == hrp
    return bytes(bech32.convertbits(data, 5, 8, False))


# --- tests/vectors/keys.json and z32.json ------------------------------------------------------


def test_vector_files_share_one_shape() -> None:
    """Every file says what it is and which section it illustrates, and its bytes are lowercase hex."""
    names = sorted(path.stem for path in VECTORS.glob("*.json"))
    assert names == ["carry", "envelope", "kdf", "keyfile", "keys", "packet", "payload", "record", "z32"]
    for name in names:
        document = load(name)
        assert {"description", "wire", "encoding", "reasons"} <= set(document), name
        assert document["wire"].startswith("docs/wire.md §"), name
        groups = [
            value for value in document.values() if isinstance(value, list) and value and isinstance(value[0], dict)
        ]
        assert groups, name
        for group in groups:
            for vector in group:
                for field, value in vector.items():
                    if field.endswith("_hex") and value is not None:
                        assert value == value.lower() and bytes.fromhex(value).hex() == value, (name, field)


@pytest.mark.parametrize("vector", cases("keys", "identities"))
def test_identity_vectors(vector: dict) -> None:
    identity = Identity(bytes.fromhex(vector["seed_hex"]))
    public_key = identity.public_key
    assert public_key.raw.hex() == vector["public_key_hex"]
    assert public_key.z32 == vector["z32"] and len(public_key.z32) == 52
    assert public_key.display == str(public_key) == vector["display"] == "pk:" + vector["z32"]
    assert public_key.fingerprint == vector["fingerprint"] == vector["z32"][:8]
    if "x25519_public_hex" in vector:
        assert nacl.bindings.crypto_sign_ed25519_pk_to_curve25519(public_key.raw).hex() == vector["x25519_public_hex"]
        assert (
            str(agecrypt.recipient_from_public(bytes.fromhex(vector["x25519_public_hex"]))) == vector["age_recipient"]
        )
    if "x25519_secret_hex" in vector:
        assert identity.x25519_secret().hex() == vector["x25519_secret_hex"]
        assert str(agecrypt.identity_from_secret(identity.x25519_secret())) == vector["age_identity"]
    if "age_recipient" in vector:
        recipient = str(public_key.age_recipient())
        assert recipient == vector["age_recipient"]
        assert bech32_payload(recipient, "age").hex() == vector["x25519_public_hex"]
        assert str(identity.age_identity()) == vector["age_identity"]
        assert str(identity.age_identity().to_public()) == vector["age_recipient"]
        assert bech32_payload(vector["age_identity"], "age-secret-key-").hex() == vector["x25519_secret_hex"]


def test_x25519_secret_is_sha512_half_and_matches_libsodium_after_clamping() -> None:
    identity = Identity(SEED_42)
    assert bech32_payload(AGE_IDENTITY, "age-secret-key-") == identity.x25519_secret()
    libsodium = nacl.bindings.crypto_sign_ed25519_sk_to_curve25519(SEED_42 + identity.public_key.raw)
    clamped = bytearray(identity.x25519_secret())
    clamped[0] &= 248
    clamped[31] &= 127
    clamped[31] |= 64
    assert libsodium == bytes(clamped)


@pytest.mark.parametrize("vector", cases("keys", "signatures"))
def test_signature_vectors(vector: dict) -> None:
    identity = Identity(bytes.fromhex(vector["seed_hex"]))
    message = data(vector, "message")
    signature = identity.sign(message)
    assert signature.hex() == vector["signature_hex"]
    identity.public_key.verify(message, signature)


@pytest.mark.parametrize("vector", cases("keys", "signatures_refused"))
def test_signatures_refused(vector: dict) -> None:
    with pytest.raises(BadSignature):
        PublicKey(bytes.fromhex(vector["public_key_hex"])).verify(
            data(vector, "message"), bytes.fromhex(vector["signature_hex"])
        )


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


@pytest.mark.parametrize("vector", cases("keys", "public_keys_parsed"))
def test_parse_accepts_both_forms(vector: dict) -> None:
    assert PublicKey.parse(vector["text"]).raw.hex() == vector["public_key_hex"]


@pytest.mark.parametrize("vector", cases("keys", "public_keys_refused"))
def test_parse_refuses_bad_keys(vector: dict) -> None:
    with pytest.raises(InvalidPublicKey):
        PublicKey.parse(vector["text"])


def test_bad_padding_vector_differs_only_in_padding() -> None:
    # 52 symbols carry 260 bits: the last symbol's 4 low bits must be zero.
    (text,) = [vector["text"] for vector in KEYS["public_keys_refused"] if vector["name"] == "non-zero padding"]
    assert text[:-1] == Z32_42[:-1] and z32.ALPHABET.index(text[-1]) == z32.ALPHABET.index(Z32_42[-1]) | 1


@pytest.mark.parametrize("vector", cases("keys", "public_key_bytes_refused"))
def test_public_key_refuses_bad_bytes(vector: dict) -> None:
    with pytest.raises(InvalidPublicKey):
        PublicKey(bytes.fromhex(vector["public_key_hex"]))


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


@pytest.mark.parametrize("vector", cases("z32", "encode"))
def test_z32_vectors(vector: dict) -> None:
    assert z32.encode(bytes.fromhex(vector["data_hex"])) == vector["z32"]
    assert z32.decode(vector["z32"]).hex() == vector["data_hex"]


@pytest.mark.parametrize("vector", cases("z32", "decode_refused"))
def test_z32_decode_refuses(vector: dict) -> None:
    with pytest.raises(WireError):
        z32.decode(vector["z32"])


def test_z32_alphabet() -> None:
    assert z32.ALPHABET == load("z32")["alphabet"] == "ybndrfg8ejkmcpqxot1uwisza345h769"


# --- age ---------------------------------------------------------------------------------------


def test_age_round_trip() -> None:
    identity = Identity(SEED_42)
    ciphertext = agecrypt.encrypt(b"session id", identity.public_key.age_recipient())
    assert ciphertext.startswith(b"age-encryption.org/v1\n")  # binary, not armored
    assert ciphertext.count(b"\n-> X25519 ") == 1  # one recipient
    assert agecrypt.decrypt(ciphertext, identity.age_identity()) == b"session id"


def test_age_wrong_key_or_damage() -> None:
    ciphertext = agecrypt.encrypt(b"session id", Identity(SEED_42).public_key.age_recipient())
    with pytest.raises(CannotDecrypt):
        agecrypt.decrypt(ciphertext, Identity(SEED_99).age_identity())
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
