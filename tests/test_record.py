"""The handoff record (docs/wire.md §5; vectors in tests/vectors/record.json)."""

from __future__ import annotations

import base64
import dataclasses
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from vector_files import case, cases, data

from cclink.errors import BadSignature, CclinkError, MalformedRecord
from cclink.wire.keys import Identity, PublicKey
from cclink.wire.record import Record, new_record

SEED_42 = Identity(bytes.fromhex(case("keys", "identities", "seed 42")["seed_hex"]))
SEED_99 = Identity(bytes.fromhex(case("keys", "identities", "seed 99")["seed_hex"]))
Z32_42 = SEED_42.public_key.z32
Z32_99 = SEED_99.public_key.z32

VECTOR = case("record", "signed", "seed 42 vector (docs/wire.md §12)")
FULL = case("record", "signed", "every optional field set")
VECTOR_SIGNATURE = base64.b64encode(bytes.fromhex(VECTOR["signature_hex"])).decode()
VECTOR_JSON = data(VECTOR, "record_json")
SALT = bytes.fromhex(FULL["pin_salt_hex"])


def vector_record() -> Record:
    # A fraction of a second after created_at: it is rounded down.
    return new_record(SEED_42, bytes.fromhex(VECTOR["blob_hex"]), ttl=VECTOR["ttl"], now=VECTOR["created_at"] + 0.7)


def full_record() -> Record:
    return new_record(
        SEED_42,
        bytes.fromhex(FULL["blob_hex"]),
        ttl=FULL["ttl"],
        now=FULL["created_at"],
        burn=FULL["burn"],
        pin_salt=SALT,
        recipient=PublicKey.parse(FULL["recipient"]),
    )


def record_of(vector: dict) -> Record:
    """The record a vector describes, unsigned."""
    return Record(
        blob=bytes.fromhex(vector["blob_hex"]),
        created_at=vector["created_at"],
        ttl=vector["ttl"],
        pubkey=vector.get("pubkey", Z32_42),
        burn=vector["burn"],
        hostname=vector["hostname"],
        project=vector["project"],
        pin_salt=None if vector["pin_salt_hex"] is None else bytes.fromhex(vector["pin_salt_hex"]),
        recipient=vector["recipient"],
    )


def document(record: Record) -> dict[str, object]:
    return json.loads(record.to_json())


def encode(doc: dict[str, object]) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


# --- tests/vectors/record.json -----------------------------------------------------------


@pytest.mark.parametrize("vector", cases("record", "signed"))
def test_signed_vectors(vector: dict) -> None:
    identity = Identity(bytes.fromhex(vector["seed_hex"]))
    record = record_of({**vector, "pubkey": identity.public_key.z32}).sign(identity)
    assert record.signable() == data(vector, "signable")
    assert record.signature.hex() == vector["signature_hex"]
    assert record.to_json() == data(vector, "record_json")
    parsed = Record.from_json(data(vector, "record_json"))
    assert parsed == record
    parsed.verify(identity.public_key)
    assert parsed.publisher() == identity.public_key


def test_vector_is_what_new_record_makes() -> None:
    record = vector_record()
    assert record.created_at == 1700000000
    assert record.pubkey == Z32_42
    assert record.signable() == data(VECTOR, "signable")
    assert record.to_json() == VECTOR_JSON and len(VECTOR_JSON) == 225
    assert base64.b64encode(record.signature).decode() == VECTOR_SIGNATURE
    assert Record.from_json(VECTOR_JSON).recipient_key() is None
    assert full_record().to_json() == data(FULL, "record_json")


@pytest.mark.parametrize("vector", cases("record", "accepted"))
def test_accepted_vectors(vector: dict) -> None:
    assert Record.from_json(data(vector, "data")) == dataclasses.replace(
        record_of(vector), signature=bytes.fromhex(vector["signature_hex"])
    )


@pytest.mark.parametrize("vector", cases("record", "refused"))
def test_refused_vectors(vector: dict) -> None:
    with pytest.raises(MalformedRecord):
        Record.from_json(data(vector, "data"))


@pytest.mark.parametrize("vector", cases("record", "verify_refused"))
def test_verify_refused_vectors(vector: dict) -> None:
    record = Record.from_json(data(vector, "data"))
    expected = MalformedRecord if "publisher" in vector["reason"] else BadSignature
    with pytest.raises(expected):
        record.verify(PublicKey.parse(vector["pubkey"]))


# --- optional fields --------------------------------------------------------------


def test_full_record_json_has_every_key_alphabetically() -> None:
    record = full_record()
    doc = document(record)
    assert list(doc) == sorted(doc)
    assert list(doc) == [
        "blob",
        "burn",
        "created_at",
        "pin_salt",
        "pubkey",
        "recipient",
        "signature",
        "ttl",
    ]
    assert doc["burn"] is True
    assert doc["pin_salt"] == base64.b64encode(SALT).decode()
    assert doc["recipient"] == Z32_99


def test_full_record_round_trip() -> None:
    record = full_record()
    parsed = Record.from_json(record.to_json())
    assert parsed == record
    parsed.verify(SEED_42.public_key)
    assert parsed.recipient_key() == SEED_99.public_key


def test_hostname_and_project_written_when_set() -> None:
    record = dataclasses.replace(vector_record(), hostname="box", project="/p").sign(SEED_42)
    doc = document(record)
    assert list(doc) == ["blob", "created_at", "hostname", "project", "pubkey", "signature", "ttl"]
    Record.from_json(record.to_json()).verify(SEED_42.public_key)


def test_pk_prefixed_recipient_is_accepted_and_signed_as_stored() -> None:
    # The Rust tool stores --share as typed, so `pk:` can be on the wire and in the signature.
    record = dataclasses.replace(vector_record(), recipient="pk:" + Z32_99).sign(SEED_42)
    parsed = Record.from_json(record.to_json())
    assert parsed.recipient == "pk:" + Z32_99
    assert parsed.recipient_key() == SEED_99.public_key
    parsed.verify(SEED_42.public_key)


# --- escaping -----------------------------------------------------------------------


def test_every_c0_control_escaped_like_serde() -> None:
    short = {8: "\\b", 9: "\\t", 10: "\\n", 12: "\\f", 13: "\\r"}
    for code in range(0x20):
        record = dataclasses.replace(vector_record(), project=chr(code))
        expected = short.get(code, f"\\u{code:04x}")
        assert f'"project":"{expected}"'.encode() in record.to_json()


# --- signatures -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "change",
    [
        {"burn": True},
        {"recipient": Z32_99},
        {"pin_salt": SALT},
        {"ttl": 3601},
        {"created_at": 1700000001},
        {"blob": b"testblob!"},
        {"hostname": "x"},
        {"project": "/x"},
    ],
)
def test_tampering_breaks_the_signature(change: dict[str, object]) -> None:
    tampered = dataclasses.replace(vector_record(), **change)
    with pytest.raises(BadSignature):
        tampered.verify(SEED_42.public_key)
    # And through the wire format too.
    with pytest.raises(BadSignature):
        Record.from_json(tampered.to_json()).verify(SEED_42.public_key)


def test_tampering_with_a_set_field_breaks_the_signature() -> None:
    record = full_record()
    for change in ({"burn": False}, {"recipient": None}, {"pin_salt": None}, {"pin_salt": SALT[::-1]}):
        with pytest.raises(BadSignature):
            dataclasses.replace(record, **change).verify(SEED_42.public_key)


def test_signature_by_another_key_fails() -> None:
    forged = dataclasses.replace(vector_record()).sign(SEED_99)
    with pytest.raises(BadSignature):
        forged.verify(SEED_42.public_key)


def test_pubkey_field_must_match_publisher() -> None:
    record = vector_record()
    with pytest.raises(MalformedRecord):
        record.verify(SEED_99.public_key)
    # A record re-signed by someone else, still naming key 42, under their key.
    relabelled = record.sign(SEED_99)
    with pytest.raises(MalformedRecord):
        relabelled.verify(SEED_99.public_key)


def test_unsigned_record_fails() -> None:
    with pytest.raises(BadSignature):
        dataclasses.replace(vector_record(), signature=b"").verify(SEED_42.public_key)


# --- expiry ---------------------------------------------------------------------------


def test_expiry() -> None:
    record = vector_record()
    assert record.expires_at == 1700003600
    assert not record.is_expired(1700003599.999)
    assert record.is_expired(1700003600)
    assert record.is_expired(1800000000)


# --- strict parsing -----------------------------------------------------------------


def _with(**changes: object) -> bytes:
    doc = document(vector_record())
    for key, value in changes.items():
        if value is _DELETE:
            del doc[key]
        else:
            doc[key] = value
    return encode(doc)


_DELETE = object()


def test_deep_nesting_is_refused() -> None:
    # Too large for record.json's refused list: 100 000 nested arrays.
    with pytest.raises(MalformedRecord):
        Record.from_json(b"[" * 100000)


def test_error_names_the_field() -> None:
    with pytest.raises(MalformedRecord, match="ttl"):
        Record.from_json(_with(ttl=True))
    with pytest.raises(MalformedRecord, match="pin_salt"):
        Record.from_json(_with(pin_salt=base64.b64encode(bytes(31)).decode()))
    with pytest.raises(MalformedRecord, match="signature"):
        Record.from_json(_with(signature=base64.b64encode(bytes(63)).decode()))


def test_new_record_rejects_bad_salt() -> None:
    with pytest.raises(ValueError):
        new_record(SEED_42, b"x", ttl=1, now=0, pin_salt=b"short")


def test_new_record_stores_bare_recipient() -> None:
    record = new_record(SEED_42, b"x", ttl=1, now=0, recipient=PublicKey.parse("pk:" + Z32_99))
    assert record.recipient == Z32_99


# --- properties -----------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_arbitrary_bytes_raise_only_cclink_errors(data: bytes) -> None:
    try:
        Record.from_json(data)
    except CclinkError:
        pass


_values = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from(["dGVzdGJsb2I=", VECTOR_SIGNATURE, base64.b64encode(SALT).decode(), Z32_42, "pk:" + Z32_99])
)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.sampled_from([*document(full_record()), "hostname", "project", "x"]), _values))
def test_arbitrary_field_values_raise_only_cclink_errors(changes: dict[str, object]) -> None:
    doc = document(full_record())
    doc.update(changes)
    try:
        record = Record.from_json(json.dumps(doc).encode())
    except CclinkError:
        return
    assert Record.from_json(record.to_json()) == record
