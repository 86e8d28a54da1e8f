"""Property tests for every parser and decoder of hostile input (issue 3).

Each parser gets arbitrary input, structured-but-wrong input, and mutations of a
valid encoding (bytes inserted, deleted, replaced, bits flipped, cuts, repeats).
The rule under test: a parser either succeeds or raises a CclinkError subclass;
any other exception fails the test. Where an encoder exists, decoding inverts it.

Inputs are bounded in size, and Argon2 is watched: a spy around kdf.derive (it
delegates to the real one) fails the test if a header ever gets Argon2 run with
parameters beyond envelope.py's bounds, or with parameters costlier than this
file allows itself, so no example can hang or allocate much.
"""

from __future__ import annotations

import json
import string
import struct
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import libtorrent as lt
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from cclink.errors import (
    CannotDecrypt,
    CclinkError,
    InvalidPublicKey,
    KeyFileError,
    MalformedPacket,
    MalformedPayload,
    MalformedRecord,
    RecordTooLarge,
    WeakSecret,
    WireError,
)
from cclink.net import krpc
from cclink.wire import envelope, kdf, keyfile, payload, z32
from cclink.wire.keys import Identity, PublicKey
from cclink.wire.packet import MAX_MESSAGE_SIZE, SignedPacket, record_from_message, record_message, record_name
from cclink.wire.payload import CarryInfo, Payload
from cclink.wire.record import Record, new_record

pytestmark = pytest.mark.timeout(120)

T = TypeVar("T")

# deadline=None: CI machines stall; the pytest timeout above bounds a real hang.
QUICK = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FEW = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --- valid values to start from --------------------------------------------------------

PUBLISHER = Identity(bytes([42]) * 32)
SHARED_WITH = Identity(bytes([99]) * 32)
PK = PUBLISHER.public_key

PASSPHRASE = "correct horse"
SEED = bytes(range(32))
# Argon2's minimum: envelopes built here open in microseconds.
FAST_ARGON2 = {"memory_kib": 8, "time_cost": 1, "parallelism": 1}
SEALED_ENVELOPE = envelope.seal(SEED, PASSPHRASE, **FAST_ARGON2)
# What a test lets a parsed header make Argon2 do (KiB x passes): a few milliseconds.
ARGON2_TEST_BUDGET = 4096

VALID_PAYLOAD = Payload("0a1b2c3d-4e5f-6789-abcd-ef0123456789", "laptop", "/home/me/work").with_carry(
    CarryInfo(info_hash=bytes(range(20)), size=12345, sha256=bytes(range(32)), hints=("127.0.0.1:6881",))
)
VALID_PLAINTEXT = VALID_PAYLOAD.to_plaintext()
VALID_BLOB = payload.seal(VALID_PAYLOAD, PK.age_recipient())

VALID_RECORD = new_record(
    PUBLISHER,
    # Without the carry details, so every field fits in one DHT item.
    payload.seal(Payload(VALID_PAYLOAD.session_id, "laptop"), PK.age_recipient()),
    ttl=3600,
    now=1_700_000_000,
    burn=True,
    pin_salt=bytes(range(32)),
    recipient=SHARED_WITH.public_key,
)
VALID_JSON = VALID_RECORD.to_json()
VALID_MESSAGE = record_message(PK, VALID_JSON)
VALID_PACKET = SignedPacket.create(PUBLISHER, 1_700_000_000_000_000, VALID_MESSAGE)
VALID_PACKET_BYTES = VALID_PACKET.to_bytes()
VALID_RELAY_PAYLOAD = VALID_PACKET.relay_payload()

VALID_HEX_KEY = (SEED.hex() + "\n").encode()


# --- helpers -----------------------------------------------------------------------------


def refused_or(call: Callable[[], T]) -> T | None:
    """call()'s result, or None when it raised a CclinkError; any other exception propagates."""
    try:
        return call()
    except CclinkError:
        return None


@st.composite
def mutated(draw: st.DrawFn, original: bytes, max_edits: int = 6) -> bytes:
    """original after a few random edits: insert, delete, replace, flip a bit, cut, repeat a slice."""
    data = bytearray(original)
    for _ in range(draw(st.integers(1, max_edits))):
        at = draw(st.integers(0, len(data)))
        op = draw(st.sampled_from(["insert", "delete", "replace", "flip", "cut", "repeat"]))
        if op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=4))
        elif op == "cut":
            del data[at:]
        elif op == "repeat":
            end = draw(st.integers(at, min(len(data), at + 16)))
            data[at:at] = data[at:end]
        elif at < len(data):
            if op == "delete":
                del data[at]
            elif op == "replace":
                data[at] = draw(st.integers(0, 255))
            else:
                data[at] ^= 1 << draw(st.integers(0, 7))
    return bytes(data)


@st.composite
def mutated_text(draw: st.DrawFn, original: str, max_edits: int = 4) -> str:
    """original after a few random character edits."""
    chars = list(original)
    for _ in range(draw(st.integers(1, max_edits))):
        at = draw(st.integers(0, len(chars)))
        op = draw(st.sampled_from(["insert", "delete", "replace"]))
        if op == "insert":
            chars.insert(at, draw(st.characters()))
        elif at < len(chars):
            if op == "delete":
                del chars[at]
            else:
                chars[at] = draw(st.characters())
    return "".join(chars)


def identities() -> st.SearchStrategy[Identity]:
    return st.binary(min_size=32, max_size=32).map(Identity)


# JSON values of every kind, including the ones Python's json reads but JSON does not
# have (huge numbers) and strings with lone surrogates (written as \ud800 escapes).
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=12)
    | st.sampled_from(["\ud800", "a\udfffb"])
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=8,
)


def json_bytes(document: object) -> bytes:
    # ensure_ascii escapes lone surrogates, so these always encode.
    return json.dumps(document).encode()


# --- z-base-32 -------------------------------------------------------------------------------


@QUICK
@given(st.binary(max_size=64))
def test_z32_round_trip(data: bytes) -> None:
    assert z32.decode(z32.encode(data)) == data


@QUICK
@given(st.text(max_size=80) | st.text(alphabet=z32.ALPHABET + "0lv2AB=", max_size=80))
def test_z32_decode_accepts_only_canonical_text(text: str) -> None:
    try:
        data = z32.decode(text)
    except WireError:
        return
    # Whatever decodes is the one canonical spelling of its bytes.
    assert z32.encode(data) == text


@QUICK
@given(mutated_text(PK.z32))
def test_z32_decode_mutated_key(text: str) -> None:
    data = refused_or(lambda: z32.decode(text))
    assert data is None or z32.encode(data) == text


# --- PublicKey.parse ---------------------------------------------------------------------


@QUICK
@given(identities())
def test_public_key_parse_round_trip(identity: Identity) -> None:
    key = identity.public_key
    for spelling in (key.display, key.z32, key.z32.upper(), f"  {key.display}\n"):
        assert PublicKey.parse(spelling) == key


@QUICK
@given(
    st.text(max_size=70)
    | st.text(alphabet=z32.ALPHABET, min_size=52, max_size=52)
    | st.text(alphabet=z32.ALPHABET, min_size=52, max_size=52).map(lambda t: "pk:" + t)
    | mutated_text(PK.display)
    | mutated_text(PK.z32)
)
def test_public_key_parse_hostile_text(text: str) -> None:
    try:
        key = PublicKey.parse(text)
    except InvalidPublicKey:
        return
    assert len(key.raw) == 32
    assert PublicKey.parse(key.display) == key


# --- key file and CCLINKEK envelope ------------------------------------------------------------


def within_envelope_bounds(memory_kib: int, time_cost: int, parallelism: int) -> bool:
    return (
        1 <= parallelism <= envelope.MAX_PARALLELISM
        and 1 <= time_cost <= envelope.MAX_TIME_COST
        and envelope.MIN_MEMORY_KIB_PER_LANE * parallelism <= memory_kib <= envelope.MAX_MEMORY_KIB
    )


@contextmanager
def watched_argon2() -> Iterator[list[tuple[int, int, int]]]:
    """Record every Argon2 run; fail at once, before it runs, if one is out of bounds or costly."""
    calls: list[tuple[int, int, int]] = []
    real_derive = kdf.derive

    def spy(
        secret: str,
        salt: bytes,
        info: bytes,
        memory_kib: int = kdf.ARGON2_MEMORY_KIB,
        time_cost: int = kdf.ARGON2_TIME,
        parallelism: int = kdf.ARGON2_PARALLELISM,
    ) -> bytes:
        calls.append((memory_kib, time_cost, parallelism))
        assert within_envelope_bounds(memory_kib, time_cost, parallelism), "Argon2 ran with unbounded parameters"
        assert memory_kib * time_cost <= ARGON2_TEST_BUDGET, "the test let a costly header through"
        return real_derive(secret, salt, info, memory_kib, time_cost, parallelism)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(kdf, "derive", spy)
        yield calls


def cheap(header: envelope.Header) -> bool:
    return header.memory_kib * header.time_cost <= ARGON2_TEST_BUDGET


def header_bytes(memory_kib: int, time_cost: int, parallelism: int, salt: bytes = b"s" * 32, version: int = 1) -> bytes:
    return envelope.MAGIC + bytes([version]) + struct.pack(">III", memory_kib, time_cost, parallelism) + salt


u32 = st.integers(0, 2**32 - 1)


@st.composite
def absurd_parameters(draw: st.DrawFn) -> tuple[int, int, int]:
    """Argon2 parameters with at least one outside envelope.py's bounds."""
    memory_kib = draw(st.integers(64, envelope.MAX_MEMORY_KIB))
    time_cost = draw(st.integers(1, envelope.MAX_TIME_COST))
    parallelism = draw(st.integers(1, 4))
    which = draw(st.sampled_from(["memory", "memory-floor", "time", "parallelism"]))
    if which == "memory":
        memory_kib = draw(st.integers(envelope.MAX_MEMORY_KIB + 1, 2**32 - 1))
    elif which == "memory-floor":
        parallelism = draw(st.integers(1, envelope.MAX_PARALLELISM))
        memory_kib = draw(st.integers(0, envelope.MIN_MEMORY_KIB_PER_LANE * parallelism - 1))
    elif which == "time":
        time_cost = draw(st.sampled_from([0]) | st.integers(envelope.MAX_TIME_COST + 1, 2**32 - 1))
    else:
        parallelism = draw(st.sampled_from([0]) | st.integers(envelope.MAX_PARALLELISM + 1, 2**32 - 1))
    return memory_kib, time_cost, parallelism


class Asked:
    """A passphrase source that counts how often it was asked."""

    def __init__(self, answer: str = PASSPHRASE) -> None:
        self.answer = answer
        self.count = 0

    def __call__(self) -> str:
        self.count += 1
        return self.answer


@QUICK
@given(absurd_parameters(), st.binary(max_size=40), st.sampled_from([SEALED_ENVELOPE[envelope.HEADER_SIZE :], b""]))
def test_absurd_argon2_headers_are_refused_before_derivation(
    parameters: tuple[int, int, int], salt_tail: bytes, ciphertext: bytes
) -> None:
    data = header_bytes(*parameters, salt=(salt_tail + bytes(32))[:32]) + ciphertext
    asked = Asked()
    with watched_argon2() as argon2_runs:
        with pytest.raises(KeyFileError):
            envelope.read_header(data)
        with pytest.raises(KeyFileError):
            envelope.open_envelope(data, PASSPHRASE)
        with pytest.raises(KeyFileError):
            keyfile.identity_from_bytes(data, asked, "test")
    assert argon2_runs == []
    assert asked.count == 0


@QUICK
@given(
    u32,
    u32,
    u32,
    st.binary(max_size=200) | st.binary(max_size=60).map(lambda b: envelope.AGE_MAGIC + b),
    st.just(envelope.VERSION) | st.integers(0, 255),
)
def test_envelope_with_any_header_fields(
    memory_kib: int, time_cost: int, parallelism: int, rest: bytes, version: int
) -> None:
    data = header_bytes(memory_kib, time_cost, parallelism, version=version) + rest
    check_envelope_parsers(data)


@QUICK
@given(st.binary(max_size=300).map(lambda b: envelope.MAGIC + b) | st.binary(max_size=80))
def test_envelope_arbitrary_bytes(data: bytes) -> None:
    check_envelope_parsers(data)


@QUICK
@given(mutated(SEALED_ENVELOPE))
def test_envelope_mutated(data: bytes) -> None:
    seed = check_envelope_parsers(data)
    # age authenticates the seed: whatever opens is the sealed seed, never another.
    assert seed is None or seed == SEED


def check_envelope_parsers(data: bytes) -> bytes | None:
    """Run read_header, open_envelope and identity_from_bytes on data; the seed they agree on, if any."""
    asked = Asked()
    with watched_argon2() as argon2_runs:
        header = refused_or(lambda: envelope.read_header(data))
        if header is None:
            # Refused by the header: so is opening, without Argon2 or a passphrase.
            assert refused_or(lambda: envelope.open_envelope(data, PASSPHRASE)) is None
            if envelope.is_envelope(data):
                assert refused_or(lambda: keyfile.identity_from_bytes(data, asked, "test")) is None
                assert asked.count == 0
            assert argon2_runs == []
            return None
        assert within_envelope_bounds(header.memory_kib, header.time_cost, header.parallelism)
        if not cheap(header):
            event("header within bounds but too costly to open here")
            return None
        seed = refused_or(lambda: envelope.open_envelope(data, PASSPHRASE))
        identity = refused_or(lambda: keyfile.identity_from_bytes(data, asked, "test"))
    assert asked.count == 1
    if seed is None:
        assert identity is None
    else:
        assert len(seed) == 32 and identity is not None and identity.seed == seed
    return seed


@FEW
@given(st.integers(envelope.MAX_ENVELOPE_SIZE + 1, 1 << 16))
def test_oversized_envelopes_are_refused_before_anything_runs(size: int) -> None:
    """A valid header then an age header of junk stanzas: age would parse it in quadratic time."""
    start = SEALED_ENVELOPE[: envelope.HEADER_SIZE] + envelope.AGE_MAGIC
    junk = b"-> x\n\n" * (size // 6 + 1)
    data = (start + junk)[:size]
    asked = Asked()
    with watched_argon2() as argon2_runs:
        with pytest.raises(KeyFileError, match="too large"):
            envelope.read_header(data)
        with pytest.raises(KeyFileError, match="too large"):
            envelope.open_envelope(data, PASSPHRASE)
        with pytest.raises(KeyFileError, match="too large"):
            keyfile.identity_from_bytes(data, asked, "test")
    assert argon2_runs == [] and asked.count == 0


@FEW
@given(st.binary(min_size=32, max_size=32), st.text(min_size=1, max_size=20), st.integers(8, 64), st.integers(1, 2))
def test_envelope_seal_open_round_trip(seed: bytes, passphrase: str, memory_kib: int, time_cost: int) -> None:
    data = envelope.seal(seed, passphrase, memory_kib=memory_kib, time_cost=time_cost, parallelism=1)
    assert len(data) <= envelope.MAX_ENVELOPE_SIZE
    header = envelope.read_header(data)
    assert (header.memory_kib, header.time_cost, header.parallelism) == (memory_kib, time_cost, 1)
    assert envelope.open_envelope(data, passphrase) == seed
    assert keyfile.identity_from_bytes(data, lambda: passphrase, "test").seed == seed


@QUICK
@given(
    st.binary(max_size=200)
    | st.text(alphabet=string.hexdigits + " \t\r\n\x0b\x0c\xa0\u2028g", max_size=80).map(str.encode)
    | mutated(VALID_HEX_KEY)
)
def test_plaintext_key_file(data: bytes) -> None:
    asked = Asked()
    if envelope.is_envelope(data):
        return  # the envelope tests cover these
    identity = refused_or(lambda: keyfile.identity_from_bytes(data, asked, "test"))
    assert asked.count == 0
    if identity is not None:
        assert identity.seed.hex() == data.decode().strip().lower()


@QUICK
@given(st.binary(min_size=32, max_size=32), st.sampled_from(["", "\n", "\r\n", "  \n\n"]), st.booleans())
def test_plaintext_key_file_round_trip(seed: bytes, trailer: str, upper: bool) -> None:
    text = seed.hex().upper() if upper else seed.hex()
    assert keyfile.identity_from_bytes((text + trailer).encode(), Asked(), "test").seed == seed


# --- DNS message --------------------------------------------------------------------------

TXT, OPT, TSIG, SIG, A, ANY = 16, 41, 250, 24, 1, 255
IN, CLASS_NONE, CLASS_ANY = 1, 254, 255
OUR_NAME = record_name(PK).to_wire()


def character_strings(chunks: list[bytes]) -> bytes:
    return b"".join(bytes([len(chunk)]) + chunk for chunk in chunks)


def usually(right: T, wrong: st.SearchStrategy[T]) -> st.SearchStrategy[T]:
    """right three times in four, else something drawn from wrong."""
    return st.integers(0, 3).flatmap(lambda roll: wrong if roll == 0 else st.just(right))


@st.composite
def resource_records(draw: st.DrawFn) -> bytes:
    """One resource record, usually almost right: our name, TXT, IN, with a few things off."""
    name = draw(
        usually(
            OUR_NAME,
            st.sampled_from([OUR_NAME.upper(), b"\xc0\x0c", b"\xc0\xff", b"\x00", b"\x3f" + b"a" * 63])
            | st.binary(max_size=20),
        )
    )
    rtype = draw(usually(TXT, st.sampled_from([OPT, TSIG, SIG, A, ANY]) | st.integers(0, 65535)))
    rclass = draw(usually(IN, st.sampled_from([CLASS_NONE, CLASS_ANY, 4096]) | st.integers(0, 65535)))
    ttl = draw(st.integers(0, 2**32 - 1))
    rdata = draw(
        st.lists(st.binary(max_size=60), min_size=1, max_size=4).map(character_strings) | st.binary(max_size=40)
    )
    rdlength = draw(usually(len(rdata), st.integers(0, 65535)))
    return name + struct.pack(">HHIH", rtype, rclass, ttl, rdlength) + rdata


@st.composite
def dns_messages(draw: st.DrawFn) -> bytes:
    records = draw(st.lists(resource_records(), max_size=4))
    flags = draw(
        usually(0x8000, st.sampled_from([0x0000, 0x8000 | 5 << 11, 0x8000 | 4 << 11, 0x8200]) | st.integers(0, 65535))
    )
    question = draw(st.sampled_from([b"", OUR_NAME + b"\x00\x10\x00\x01"]))
    right_counts = (1 if question else 0, len(records), 0, 0)
    counts = draw(usually(right_counts, st.tuples(*[st.integers(0, 4)] * 4)))
    return struct.pack(">HHHHHH", draw(st.integers(0, 65535)), flags, *counts) + question + b"".join(records)


def check_message(message: bytes) -> None:
    try:
        found = record_from_message(message, PK)
    except MalformedPacket:
        return
    assert found is None or isinstance(found, bytes)


@QUICK
@given(dns_messages())
def test_dns_structured_messages(message: bytes) -> None:
    check_message(message)


@QUICK
@given(st.binary(max_size=1100))
def test_dns_arbitrary_bytes(message: bytes) -> None:
    check_message(message)


@QUICK
@given(mutated(VALID_MESSAGE))
def test_dns_mutated_message(message: bytes) -> None:
    check_message(message)


@QUICK
@given(identities(), st.binary(max_size=900))
def test_dns_record_round_trip(identity: Identity, record_json: bytes) -> None:
    try:
        message = record_message(identity.public_key, record_json)
    except RecordTooLarge:
        assert len(record_json) > 900 - 100  # the name and headers take under 100 bytes
        return
    assert len(message) <= MAX_MESSAGE_SIZE
    assert record_from_message(message, identity.public_key) == record_json
    # Only the key it was published under finds it.
    other = SHARED_WITH.public_key if identity.public_key != SHARED_WITH.public_key else PK
    assert record_from_message(message, other) is None


# --- SignedPacket -----------------------------------------------------------------------------


@QUICK
@given(
    st.binary(max_size=1200)
    | st.binary(min_size=72, max_size=300).map(lambda b: PK.raw + b)
    | mutated(VALID_PACKET_BYTES)
)
def test_signed_packet_from_bytes(data: bytes) -> None:
    signed = refused_or(lambda: SignedPacket.from_bytes(data))
    if signed is None:
        return
    assert signed.to_bytes() == data
    if _verifies(signed):
        # Only the untouched packet carries a valid signature (Ed25519 in libsodium is not malleable).
        assert data == VALID_PACKET_BYTES


@QUICK
@given(st.binary(max_size=1200) | mutated(VALID_RELAY_PAYLOAD))
def test_signed_packet_from_relay_payload(data: bytes) -> None:
    signed = refused_or(lambda: SignedPacket.from_relay_payload(PK, data))
    if signed is None:
        return
    assert signed.relay_payload() == data
    if _verifies(signed):
        assert data == VALID_RELAY_PAYLOAD


def _verifies(signed: SignedPacket) -> bool:
    try:
        signed.verify()
    except CclinkError:
        return False
    return True


@QUICK
@given(identities(), st.integers(0, 2**64 - 1), st.binary(max_size=MAX_MESSAGE_SIZE))
def test_signed_packet_round_trip(identity: Identity, seq: int, message: bytes) -> None:
    signed = SignedPacket.create(identity, seq, message)
    parsed = SignedPacket.from_bytes(signed.to_bytes())
    assert parsed == signed
    parsed.verify()
    assert SignedPacket.from_relay_payload(identity.public_key, signed.relay_payload()) == signed


# --- Record.from_json ----------------------------------------------------------------------------

RECORD_KEYS = [
    "blob",
    "burn",
    "created_at",
    "hostname",
    "pin_salt",
    "project",
    "pubkey",
    "recipient",
    "signature",
    "ttl",
]


@st.composite
def record_like_documents(draw: st.DrawFn) -> dict[str, object]:
    """The valid record's fields, some replaced by odd values, dropped, or joined by extra keys."""
    document: dict[str, object] = json.loads(VALID_JSON)
    for key in draw(st.lists(st.sampled_from(RECORD_KEYS), max_size=3, unique=True)):
        if draw(st.booleans()):
            document.pop(key, None)
        else:
            document[key] = draw(
                json_values
                | st.sampled_from(["", "pk:" + PK.z32, PK.z32.upper(), "AAAA", "AA==", "AB==", "=", "\u0000"])
                | st.integers(-1, 2**64)
            )
    document.update(draw(st.dictionaries(st.text(max_size=4), json_values, max_size=2)))
    return document


def check_record(data: bytes) -> Record | None:
    try:
        parsed = Record.from_json(data)
    except MalformedRecord:
        return None
    if _record_verifies(parsed):
        # A record that verifies under our key holds exactly what we signed.
        assert parsed == VALID_RECORD
    return parsed


def _record_verifies(parsed: Record) -> bool:
    try:
        parsed.verify(PK)
    except CclinkError:
        return False
    return True


@QUICK
@given(record_like_documents())
def test_record_structured_documents(document: dict[str, object]) -> None:
    check_record(json_bytes(document))


@QUICK
@given(
    st.binary(max_size=300)
    | json_values.map(json_bytes)
    | st.sampled_from([b"[" * 5000, b'{"a":' * 5000, b"1" * 5000, b"\xef\xbb\xbf{}"])
)
def test_record_arbitrary_bytes(data: bytes) -> None:
    check_record(data)


@QUICK
@given(mutated(VALID_JSON))
def test_record_mutated(data: bytes) -> None:
    check_record(data)


@st.composite
def records(draw: st.DrawFn) -> tuple[Record, Identity]:
    identity = draw(identities())
    unsigned = Record(
        blob=draw(st.binary(max_size=300)),
        created_at=draw(st.integers(0, 2**63 - 1)),
        ttl=draw(st.integers(0, 2**63 - 1)),
        pubkey=identity.public_key.z32,
        burn=draw(st.booleans()),
        hostname=draw(st.text(max_size=30)),
        project=draw(st.text(max_size=30)),
        pin_salt=draw(st.none() | st.binary(min_size=32, max_size=32)),
        recipient=draw(st.none() | identities().map(lambda other: other.public_key.z32)),
    )
    return unsigned.sign(identity), identity


@QUICK
@given(records())
def test_record_json_round_trip(drawn: tuple[Record, Identity]) -> None:
    signed, identity = drawn
    parsed = Record.from_json(signed.to_json())
    assert parsed == signed
    parsed.verify(identity.public_key)


@QUICK
@given(records(), st.integers(0, 2**64 - 1))
def test_record_through_packet_round_trip(drawn: tuple[Record, Identity], seq: int) -> None:
    """Record -> DNS message -> SignedPacket bytes, and back through every parser."""
    signed, identity = drawn
    record_json = signed.to_json()
    try:
        message = record_message(identity.public_key, record_json)
    except RecordTooLarge:
        assert len(record_json) > 800
        return
    data = SignedPacket.create(identity, seq, message).to_bytes()
    parsed_packet = SignedPacket.from_bytes(data)
    parsed_packet.verify()
    found = record_from_message(parsed_packet.message, parsed_packet.public_key)
    assert found is not None
    parsed = Record.from_json(found)
    parsed.verify(identity.public_key)
    assert parsed == signed


# --- Payload ------------------------------------------------------------------------------------

session_ids = st.from_regex(payload.SESSION_ID_PATTERN, fullmatch=True)


@st.composite
def carry_like(draw: st.DrawFn) -> object:
    """A carry entry with each field right, missing or odd."""
    good = VALID_PAYLOAD.carry.to_json()  # type: ignore[union-attr]
    document: dict[str, object] = dict(good)
    for key in draw(st.lists(st.sampled_from(["i", "n", "d", "a"]), max_size=2, unique=True)):
        if draw(st.booleans()):
            document.pop(key, None)
        else:
            document[key] = draw(
                json_values
                | st.text(alphabet=string.ascii_letters + string.digits + "-_=+/", max_size=70)
                | st.lists(st.text(max_size=70) | st.integers(), max_size=10)
            )
    return draw(st.just(document) | json_values)


@st.composite
def payload_like_documents(draw: st.DrawFn) -> dict[str, object]:
    document: dict[str, object] = {}
    for key in ("h", "p", "s"):
        choice = draw(st.integers(0, 3))
        if choice == 0:
            continue
        document[key] = draw(session_ids if choice == 1 else (st.text(max_size=20) if choice == 2 else json_values))
    if draw(st.booleans()):
        document["c"] = draw(carry_like())
    document.update(draw(st.dictionaries(st.text(max_size=3), json_values, max_size=2)))
    return document


def check_plaintext(data: bytes) -> Payload | None:
    try:
        parsed = Payload.from_plaintext(data)
    except MalformedPayload:
        return None
    # The carry details are decoded on use, from the same hostile plaintext.
    carry = refused_or(lambda: parsed.carry)
    assert carry is None or isinstance(carry, CarryInfo)
    return parsed


@QUICK
@given(payload_like_documents())
def test_payload_structured_documents(document: dict[str, object]) -> None:
    check_plaintext(json_bytes(document))


@QUICK
@given(st.binary(max_size=200) | json_values.map(json_bytes) | st.sampled_from([b"[" * 5000, b"9" * 5000]))
def test_payload_arbitrary_bytes(data: bytes) -> None:
    check_plaintext(data)


@QUICK
@given(mutated(VALID_PLAINTEXT))
def test_payload_mutated(data: bytes) -> None:
    check_plaintext(data)


@QUICK
@given(
    session_ids, st.text(max_size=30), st.just("") | st.text(max_size=30).map(lambda path: "/" + path.replace("\0", ""))
)
def test_payload_plaintext_round_trip(session_id: str, hostname: str, project: str) -> None:
    original = Payload(session_id, hostname, project)
    assert Payload.from_plaintext(original.to_plaintext()) == original
    # The legacy form: the bare id.
    assert Payload.from_plaintext(session_id.encode()) == Payload(session_id)


@QUICK
@given(
    st.binary(min_size=20, max_size=20),
    st.integers(1, 2**50 - 1),
    st.binary(min_size=32, max_size=32),
    st.lists(st.text(min_size=1, max_size=64), max_size=8),
)
def test_carry_round_trip(info_hash: bytes, size: int, sha256: bytes, hints: list[str]) -> None:
    carry = CarryInfo(info_hash, size, sha256, tuple(hints))
    with_carry = Payload("abc").with_carry(carry)
    assert Payload.from_plaintext(with_carry.to_plaintext()).carry == carry


@FEW
@given(identities(), session_ids, st.text(max_size=30))
def test_payload_seal_open_round_trip(identity: Identity, session_id: str, hostname: str) -> None:
    original = Payload(session_id, hostname, "/work")
    blob = payload.seal(original, identity.public_key.age_recipient())
    assert payload.open_payload(blob, identity.age_identity()) == original
    with pytest.raises(CannotDecrypt):
        other = SHARED_WITH if identity.public_key != SHARED_WITH.public_key else PUBLISHER
        payload.open_payload(blob, other.age_identity())


@QUICK
@given(
    st.binary(max_size=400)
    | st.binary(max_size=300).map(lambda b: b"age-encryption.org/v1\n" + b)
    | mutated(VALID_BLOB)
)
def test_open_payload_hostile_blob(blob: bytes) -> None:
    opened = refused_or(lambda: payload.open_payload(blob, PUBLISHER.age_identity()))
    # age authenticates: whatever opens is what was sealed.
    assert opened is None or opened == VALID_PAYLOAD


# --- KRPC replies ------------------------------------------------------------------------------

VALID_GET_REPLY = lt.bencode(
    {
        b"t": b"\x01\x02",
        b"y": b"r",
        b"r": {
            b"id": bytes(range(20)),
            b"token": b"tok3n",
            b"nodes": bytes(range(20)) + bytes([127, 0, 0, 1]) + (6881).to_bytes(2, "big"),
            b"k": PK.raw,
            b"seq": VALID_PACKET.seq,
            b"sig": VALID_PACKET.signature,
            b"v": VALID_MESSAGE,
        },
    }
)
bencodable = st.recursive(
    st.binary(max_size=40) | st.integers(-(2**63), 2**63 - 1),  # what libtorrent's bencode can write
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.binary(max_size=6), inner, max_size=4),
    max_leaves=12,
)
REPLY_KEYS = [b"id", b"token", b"nodes", b"k", b"seq", b"sig", b"v"]
# Integers no bencoder here writes: beyond 64 bits, and negative.
ODD_SEQS = [
    VALID_GET_REPLY.replace(b"3:seqi1700000000000000e", b"3:seqi" + digits + b"e")
    for digits in (b"9" * 40, b"-1", b"-" + b"9" * 30)
]


def check_reply(datagram: bytes) -> krpc.Reply | None:
    """parse_reply never raises, and what it reads keeps the rules cclink relies on."""
    reply = krpc.parse_reply(datagram, PK.raw)
    if reply is None:
        return None
    assert reply.node_id is None or len(reply.node_id) == krpc.ID_SIZE
    assert all(contact.address[1] > 0 for contact in reply.nodes)
    item = reply.item
    assert item is None or (0 <= item.seq < krpc.MAX_SEQ and len(item.signature) == 64 and len(item.value) <= 1000)
    return reply


@st.composite
def reply_like_messages(draw: st.DrawFn) -> bytes:
    """A bencoded reply whose fields are each right, missing or any bencodable value."""
    body = dict(lt.bdecode(VALID_GET_REPLY)[b"r"])
    for key in draw(st.lists(st.sampled_from(REPLY_KEYS), max_size=3, unique=True)):
        if draw(st.booleans()):
            body.pop(key)
        else:
            body[key] = draw(bencodable)
    kind = draw(st.sampled_from([b"r", b"e", b"q"]) | st.binary(max_size=2))
    return lt.bencode({b"t": draw(st.binary(max_size=4)), b"y": kind, b"r": body, b"e": draw(bencodable)})


@QUICK
@given(
    st.binary(max_size=300)
    | bencodable.map(lambda value: lt.bencode(value))
    | mutated(VALID_GET_REPLY)
    | st.sampled_from(ODD_SEQS)
)
def test_krpc_reply_from_any_datagram(datagram: bytes) -> None:
    check_reply(datagram)


@QUICK
@given(reply_like_messages())
def test_krpc_reply_with_any_fields(datagram: bytes) -> None:
    check_reply(datagram)


def test_krpc_reply_reads_a_valid_get_reply() -> None:
    reply = check_reply(VALID_GET_REPLY)
    assert reply is not None and reply.transaction == b"\x01\x02" and reply.token == b"tok3n"
    assert reply.nodes == (krpc.Contact(bytes(range(20)), ("127.0.0.1", 6881)),)
    assert reply.item == krpc.Item(VALID_PACKET.seq, VALID_PACKET.signature, VALID_MESSAGE)
    # An item under another key is not ours to read.
    assert krpc.parse_reply(VALID_GET_REPLY, SHARED_WITH.public_key.raw).item is None


# --- PIN rules -------------------------------------------------------------------------------------


@QUICK
@given(st.text(max_size=20) | mutated_text("correct horse"))
def test_pin_and_passphrase_rules_on_any_text(text: str) -> None:
    for check in (kdf.check_pin, kdf.check_passphrase):
        try:
            check(text)
        except WeakSecret:
            continue
        assert len(text) >= kdf.MIN_SECRET_LENGTH
