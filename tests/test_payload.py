"""The plaintext of a handoff payload (docs/wire.md §4, §9; vectors in tests/vectors/payload.json)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from vector_files import case, cases, data

from cclink.errors import CannotDecrypt, CclinkError, MalformedPayload
from cclink.wire import agecrypt
from cclink.wire.keys import Identity
from cclink.wire.payload import CarryInfo, Payload, check_session_id, open_payload, seal

UUID = case("payload", "written", "session, host and project")["session_id"]


def carry_of(vector: dict) -> CarryInfo:
    return CarryInfo(
        info_hash=bytes.fromhex(vector["info_hash_hex"]),
        size=vector["size"],
        sha256=bytes.fromhex(vector["sha256_hex"]),
        hints=tuple(vector["hints"]),
    )


# --- tests/vectors/payload.json ------------------------------------------------------------


@pytest.mark.parametrize("vector", cases("payload", "written"))
def test_written_vectors(vector: dict) -> None:
    payload = Payload(session_id=vector["session_id"], hostname=vector["hostname"], project=vector["project"])
    if vector["carry"] is not None:
        payload = payload.with_carry(carry_of(vector["carry"]))
    assert payload.to_plaintext() == data(vector, "plaintext")
    again = Payload.from_plaintext(data(vector, "plaintext"))
    assert again == payload
    assert again.carry == (None if vector["carry"] is None else carry_of(vector["carry"]))


@pytest.mark.parametrize("vector", cases("payload", "read"))
def test_read_vectors(vector: dict) -> None:
    payload = Payload.from_plaintext(data(vector, "plaintext"))
    assert payload == Payload(vector["session_id"], vector["hostname"], vector["project"], extra=vector["extra"])
    assert list(payload.extra) == list(vector["extra"])  # in order
    if vector.get("writes_back_the_same"):
        assert payload.to_plaintext() == data(vector, "plaintext")


@pytest.mark.parametrize("vector", cases("payload", "refused"))
def test_refused_vectors(vector: dict) -> None:
    with pytest.raises(MalformedPayload):
        Payload.from_plaintext(data(vector, "plaintext"))


@pytest.mark.parametrize("vector", cases("payload", "session_ids_accepted"))
def test_safe_session_ids_accepted(vector: dict) -> None:
    assert check_session_id(vector["session_id"]) == vector["session_id"]


@pytest.mark.parametrize("vector", cases("payload", "session_ids_refused"))
def test_unsafe_session_ids_rejected(vector: dict) -> None:
    with pytest.raises(MalformedPayload):
        check_session_id(vector["session_id"])
    with pytest.raises(MalformedPayload):
        Payload(session_id=vector["session_id"])


@pytest.mark.parametrize("vector", cases("payload", "projects_accepted"))
def test_absolute_or_unknown_projects_accepted(vector: dict) -> None:
    assert Payload(session_id=UUID, project=vector["project"]).project == vector["project"]


@pytest.mark.parametrize("vector", cases("payload", "projects_refused"))
def test_projects_that_name_no_absolute_path_rejected(vector: dict) -> None:
    with pytest.raises(MalformedPayload):
        Payload(session_id=UUID, project=vector["project"])


@pytest.mark.parametrize("vector", cases("payload", "carry_refused"))
def test_malformed_carry_details_are_a_payload_error(vector: dict) -> None:
    body = Payload.from_plaintext(json.dumps({"s": "abc", "c": vector["c"]}).encode())
    with pytest.raises(MalformedPayload):
        _ = body.carry


def test_round_trip() -> None:
    payload = Payload(session_id=UUID, hostname="laptop", project="/p")
    assert Payload.from_plaintext(payload.to_plaintext()) == payload


def test_extra_is_read_only() -> None:
    payload = Payload.from_plaintext(b'{"s":"c","z":1}')
    with pytest.raises(TypeError):
        payload.extra["z"] = 2  # type: ignore[index]


def test_seal_and_open() -> None:
    me = Identity(bytes([42]) * 32)
    payload = Payload(session_id=UUID, hostname="laptop", project="/p")
    blob = seal(payload, me.public_key.age_recipient())
    assert blob.startswith(b"age-encryption.org/v1\n")
    assert open_payload(blob, me.age_identity()) == payload


def test_sealed_to_several_keys_any_one_opens_it_alone() -> None:
    me, laptop, desk, outsider = (Identity(bytes([seed]) * 32) for seed in (42, 43, 44, 99))
    payload = Payload(session_id=UUID, hostname="laptop", project="/p")

    blob = seal(payload, [key.public_key.age_recipient() for key in (me, laptop, desk)])

    assert blob.count(b"\n-> X25519 ") == 3  # one age file, a stanza per key
    for key in (me, laptop, desk):
        assert open_payload(blob, key.age_identity()) == payload
    with pytest.raises(CannotDecrypt):
        open_payload(blob, outsider.age_identity())


@pytest.mark.skipif(shutil.which("age") is None, reason="the Debian `age` CLI is not installed (apt-get install age)")
def test_a_blob_for_several_keys_opens_with_the_first_keys_identity_in_the_age_cli(tmp_path: Path) -> None:
    """What the Rust cclink does with its own key (age's Decryptor with one identity), done by another age."""
    me, laptop = Identity(bytes([42]) * 32), Identity(bytes([43]) * 32)
    blob = seal(Payload(session_id=UUID), [me.public_key.age_recipient(), laptop.public_key.age_recipient()])
    identity_file = tmp_path / "identity.txt"
    identity_file.write_text(str(me.age_identity()) + "\n")
    identity_file.chmod(0o600)

    opened = subprocess.run(
        ["age", "-d", "-i", str(identity_file)], input=blob, capture_output=True, check=True, timeout=30
    )

    assert Payload.from_plaintext(opened.stdout) == Payload(session_id=UUID)


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


def test_a_payload_without_carry_details_has_none():
    assert Payload("abc").carry is None
