"""Tampering with a published handoff: every flipped byte and bit is caught at pickup.

Pickup checks a DHT item as record_store._verified_record does (`pickup` below uses
the same public calls: SignedPacket.verify, record_from_message, Record.from_json,
Record.verify). What each region of the published bytes is protected by:

- BEP 44 item / relay payload (signature | seq | DNS message): the packet
  signature covers seq and every byte of the message, and libsodium refuses
  non-canonical signatures, so no flip anywhere is harmless: each one is
  refused with BadSignature before the record is even looked at.
- SignedPacket bytes' leading public key: a flipped key is not a curve point
  (MalformedPacket) or is another key the signature does not verify under.
- The record JSON, even inside a packet the publisher's key signed again: the
  record's own signature covers every field but `signature`, `signature` is
  strict base64 of a non-malleable signature, `pubkey` must be the canonical
  spelling, and compact JSON has no insignificant byte, so again no flip is
  harmless: each is refused (MalformedRecord or BadSignature).
- The DNS wrapper around the record, signed again by the publisher: the only
  harmless regions, as docs/wire.md §6 says readers ignore them: the message
  id and flags, the answer's TTL, and the case of the letters in the name. A flip
  there yields the identical record; anywhere else it is refused.
- The age blob: age's header MAC and payload AEAD refuse any change with
  CannotDecrypt.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import pytest

from cclink.errors import BadSignature, CannotDecrypt, CclinkError, MalformedPacket, MalformedRecord, NotFound
from cclink.net import krpc, record_store
from cclink.wire import payload
from cclink.wire.keys import SIGNATURE_SIZE, Identity, PublicKey
from cclink.wire.packet import SEQ_SIZE, SignedPacket, record_from_message, record_message, revocation_message
from cclink.wire.payload import Payload
from cclink.wire.record import Record, new_record

pytestmark = pytest.mark.timeout(120)

PUBLISHER = Identity(bytes([42]) * 32)
SHARED_WITH = Identity(bytes([99]) * 32)
PK = PUBLISHER.public_key
SEQ = 1_700_000_000_000_000
BITS = [1 << bit for bit in range(8)]
# How often a byte of a big region (base64, z-base-32) gets all eight bits flipped.
BIG_REGION_STRIDE = 8

Outcome = Record | type[CclinkError]


@dataclass(frozen=True)
class Published:
    """A valid handoff as it sits on the DHT, in every form pickup meets it."""

    record: Record
    record_json: bytes
    message: bytes
    packet: SignedPacket
    payload: Payload
    blob: bytes


@pytest.fixture(scope="module")
def published() -> Published:
    """A record using every field, so every kind of field gets tampered with."""
    body = Payload("0a1b2c3d-4e5f-6789-abcd-ef0123456789", "laptop", "/home/me/work")
    blob = payload.seal(body, PK.age_recipient())
    signed = new_record(
        PUBLISHER,
        blob,
        ttl=3600,
        now=1_700_000_000,
        burn=True,
        pin_salt=bytes(range(32)),
        recipient=SHARED_WITH.public_key,
    )
    # The Rust tool may fill these (Python writes them empty); escapes and non-ASCII included.
    signed = Record(**{**signed.__dict__, "hostname": 'lapt\u00f6p "q"\\', "project": "/home/me/w\u00f6rk"}).sign(
        PUBLISHER
    )
    record_json = signed.to_json()
    message = record_message(PK, record_json)
    return Published(signed, record_json, message, SignedPacket.create(PUBLISHER, SEQ, message), body, blob)


# --- the pickup path ---------------------------------------------------------------------


def pickup(publisher: PublicKey, seq: int, signature: bytes, value: bytes) -> Record:
    """The checks record_store._verified_record makes on a DHT item, through the same public calls."""
    signed = SignedPacket(public_key=publisher, signature=signature, seq=seq, message=value)
    signed.verify()
    record_json = record_from_message(value, publisher)
    if record_json is None:
        raise NotFound("the packet holds no handoff record")
    record = Record.from_json(record_json)
    record.verify(publisher)
    return record


def rendezvous_pickup(publisher: PublicKey, seq: int, signature: bytes, value: bytes) -> Record:
    """The record record_store._verified_record itself makes of a DHT item."""
    return record_store._verified_record(publisher, krpc.Item(seq=seq, signature=signature, value=value)).record


def outcome(call: Callable[..., Record], *args: object) -> Outcome:
    """The record call(*args) returns, or the class of the CclinkError it raises."""
    try:
        return call(*args)
    except CclinkError as error:
        return type(error)


def pickup_relay_payload(publisher: PublicKey, data: bytes) -> Record:
    """Pickup of bytes served in the relay form (signature | seq | message)."""
    signed = SignedPacket.from_relay_payload(publisher, data)
    return pickup(publisher, signed.seq, signed.signature, signed.message)


def flipped(data: bytes, index: int, mask: int) -> bytes:
    changed = bytearray(data)
    changed[index] ^= mask
    return bytes(changed)


def every_flip(data: bytes, big: Sequence[range] = ()) -> Iterator[tuple[int, int, bytes]]:
    """(index, mask, data with that flip) for every byte inverted and its lowest bit flipped, and
    every bit of every byte outside the `big` regions and of every BIG_REGION_STRIDE-th byte inside."""
    for index in range(len(data)):
        region = next((span for span in big if index in span), None)
        if region is None or (index - region.start) % BIG_REGION_STRIDE == 0:
            masks = [0xFF, *BITS]
        else:
            masks = [0xFF, 0x01]
        for mask in masks:
            yield index, mask, flipped(data, index, mask)


def test_untouched_item_is_picked_up(published: Published) -> None:
    """The baseline the rest relies on: the valid item passes pickup, in both forms."""
    item = published.packet
    assert pickup(PK, item.seq, item.signature, item.message) == published.record
    assert pickup_relay_payload(PK, item.relay_payload()) == published.record
    assert payload.open_payload(published.record.blob, PUBLISHER.age_identity()) == published.payload


def test_pickup_mirrors_rendezvous(published: Published) -> None:
    """`pickup` decides as record_store._verified_record does, on the item and on tampered copies."""
    item = published.packet
    cases = [(item.seq, item.signature, item.message)]
    cases += [(item.seq ^ 1, item.signature, item.message)]
    cases += [(item.seq, flipped(item.signature, 5, 1), item.message)]
    cases += [
        (item.seq, item.signature, flipped(item.message, index, 0x20)) for index in range(0, len(item.message), 37)
    ]
    # Packets whose outer signature is valid, so the later checks decide: a revocation,
    # a record signed by another key, a damaged record.
    json_index = item.message.index(published.record_json[:32]) + 40
    for message in (
        revocation_message(),
        record_message(PK, Record(**{**published.record.__dict__, "ttl": 1}).sign(SHARED_WITH).to_json()),
        flipped(item.message, json_index, 0x01),
        flipped(item.message, json_index, 0x80),
    ):
        resigned = SignedPacket.create(PUBLISHER, SEQ, message)
        cases.append((resigned.seq, resigned.signature, resigned.message))
    seen = set()
    for seq, signature, value in cases:
        ours = outcome(pickup, PK, seq, signature, value)
        theirs = outcome(rendezvous_pickup, PK, seq, signature, value)
        assert ours == theirs
        seen.add(ours if isinstance(ours, type) else Record)
    assert seen == {Record, BadSignature, NotFound, MalformedRecord}


# --- the signed packet as it travels ---------------------------------------------------------


def test_every_flip_of_the_relay_payload_is_refused(published: Published) -> None:
    """signature | seq | DNS message: the packet signature catches every flipped bit."""
    data = published.packet.relay_payload()
    assert len(data) == SIGNATURE_SIZE + SEQ_SIZE + len(published.message)
    accepted = [
        (index, mask)
        for index, mask, tampered in every_flip(data)
        if outcome(pickup_relay_payload, PK, tampered) is not BadSignature
    ]
    assert accepted == []


# The value (the DNS message) is the bulk of the relay payload, flipped bit by bit above.
@pytest.mark.parametrize("region", ["seq", "signature"])
def test_every_flip_of_the_bep44_item_is_refused(published: Published, region: str) -> None:
    """The (seq, signature, value) triple a DHT node returns, one field at a time."""
    item = published.packet
    fields = {"seq": item.seq.to_bytes(SEQ_SIZE, "big"), "signature": item.signature, "value": item.message}
    for index, mask, tampered in every_flip(fields[region]):
        triple = {**fields, region: tampered}
        seq = int.from_bytes(triple["seq"], "big")
        result = outcome(pickup, PK, seq, triple["signature"], triple["value"])
        assert result is BadSignature, (region, index, mask)


@pytest.mark.parametrize("seq", [0, SEQ - 1, SEQ + 1, 2**63, 2**64 - 1])
def test_other_seq_numbers_are_refused(published: Published, seq: int) -> None:
    item = published.packet
    assert outcome(pickup, PK, seq, item.signature, item.message) is BadSignature


def test_every_cut_and_extension_of_the_relay_payload_is_refused(published: Published) -> None:
    data = published.packet.relay_payload()
    for length in range(len(data)):
        result = outcome(pickup_relay_payload, PK, data[:length])
        # Too short for a signature and seq, or a signature over other bytes.
        assert result in (MalformedPacket, BadSignature), length
    for extra in (b"\x00", b"\xc0\x0c", published.message[-20:]):
        assert outcome(pickup_relay_payload, PK, data + extra) is BadSignature


def test_every_flip_of_the_packet_public_key_is_refused(published: Published) -> None:
    """The pubkey(32) | relay payload form: another key, or no key at all."""
    data = published.packet.to_bytes()

    def parse_and_check(tampered: bytes) -> Record:
        signed = SignedPacket.from_bytes(tampered)
        return pickup(signed.public_key, signed.seq, signed.signature, signed.message)

    for index in range(32):
        for mask in [0xFF, *BITS]:
            tampered = flipped(data, index, mask)
            assert outcome(parse_and_check, tampered) in (MalformedPacket, BadSignature), (index, mask)


def test_a_packet_signed_by_another_key_is_refused(published: Published) -> None:
    """A valid packet, but by someone else, served under our key."""
    forged = SignedPacket.create(SHARED_WITH, SEQ, published.message)
    assert outcome(pickup, PK, forged.seq, forged.signature, forged.message) is BadSignature


# --- inside a packet that verifies ---------------------------------------------------------


def resigned_pickup(message: bytes) -> Outcome:
    """Pickup of message inside a packet with a valid outer signature by the publisher."""
    signed = SignedPacket.create(PUBLISHER, SEQ, message)
    return outcome(pickup, PK, signed.seq, signed.signature, signed.message)


def value_span(record_json: bytes, key: bytes) -> range:
    """Where the string value of key sits in record_json."""
    start = record_json.index(b'"' + key + b'":"') + len(key) + 4
    return range(start, record_json.index(b'"', start))


def test_every_flip_of_the_record_json_is_refused_by_the_inner_signature(published: Published) -> None:
    """Record JSON flipped, then carried in a correctly signed packet: the record's signature refuses it."""
    record_json = published.record_json
    # The base64 and z-base-32 values: long runs of alike characters, so sampled.
    big = [value_span(record_json, key) for key in (b"blob", b"pin_salt", b"pubkey", b"recipient", b"signature")]
    assert sum(map(len, big)) > 500 and all(big)
    outcomes: dict[tuple[int, int], Outcome] = {}
    for index, mask, tampered in every_flip(record_json, big):
        outcomes[index, mask] = resigned_pickup(record_message(PK, tampered))
    accepted = {where: result for where, result in outcomes.items() if isinstance(result, Record)}
    # No accepted flip at all (see the module docstring); were one ever accepted, it
    # would have to be harmless, i.e. yield the very record that was signed.
    assert all(result == published.record for result in accepted.values())
    assert accepted == {}
    assert set(outcomes.values()) <= {MalformedRecord, BadSignature}
    # Both layers of the inner check do work here: parsing and the signature.
    assert {MalformedRecord, BadSignature} <= set(outcomes.values())


def test_semantic_changes_to_the_record_are_refused(published: Published) -> None:
    """Well-formed records that differ in one field, carried in a correctly signed packet."""
    original = published.record
    other_blob = payload.seal(Payload("ffffffff-0000"), PK.age_recipient())
    changes: dict[str, object] = {
        "blob": other_blob,
        "burn": False,
        "created_at": original.created_at + 1,
        "ttl": original.ttl * 10,
        "hostname": "",
        "project": "/etc",
        "pin_salt": None,
        "recipient": None,
        "pubkey": SHARED_WITH.public_key.z32,
    }
    for field, value in changes.items():
        changed = Record(**{**original.__dict__, field: value})
        result = resigned_pickup(record_message(PK, changed.to_json()))
        assert result in (MalformedRecord, BadSignature), field


def wrapper_flip_is_expected_harmless(message: bytes, index: int, mask: int) -> bool:
    """Flips docs/wire.md §6 lets readers ignore: id and flags, the answer's TTL, letter case in the name."""
    header_id_and_flags = range(4)
    name = range(12, message.index(b"\x00", 12))
    ttl = range(name.stop + 5, name.stop + 9)  # after the root label, type and class
    in_letter = chr(message[index]).isalpha() and mask == 0x20
    return index in header_id_and_flags or index in ttl or (index in name and in_letter)


def test_flips_of_the_dns_wrapper_are_refused_or_harmless(published: Published) -> None:
    """The DNS bytes around the record, flipped and signed again: only ignorable fields may change."""
    message = published.message
    record_start = message.index(published.record_json[:32]) - 1  # before the first string's length
    harmless = []
    for index in range(record_start):
        for mask in BITS:
            result = resigned_pickup(flipped(message, index, mask))
            if isinstance(result, Record):
                assert result == published.record, (index, mask)
                assert wrapper_flip_is_expected_harmless(message, index, mask), (index, mask)
                harmless.append((index, mask))
            else:
                # Damage, or a name/type/class that no longer is our record.
                assert result in (MalformedPacket, NotFound), (index, mask)
    assert harmless  # the ignorable fields exist and are ignored, as docs/wire.md §6 asks


# --- the age blob ----------------------------------------------------------------------------


def test_every_flip_of_the_age_blob_fails_to_decrypt(published: Published) -> None:
    blob = published.blob
    identity = PUBLISHER.age_identity()
    for _, _, tampered in every_flip(blob):
        with pytest.raises(CannotDecrypt):
            payload.open_payload(tampered, identity)


def test_every_cut_and_extension_of_the_age_blob_fails_to_decrypt(published: Published) -> None:
    blob = published.blob
    identity = PUBLISHER.age_identity()
    for length in range(len(blob)):
        with pytest.raises(CannotDecrypt):
            payload.open_payload(blob[:length], identity)
    for extra in (b"\x00", b"\n", bytes(16), blob[-16:]):
        with pytest.raises(CannotDecrypt):
            payload.open_payload(blob + extra, identity)
