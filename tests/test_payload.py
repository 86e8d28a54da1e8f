from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cclink.errors import CannotDecrypt, CclinkError, MalformedPayload
from cclink.wire import agecrypt
from cclink.wire.keys import Identity
from cclink.wire.payload import CarryInfo, Payload, check_session_id, open_payload, seal

UUID = "3f2b9c1e-7a44-4d1b-9e0f-0123456789ab"


def test_plaintext_is_compact_json_in_rust_key_order() -> None:
    payload = Payload(session_id=UUID, hostname="laptop", project="/home/me/app")
    assert payload.to_plaintext() == (b'{"h":"laptop","p":"/home/me/app","s":"' + UUID.encode() + b'"}')


def test_plaintext_keeps_non_ascii_unescaped() -> None:
    payload = Payload(session_id="s", hostname="h\u00e9te", project="/tmp/\u65e5\u672c")
    assert payload.to_plaintext() == '{"h":"h\u00e9te","p":"/tmp/\u65e5\u672c","s":"s"}'.encode()


def test_round_trip() -> None:
    payload = Payload(session_id=UUID, hostname="laptop", project="/p")
    assert Payload.from_plaintext(payload.to_plaintext()) == payload


def test_unknown_keys_are_kept_in_order() -> None:
    data = b'{"h":"a","p":"/b","s":"c","z":1,"new":{"x":[1,2]}}'
    payload = Payload.from_plaintext(data)
    assert payload == Payload(session_id="c", hostname="a", project="/b", extra={"z": 1, "new": {"x": [1, 2]}})
    assert list(payload.extra) == ["z", "new"]
    assert payload.to_plaintext() == data


def test_extra_is_read_only() -> None:
    payload = Payload.from_plaintext(b'{"s":"c","z":1}')
    with pytest.raises(TypeError):
        payload.extra["z"] = 2  # type: ignore[index]


def test_hostname_and_project_are_optional() -> None:
    assert Payload.from_plaintext(b'{"s":"abc"}') == Payload(session_id="abc")


def test_key_order_on_input_does_not_matter() -> None:
    assert Payload.from_plaintext(b'{"s":"abc","p":"/x","h":"y"}') == Payload("abc", "y", "/x")


@pytest.mark.parametrize("data", [UUID.encode(), UUID.encode() + b"\n", b"  " + UUID.encode() + b" \r\n"])
def test_legacy_bare_session_id(data: bytes) -> None:
    assert Payload.from_plaintext(data) == Payload(session_id=UUID)


def test_legacy_id_that_happens_to_be_a_json_number() -> None:
    # The Rust reader falls back to the bare id for any JSON that is not its object.
    assert Payload.from_plaintext(b"12345") == Payload(session_id="12345")


@pytest.mark.parametrize(
    "data",
    [
        b"\xff\xfe",  # not UTF-8
        b"",
        b"   ",
        b"[1,2]",
        b'"abc"',
        b"{}",
        b'{"h":"a","p":"b"}',
        b'{"s":1}',
        b'{"s":null}',
        b'{"s":"a","h":1}',
        b'{"s":"a","p":null}',
        b'{"s":"a","h":"\\ud800"}',  # lone surrogate
        b'{"s":"a","s":"b"}',
        b'{"s":"../x"}',
        b'{"s":"a/b"}',
        b"../../etc/passwd",
        b"a b",
        b'{"s":"a",',  # truncated JSON is no bare id either
    ],
)
def test_malformed_payloads(data: bytes) -> None:
    with pytest.raises(MalformedPayload):
        Payload.from_plaintext(data)


@pytest.mark.parametrize(
    "session_id",
    ["../x", "a/b", "a\\b", ".", "..", ".hidden", "", "x" * 129, "a\x00", "é", "a b", "a\n", "-x", "-c", "--continue"],
)
def test_unsafe_session_ids_rejected(session_id: str) -> None:
    with pytest.raises(MalformedPayload):
        check_session_id(session_id)
    with pytest.raises(MalformedPayload):
        Payload(session_id=session_id)


@pytest.mark.parametrize("session_id", [UUID, "x" * 128, "a", "a.b", "a..b", "_x", "x-", "A-Z_0.9"])
def test_safe_session_ids_accepted(session_id: str) -> None:
    assert check_session_id(session_id) == session_id


@pytest.mark.parametrize("project", [".", "app", "~/app", "C:\\work", "/a\x00b"])
def test_projects_that_name_no_absolute_path_rejected(project: str) -> None:
    with pytest.raises(MalformedPayload):
        Payload(session_id=UUID, project=project)


@pytest.mark.parametrize("project", ["", "/", "/home/me/app", "/tmp/a b/é"])
def test_absolute_or_unknown_projects_accepted(project: str) -> None:
    assert Payload(session_id=UUID, project=project).project == project


def test_seal_and_open() -> None:
    me = Identity(bytes([42]) * 32)
    payload = Payload(session_id=UUID, hostname="laptop", project="/p")
    blob = seal(payload, me.public_key.age_recipient())
    assert blob.startswith(b"age-encryption.org/v1\n")
    assert open_payload(blob, me.age_identity()) == payload


def test_open_with_the_wrong_key() -> None:
    me, other = Identity(bytes([42]) * 32), Identity(bytes([99]) * 32)
    blob = seal(Payload(session_id=UUID), me.public_key.age_recipient())
    with pytest.raises(CannotDecrypt):
        open_payload(blob, other.age_identity())


def test_open_legacy_blob() -> None:
    me = Identity(bytes([42]) * 32)
    blob = agecrypt.encrypt(UUID.encode(), me.public_key.age_recipient())
    assert open_payload(blob, me.age_identity()) == Payload(session_id=UUID)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_cclink_errors(data: bytes) -> None:
    try:
        Payload.from_plaintext(data)
    except CclinkError:
        pass


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["h", "p", "s", "x"]) | st.text(max_size=3), _json, max_size=5))
def test_arbitrary_json_objects_raise_only_cclink_errors(document: dict[str, object]) -> None:
    import json

    try:
        payload = Payload.from_plaintext(json.dumps(document).encode())
    except CclinkError:
        return
    assert Payload.from_plaintext(payload.to_plaintext()) == payload


# --- the carry details of a --carry handoff ---------------------------------------------------


def a_carry(**changes) -> CarryInfo:
    fields = {"info_hash": bytes(range(20)), "size": 123_456, "sha256": bytes(range(32)), "hints": ("127.0.0.2:4567",)}
    fields.update(changes)
    return CarryInfo(**fields)


def test_carry_details_round_trip_through_the_plaintext():
    body = Payload("abc", "laptop", "/home/a/app").with_carry(a_carry())
    again = Payload.from_plaintext(body.to_plaintext())
    assert again.carry == a_carry()
    assert again.session_id == "abc" and again.project == "/home/a/app"


def test_carry_details_are_compact_and_after_the_rust_keys():
    text = Payload("abc", "h", "/p").with_carry(a_carry(hints=())).to_plaintext()
    assert text == (
        b'{"h":"h","p":"/p","s":"abc","c":{"i":"AAECAwQFBgcICQoLDA0ODxAREhM","n":123456,'
        b'"d":"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"}}'
    )


def test_a_payload_without_carry_details_has_none():
    assert Payload("abc").carry is None


@pytest.mark.parametrize(
    "value",
    [
        "not an object",
        {"i": "AAECAwQFBgcICQoLDA0ODxAREhM", "n": 1},
        {"i": "short", "n": 1, "d": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"},
        {"i": "AAECAwQFBgcICQoLDA0ODxAREhM", "n": 0, "d": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"},
        {"i": "AAECAwQFBgcICQoLDA0ODxAREhM", "n": True, "d": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"},
        {"i": "AAECAwQFBgcICQoLDA0ODxAREhM", "n": "1", "d": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"},
        {"i": "AAECAwQFBgcICQoLDA0ODxAREhM", "n": 1, "d": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8", "a": "x"},
        {"i": "AAECAwQFBgcICQoLDA0ODxAREhM", "n": 1, "d": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8", "a": [1]},
        {"i": "AA+/", "n": 1, "d": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"},
    ],
)
def test_malformed_carry_details_are_a_payload_error(value):
    body = Payload("abc", extra={"c": value})
    with pytest.raises(MalformedPayload):
        _ = body.carry


# --- the acknowledgement costs the record nothing --------------------------------------------------


def test_carry_details_hold_only_the_torrent_its_size_its_hash_and_hints():
    text = Payload("abc", "h", "/p").with_carry(a_carry(hints=("127.0.0.2:4567",))).to_plaintext()
    assert text == (
        b'{"h":"h","p":"/p","s":"abc","c":{"i":"AAECAwQFBgcICQoLDA0ODxAREhM","n":123456,'
        b'"d":"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8","a":["127.0.0.2:4567"]}}'
    )
