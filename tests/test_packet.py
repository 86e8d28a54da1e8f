"""DNS messages and pkarr SignedPackets (docs/wire.md §6, §7; vectors in tests/vectors/packet.json)."""

from __future__ import annotations

import dns.message
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from vector_files import case, cases, data, load

from cclink.errors import BadSignature, CclinkError, MalformedPacket, RecordTooLarge
from cclink.wire.keys import Identity, PublicKey
from cclink.wire.packet import MAX_MESSAGE_SIZE, SignedPacket, record_from_message, record_message, revocation_message

PACKETS = load("packet")
SEED_42 = Identity(bytes.fromhex(case("keys", "identities", "seed 42")["seed_hex"]))

VECTOR = case("packet", "signed_packets", "record vector, seq 1700000000000000 (docs/wire.md §12)")
VECTOR_MESSAGE = bytes.fromhex(VECTOR["message_hex"])


# --- tests/vectors/packet.json ----------------------------------------------------------


def test_vector_record_is_record_json() -> None:
    (vector,) = [each for each in PACKETS["messages"] if each["name"] == "record vector of record.json"]
    assert data(vector, "record") == data(case("record", "signed", "seed 42 vector (docs/wire.md §12)"), "record_json")
    assert bytes.fromhex(vector["message_hex"]) == VECTOR_MESSAGE


@pytest.mark.parametrize("vector", cases("packet", "messages"))
def test_message_vectors(vector: dict) -> None:
    public_key = PublicKey.parse(vector["pubkey"])
    record_json, message = data(vector, "record"), bytes.fromhex(vector["message_hex"])
    assert record_message(public_key, record_json) == message
    assert record_from_message(message, public_key) == record_json
    assert [len(s) for s in _strings(message)] == vector["string_lengths"]
    # The rdata on the wire is exactly length-prefixed chunks, in order.
    assert message.endswith(b"".join(bytes([len(c)]) + c for c in _strings(message)))


def test_largest_record_fits_exactly() -> None:
    # Nodes hold v to 1000 bytes as bencoded: "996:" and the message.
    assert PACKETS["max_message_size"] == MAX_MESSAGE_SIZE == 1000
    largest = max(PACKETS["messages"], key=lambda vector: len(vector["message_hex"]))
    assert len(data(largest, "record")) == 908
    assert len(bytes.fromhex(largest["message_hex"])) == MAX_MESSAGE_SIZE - len(b"996:")


@pytest.mark.parametrize("vector", cases("packet", "too_large"))
def test_oversize_record_is_a_clear_error(vector: dict) -> None:
    size = len(data(vector, "record"))
    with pytest.raises(RecordTooLarge, match=f"{size} bytes.*1000"):
        record_message(SEED_42.public_key, data(vector, "record"))


def test_revocation_message() -> None:
    assert revocation_message().hex() == PACKETS["revocation_message_hex"]
    assert record_from_message(revocation_message(), SEED_42.public_key) is None


@pytest.mark.parametrize("vector", cases("packet", "read"))
def test_read_vectors(vector: dict) -> None:
    record = record_from_message(bytes.fromhex(vector["message_hex"]), PublicKey.parse(vector["pubkey"]))
    assert record == (None if vector["record_text"] is None else vector["record_text"].encode())


@pytest.mark.parametrize("vector", cases("packet", "read_refused"))
def test_read_refused_vectors(vector: dict) -> None:
    with pytest.raises(MalformedPacket):
        record_from_message(bytes.fromhex(vector["message_hex"]), PublicKey.parse(vector["pubkey"]))


@pytest.mark.parametrize("vector", cases("packet", "signed_packets"))
def test_signed_packet_vectors(vector: dict) -> None:
    identity = Identity(bytes.fromhex(vector["seed_hex"]))
    message = bytes.fromhex(vector["message_hex"])
    packet = SignedPacket.create(identity, vector["seq"], message)
    assert packet.signable().hex() == vector["signable_hex"]
    assert packet.signable() == b"3:seqi%de1:v%d:" % (vector["seq"], len(message)) + message  # BEP 44
    assert packet.signature.hex() == vector["signature_hex"]
    assert packet.relay_payload().hex() == vector["relay_payload_hex"]
    assert packet.to_bytes().hex() == vector["packet_hex"]
    packet.verify()
    for parsed in (
        SignedPacket.from_bytes(bytes.fromhex(vector["packet_hex"])),
        SignedPacket.from_relay_payload(identity.public_key, bytes.fromhex(vector["relay_payload_hex"])),
    ):
        assert parsed == packet and parsed.seq == vector["seq"] and parsed.message == message
        parsed.verify()


@pytest.mark.parametrize("vector", cases("packet", "minimal_packets"))
def test_minimal_packet_parses(vector: dict) -> None:
    packet = SignedPacket.from_bytes(bytes.fromhex(vector["packet_hex"]))
    assert packet.seq == vector["seq"] and packet.message.hex() == vector["message_hex"]
    with pytest.raises(BadSignature):
        packet.verify()


@pytest.mark.parametrize("vector", cases("packet", "packets_refused"))
def test_malformed_packet_bytes(vector: dict) -> None:
    with pytest.raises(MalformedPacket):
        SignedPacket.from_bytes(bytes.fromhex(vector["packet_hex"]))


@pytest.mark.parametrize("vector", cases("packet", "relay_payloads_refused"))
def test_malformed_relay_payloads(vector: dict) -> None:
    with pytest.raises(MalformedPacket):
        SignedPacket.from_relay_payload(PublicKey.parse(vector["pubkey"]), bytes.fromhex(vector["relay_payload_hex"]))


@pytest.mark.parametrize("vector", cases("packet", "verify_refused"))
def test_verify_refused_vectors(vector: dict) -> None:
    packet = SignedPacket.from_bytes(bytes.fromhex(vector["packet_hex"]))
    with pytest.raises(BadSignature):
        packet.verify()


# --- character-strings ------------------------------------------------------------


def _strings(message: bytes) -> list[bytes]:
    parsed = dns.message.from_wire(message)
    (rrset,) = parsed.answer
    (rdata,) = rrset
    return list(rdata.strings)


# --- SignedPacket ---------------------------------------------------------------------


def test_round_trip_bytes() -> None:
    packet = SignedPacket.create(SEED_42, 7, VECTOR_MESSAGE)
    assert SignedPacket.from_bytes(packet.to_bytes()) == packet
    assert SignedPacket.from_relay_payload(SEED_42.public_key, packet.relay_payload()) == packet


def test_revocation_packet_round_trip() -> None:
    packet = SignedPacket.create(SEED_42, 2**64 - 1, revocation_message())
    parsed = SignedPacket.from_bytes(packet.to_bytes())
    parsed.verify()
    assert parsed.seq == 2**64 - 1
    assert record_from_message(parsed.message, SEED_42.public_key) is None


# --- properties -------------------------------------------------------------------------


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=1100))
def test_arbitrary_messages_raise_only_cclink_errors(data: bytes) -> None:
    try:
        record_from_message(data, SEED_42.public_key)
    except CclinkError:
        pass


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(VECTOR_MESSAGE) - 1), st.integers(0, 255)), min_size=1, max_size=4))
def test_mutated_messages_raise_only_cclink_errors(flips: list[tuple[int, int]]) -> None:
    data = bytearray(VECTOR_MESSAGE)
    for index, value in flips:
        data[index] = value
    try:
        record_from_message(bytes(data), SEED_42.public_key)
    except CclinkError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=1200) | st.binary(min_size=104, max_size=300).map(lambda b: SEED_42.public_key.raw + b))
def test_arbitrary_packet_bytes_raise_only_cclink_errors(data: bytes) -> None:
    try:
        packet = SignedPacket.from_bytes(data)
        packet.verify()
    except CclinkError:
        pass
