from __future__ import annotations

import dataclasses
import struct

import dns.message
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cclink.errors import BadSignature, CclinkError, MalformedPacket, RecordTooLarge
from cclink.wire.keys import Identity
from cclink.wire.packet import MAX_MESSAGE_SIZE, SignedPacket, record_from_message, record_message, revocation_message

SEED_42 = Identity(bytes([42]) * 32)
SEED_99 = Identity(bytes([99]) * 32)
Z32_42 = "df9sse9bp1nuftim3yhxiuk6w6r5hddsskjygpydux7esxjstioo"

VECTOR_JSON = (
    b'{"blob":"dGVzdGJsb2I=","created_at":1700000000,'
    b'"pubkey":"df9sse9bp1nuftim3yhxiuk6w6r5hddsskjygpydux7esxjstioo",'
    b'"signature":"rFZyqzmJ2jkDsRGlX9fHq8USCgaGCFqsclifIHg7nM8Q83aJqC+fhdhm0yNq7BDkEzATTbsiwevygTLjOgGUDA==",'
    b'"ttl":3600}'
)
VECTOR_MESSAGE = (
    bytes.fromhex(
        "000080000000000100000000075f63636c696e6b34646639737365396270316e756674696d3379687869756b"
        "367736723568646473736b6a79677079647578376573786a7374696f6f00001000010001518000e2e1"
    )
    + VECTOR_JSON
)
VECTOR_SEQ = 1700000000000000
VECTOR_RELAY_HEAD = bytes.fromhex(
    "a33aae2ae8f4b0eee6455ee4348f697206df9329c138965c2816b55bb88be0b8"
    "5965a517c9bd3d8b2b02f4f9adb0d51db664c80b54693346e254b7ed22f3d803"
    "00060a24181e4000"
)
HEADER = bytes.fromhex("000080000000")  # id 0, flags 0x8000, no questions


# --- vectors ----------------------------------------------------------------------


def test_vector_message() -> None:
    assert len(VECTOR_JSON) == 225
    assert record_message(SEED_42.public_key, VECTOR_JSON) == VECTOR_MESSAGE


def test_vector_message_yields_the_record() -> None:
    assert record_from_message(VECTOR_MESSAGE, SEED_42.public_key) == VECTOR_JSON


def test_vector_relay_payload() -> None:
    packet = SignedPacket.create(SEED_42, VECTOR_SEQ, VECTOR_MESSAGE)
    assert packet.relay_payload() == VECTOR_RELAY_HEAD + VECTOR_MESSAGE
    assert packet.to_bytes() == SEED_42.public_key.raw + VECTOR_RELAY_HEAD + VECTOR_MESSAGE
    packet.verify()


def test_vector_signable_is_bep44() -> None:
    packet = SignedPacket.create(SEED_42, VECTOR_SEQ, VECTOR_MESSAGE)
    assert packet.signable() == b"3:seqi1700000000000000e1:v%d:" % len(VECTOR_MESSAGE) + VECTOR_MESSAGE


def test_vector_relay_payload_parses_and_verifies() -> None:
    packet = SignedPacket.from_relay_payload(SEED_42.public_key, VECTOR_RELAY_HEAD + VECTOR_MESSAGE)
    assert packet.seq == VECTOR_SEQ
    assert packet.message == VECTOR_MESSAGE
    packet.verify()


# --- character-strings ------------------------------------------------------------


def _strings(message: bytes) -> list[bytes]:
    parsed = dns.message.from_wire(message)
    (rrset,) = parsed.answer
    (rdata,) = rrset
    return list(rdata.strings)


@pytest.mark.parametrize(
    "size, lengths",
    [
        (1, [1]),
        (253, [253]),
        (254, [254]),
        (255, [254, 1]),
        (508, [254, 254]),
        (509, [254, 254, 1]),
        (908, [254, 254, 254, 146]),
    ],
)
def test_record_is_cut_into_254_byte_strings(size: int, lengths: list[int]) -> None:
    record_json = bytes(range(256)) * 4
    record_json = record_json[:size]
    message = record_message(SEED_42.public_key, record_json)
    assert [len(s) for s in _strings(message)] == lengths
    assert record_from_message(message, SEED_42.public_key) == record_json
    # The rdata on the wire is exactly length-prefixed chunks, in order.
    assert message.endswith(b"".join(bytes([len(c)]) + c for c in _strings(message)))


def test_largest_record_fits_exactly() -> None:
    # Nodes hold v to 1000 bytes as bencoded: "996:" and the message.
    assert len(record_message(SEED_42.public_key, b"x" * 908)) == MAX_MESSAGE_SIZE - len(b"996:")


@pytest.mark.parametrize("size", [909, 912, 2000])
def test_oversize_record_is_a_clear_error(size: int) -> None:
    with pytest.raises(RecordTooLarge, match=f"{size} bytes.*1000"):
        record_message(SEED_42.public_key, b"x" * size)


# --- revocation -------------------------------------------------------------------


def test_revocation_message() -> None:
    assert revocation_message() == bytes.fromhex("000080000000000000000000")
    assert record_from_message(revocation_message(), SEED_42.public_key) is None


# --- reading other writers' messages ---------------------------------------------------


def _rr(name: bytes, rtype: int, rdata: bytes, rclass: int = 1) -> bytes:
    return name + struct.pack(">HHIH", rtype, rclass, 86400, len(rdata)) + rdata


def _label_name(*labels: bytes) -> bytes:
    return b"".join(bytes([len(label)]) + label for label in labels) + b"\x00"


def test_compressed_name_and_unrelated_answers() -> None:
    key_name_offset = 12  # the first answer's name starts right after the header
    answers = [
        _rr(_label_name(Z32_42.upper().encode()), 1, bytes([1, 2, 3, 4])),  # A at the key itself
        _rr(b"\x07_cclink" + struct.pack(">H", 0xC000 | key_name_offset), 1, bytes(4)),  # _cclink but A
        _rr(_label_name(b"_cclink", SEED_99.public_key.z32.encode()), 16, b"\x05other"),  # someone else
        _rr(b"\x07_CCLink" + struct.pack(">H", 0xC000 | key_name_offset), 16, b"\x03abc\x02de"),
        _rr(_label_name(b"_cclink", Z32_42.encode()), 16, b"\x06second"),  # not the first: ignored
    ]
    message = HEADER + struct.pack(">HHH", len(answers), 0, 0) + b"".join(answers)
    assert record_from_message(message, SEED_42.public_key) == b"abcde"
    assert record_from_message(message, SEED_99.public_key) == b"other"


def test_message_with_a_question_is_read() -> None:
    question = _label_name(b"_cclink", Z32_42.encode()) + struct.pack(">HH", 16, 1)
    answer = _rr(b"\xc0\x0c", 16, b"\x02ok")
    message = bytes.fromhex("000084000001000100000000") + question + answer
    assert record_from_message(message, SEED_42.public_key) == b"ok"


def test_other_class_is_ignored() -> None:
    message = (
        HEADER + struct.pack(">HHH", 1, 0, 0) + _rr(_label_name(b"_cclink", Z32_42.encode()), 16, b"\x02ok", rclass=3)
    )
    assert record_from_message(message, SEED_42.public_key) is None


def test_record_for_another_key_is_none() -> None:
    assert record_from_message(VECTOR_MESSAGE, SEED_99.public_key) is None


@pytest.mark.parametrize(
    "message",
    [
        b"",
        b"\x00" * 11,
        VECTOR_MESSAGE[:-1],  # truncated
        VECTOR_MESSAGE + b"\x00",  # trailing garbage
        VECTOR_MESSAGE[:12] + b"\xc0\x0c" + VECTOR_MESSAGE[74:],  # pointer to itself
        b"not a dns message at all, not at all",
        revocation_message() + b"\x00" * 990,  # over the size limit
    ],
)
def test_malformed_messages(message: bytes) -> None:
    with pytest.raises(MalformedPacket):
        record_from_message(message, SEED_42.public_key)


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


@pytest.mark.parametrize(
    "change",
    [{"seq": VECTOR_SEQ + 1}, {"message": revocation_message()}, {"public_key": SEED_99.public_key}],
)
def test_tampered_packet_fails(change: dict[str, object]) -> None:
    packet = SignedPacket.create(SEED_42, VECTOR_SEQ, VECTOR_MESSAGE)
    with pytest.raises(BadSignature):
        dataclasses.replace(packet, **change).verify()


def test_flipped_signature_bit_fails() -> None:
    data = bytearray(SignedPacket.create(SEED_42, 1, VECTOR_MESSAGE).to_bytes())
    data[40] ^= 1
    with pytest.raises(BadSignature):
        SignedPacket.from_bytes(bytes(data)).verify()


@pytest.mark.parametrize(
    "data",
    [
        b"",
        bytes(31),
        SEED_42.public_key.raw + bytes(71),  # one byte short of signature + seq
        SEED_42.public_key.raw + bytes(72 + MAX_MESSAGE_SIZE + 1),
        bytes(32) + bytes(72),  # the all-zero point is not a usable key
        b"\x01" + bytes(31) + bytes(72),  # the identity point neither
    ],
)
def test_malformed_packet_bytes(data: bytes) -> None:
    with pytest.raises(MalformedPacket):
        SignedPacket.from_bytes(data)


def test_minimal_packet_parses() -> None:
    packet = SignedPacket.from_bytes(SEED_42.public_key.raw + bytes(72))
    assert packet.seq == 0 and packet.message == b""


@pytest.mark.parametrize("data", [b"", bytes(71), bytes(72 + MAX_MESSAGE_SIZE + 1)])
def test_malformed_relay_payloads(data: bytes) -> None:
    with pytest.raises(MalformedPacket):
        SignedPacket.from_relay_payload(SEED_42.public_key, data)


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
