from __future__ import annotations

import base64
import dataclasses
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cclink.errors import BadSignature, CclinkError, MalformedRecord
from cclink.wire.keys import Identity, PublicKey
from cclink.wire.record import Record, new_record

SEED_42 = Identity(bytes([42]) * 32)
SEED_99 = Identity(bytes([99]) * 32)
Z32_42 = "df9sse9bp1nuftim3yhxiuk6w6r5hddsskjygpydux7esxjstioo"
Z32_99 = "w95p9mhx8nhjzkgqc1pi1uhthueb9znz98rw1xxw8pxfbkcaqpuo"

VECTOR_SIGNABLE = (
    b'{"blob":"dGVzdGJsb2I=","burn":false,"created_at":1700000000,"hostname":"","pin_salt":null,'
    b'"project":"","pubkey":"df9sse9bp1nuftim3yhxiuk6w6r5hddsskjygpydux7esxjstioo","recipient":null,'
    b'"ttl":3600}'
)
VECTOR_SIGNATURE = "rFZyqzmJ2jkDsRGlX9fHq8USCgaGCFqsclifIHg7nM8Q83aJqC+fhdhm0yNq7BDkEzATTbsiwevygTLjOgGUDA=="
VECTOR_JSON = (
    b'{"blob":"dGVzdGJsb2I=","created_at":1700000000,'
    b'"pubkey":"df9sse9bp1nuftim3yhxiuk6w6r5hddsskjygpydux7esxjstioo",'
    b'"signature":"rFZyqzmJ2jkDsRGlX9fHq8USCgaGCFqsclifIHg7nM8Q83aJqC+fhdhm0yNq7BDkEzATTbsiwevygTLjOgGUDA==",'
    b'"ttl":3600}'
)
SALT = b"0123456789abcdef0123456789abcdef"


def vector_record() -> Record:
    return new_record(SEED_42, b"testblob", ttl=3600, now=1700000000.7)


def full_record() -> Record:
    return new_record(
        SEED_42, b"\x00\xffblob", ttl=60, now=1700000000, burn=True, pin_salt=SALT, recipient=SEED_99.public_key
    )


def document(record: Record) -> dict[str, object]:
    return json.loads(record.to_json())


def encode(doc: dict[str, object]) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


# --- vectors ----------------------------------------------------------------------


def test_vector_signable() -> None:
    record = vector_record()
    assert record.created_at == 1700000000
    assert record.pubkey == Z32_42
    assert record.signable() == VECTOR_SIGNABLE


def test_vector_signature() -> None:
    assert base64.b64encode(vector_record().signature).decode() == VECTOR_SIGNATURE


def test_vector_record_json() -> None:
    assert vector_record().to_json() == VECTOR_JSON
    assert len(VECTOR_JSON) == 225


def test_vector_parses_and_verifies() -> None:
    record = Record.from_json(VECTOR_JSON)
    assert record == vector_record()
    record.verify(SEED_42.public_key)
    assert record.publisher() == SEED_42.public_key
    assert record.recipient_key() is None


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


def test_full_record_signable_carries_every_field() -> None:
    signable = full_record().signable().decode()
    assert signable == (
        '{"blob":"AP9ibG9i","burn":true,"created_at":1700000000,"hostname":"",'
        f'"pin_salt":"{base64.b64encode(SALT).decode()}","project":"","pubkey":"{Z32_42}",'
        f'"recipient":"{Z32_99}","ttl":60}}'
    )


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


def test_explicit_defaults_and_nulls_are_accepted() -> None:
    doc = document(vector_record())
    doc.update(burn=False, hostname="", project="", pin_salt=None, recipient=None)
    assert Record.from_json(encode(doc)) == vector_record()


def test_unknown_keys_are_ignored() -> None:
    doc = document(vector_record())
    doc["future"] = {"a": [1, 2.5, None]}
    assert Record.from_json(encode(doc)) == vector_record()


def test_pk_prefixed_recipient_is_accepted_and_signed_as_stored() -> None:
    # The Rust tool stores --share as typed, so `pk:` can be on the wire and in the signature.
    record = dataclasses.replace(vector_record(), recipient="pk:" + Z32_99).sign(SEED_42)
    parsed = Record.from_json(record.to_json())
    assert parsed.recipient == "pk:" + Z32_99
    assert parsed.recipient_key() == SEED_99.public_key
    parsed.verify(SEED_42.public_key)


# --- escaping -----------------------------------------------------------------------


def test_escaping_matches_serde_json() -> None:
    # serde_json: \" \\ \b \f \n \r \t, other C0 controls as lower-case \u00xx;
    # DEL, U+2028, `/` and non-ASCII are written raw.
    project = '"\\/\b\f\n\r\t\x00\x01\x1f\x7f\u2028\u2029\u00e9\U0001f600'
    record = dataclasses.replace(vector_record(), project=project, hostname="h\u00f6st\x0b").sign(SEED_42)
    expected_hostname = '"hostname":"h\u00f6st\\u000b",'.encode()
    expected_project = (
        '"project":"\\"\\\\/\\b\\f\\n\\r\\t\\u0000\\u0001\\u001f\x7f\u2028\u2029\u00e9\U0001f600"'.encode()
    )
    assert expected_hostname + expected_project in record.to_json()
    assert expected_hostname + b'"pin_salt":null,' + expected_project in record.signable()
    parsed = Record.from_json(record.to_json())
    assert parsed.project == project
    parsed.verify(SEED_42.public_key)


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


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"null",
        b"[]",
        b'"x"',
        b"{",
        VECTOR_JSON + b"x",
        VECTOR_JSON[:-1],
        b"\xff" + VECTOR_JSON,
        VECTOR_JSON.replace(b'"ttl":3600', b'"ttl":3600,"ttl":3600'),
        VECTOR_JSON.replace(b"3600", b"NaN"),
        VECTOR_JSON.replace(b"3600", b"Infinity"),
        VECTOR_JSON.replace(b"3600", b"1" * 5000),
        b"[" * 100000,
        _with(blob=_DELETE),
        _with(created_at=_DELETE),
        _with(pubkey=_DELETE),
        _with(signature=_DELETE),
        _with(ttl=_DELETE),
        _with(ttl=True),
        _with(created_at=False),
        _with(ttl=-1),
        _with(created_at=-1700000000),
        _with(ttl=2**63),
        _with(ttl=2**64),
        _with(ttl=3600.0),
        _with(created_at=1.7e9),
        _with(ttl="3600"),
        _with(ttl=None),
        _with(burn=1),
        _with(burn="true"),
        _with(burn=None),
        _with(hostname=None),
        _with(hostname=1),
        _with(project=["a"]),
        _with(pubkey=None),
        _with(pubkey="pk:" + Z32_42),
        _with(pubkey=Z32_42.upper()),
        _with(pubkey="hello"),
        _with(recipient=123),
        _with(recipient="not a key"),
        _with(recipient=""),
        _with(blob=123),
        _with(blob="dGVzdGJsb2I"),  # missing padding
        _with(blob="dGVzdGJsb2J="),  # non-zero padding bits
        _with(blob="dGVzd GJsb2I="),
        _with(blob="dGVzdGJsb2I=\n"),
        _with(blob="dGVzdGJsb2I=="),
        _with(blob="dGVzdGJsb2I=dGVz"),
        _with(blob="dGVzdGJs_2I="),  # URL-safe alphabet
        _with(blob="dGVzdGJsb2\u00e9="),
        _with(signature=base64.b64encode(bytes(63)).decode()),
        _with(signature=base64.b64encode(bytes(65)).decode()),
        _with(signature=""),
        _with(pin_salt=base64.b64encode(bytes(31)).decode()),
        _with(pin_salt=base64.b64encode(bytes(33)).decode()),
        _with(pin_salt=""),
        _with(pin_salt=1),
        _with(pin_salt="!!!!"),
    ],
)
def test_malformed_records_rejected(data: bytes) -> None:
    with pytest.raises(MalformedRecord):
        Record.from_json(data)


def test_lone_surrogate_rejected() -> None:
    with pytest.raises(MalformedRecord):
        Record.from_json(VECTOR_JSON.replace(b'"ttl"', b'"project":"\\ud800","ttl"'))


def test_error_names_the_field() -> None:
    with pytest.raises(MalformedRecord, match="ttl"):
        Record.from_json(_with(ttl=True))
    with pytest.raises(MalformedRecord, match="pin_salt"):
        Record.from_json(_with(pin_salt=base64.b64encode(bytes(31)).decode()))
    with pytest.raises(MalformedRecord, match="signature"):
        Record.from_json(_with(signature=base64.b64encode(bytes(63)).decode()))


def test_integer_bounds() -> None:
    assert Record.from_json(_with(ttl=0)).ttl == 0
    assert Record.from_json(_with(ttl=2**63 - 1)).ttl == 2**63 - 1


def test_whitespace_around_json_is_fine() -> None:
    # serde_json accepts it, so a reader must too.
    assert Record.from_json(b" \n" + VECTOR_JSON + b"\n") == vector_record()


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
