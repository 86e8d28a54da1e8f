"""The DNS message holding a record, and the pkarr SignedPacket around it (docs/wire.md §6)."""

from __future__ import annotations

import struct
from dataclasses import dataclass

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TXT
import dns.rrset

from cclink.errors import BadSignature, InvalidPublicKey, MalformedPacket, RecordTooLarge
from cclink.wire.keys import PUBLIC_KEY_SIZE, SIGNATURE_SIZE, Identity, PublicKey

MAX_MESSAGE_SIZE = 1000  # BEP 44's limit on v
LABEL = "_cclink"
DNS_TTL = 86400
CHUNK_SIZE = 254  # what pkarr's TXT builder uses, so messages match it byte for byte
SEQ_SIZE = 8
MAX_SEQ = 2**64


def record_name(publisher: PublicKey) -> dns.name.Name:
    return dns.name.from_text(f"{LABEL}.{publisher.z32}.")


def record_message(publisher: PublicKey, record_json: bytes) -> bytes:
    """The DNS message publishing record_json; RecordTooLarge over 1000 bytes."""
    wire = txt_message(record_name(publisher), record_json)
    # DHT nodes hold the item's value to the limit as bencoded, with its "<length>:" prefix.
    if len(b"%d:" % len(wire)) + len(wire) > MAX_MESSAGE_SIZE:
        raise RecordTooLarge(
            f"the handoff record is {len(record_json)} bytes, which makes a {len(wire)}-byte "
            f"DNS message, over the {MAX_MESSAGE_SIZE}-byte limit of one DHT item"
        )
    return wire


def txt_message(name: dns.name.Name, content: bytes) -> bytes:
    """A DNS response whose one answer is a TXT record at name holding content (in pkarr's 254-byte strings)."""
    chunks = [content[i : i + CHUNK_SIZE] for i in range(0, len(content), CHUNK_SIZE)]
    rdata = dns.rdtypes.ANY.TXT.TXT(dns.rdataclass.IN, dns.rdatatype.TXT, chunks or [b""])
    message = _empty_message()
    message.answer.append(dns.rrset.from_rdata(name, DNS_TTL, rdata))
    return message.to_wire()


def revocation_message() -> bytes:
    """The DNS message that replaces a record with nothing."""
    return _empty_message().to_wire()


def _empty_message() -> dns.message.Message:
    message = dns.message.Message(id=0)
    message.flags = dns.flags.QR  # 0x8000: a response, nothing else set
    return message


def record_from_message(message: bytes, publisher: PublicKey) -> bytes | None:
    """The record JSON in message, or None when it holds no `_cclink` TXT answer."""
    return txt_content(message, record_name(publisher))


def txt_content(message: bytes, name: dns.name.Name) -> bytes | None:
    """The first TXT answer at name in message, its strings joined; None when there is none.

    MalformedPacket for anything that is not a DNS message of at most 1000 bytes.
    """
    for rrset in _parse(message).answer:
        # Name equality in dnspython ignores case, as docs/wire.md §6 asks.
        if rrset.rdtype == dns.rdatatype.TXT and rrset.rdclass == dns.rdataclass.IN and rrset.name == name:
            return b"".join(rrset[0].strings)
    return None


def _parse(message: bytes) -> dns.message.Message:
    if len(message) > MAX_MESSAGE_SIZE:
        raise MalformedPacket(f"the DNS message is over {MAX_MESSAGE_SIZE} bytes")
    try:
        # One rrset per RR keeps the answers in wire order ("the first" TXT answer).
        return dns.message.from_wire(bytes(message), one_rr_per_rrset=True)
    except (
        dns.exception.DNSException,
        ValueError,
        TypeError,
        IndexError,
        KeyError,
        UnicodeError,
        OverflowError,
        struct.error,
    ):
        raise MalformedPacket("the packet does not hold a valid DNS message") from None


@dataclass(frozen=True)
class SignedPacket:
    """A pkarr SignedPacket: a DNS message signed as a BEP 44 mutable item."""

    public_key: PublicKey
    signature: bytes
    seq: int
    message: bytes

    def __post_init__(self) -> None:
        if len(self.signature) != SIGNATURE_SIZE:
            raise MalformedPacket("a packet signature is not 64 bytes")
        if not 0 <= self.seq < MAX_SEQ:
            raise MalformedPacket("a packet's seq is not a 64-bit unsigned integer")
        if len(self.message) > MAX_MESSAGE_SIZE:
            raise MalformedPacket(f"the packet's DNS message is over {MAX_MESSAGE_SIZE} bytes")

    def signable(self) -> bytes:
        """The BEP 44 bytes signed (empty salt)."""
        return b"3:seqi%de1:v%d:" % (self.seq, len(self.message)) + self.message

    def verify(self) -> None:
        try:
            self.public_key.verify(self.signable(), self.signature)
        except BadSignature:
            raise BadSignature("the packet's signature does not verify under its public key") from None

    def to_bytes(self) -> bytes:
        return self.public_key.raw + self.relay_payload()

    def relay_payload(self) -> bytes:
        """What a pkarr relay stores and serves: signature | seq | message."""
        return self.signature + self.seq.to_bytes(SEQ_SIZE, "big") + self.message

    @classmethod
    def from_bytes(cls, data: bytes) -> SignedPacket:
        data = bytes(data)
        if len(data) < PUBLIC_KEY_SIZE:
            raise MalformedPacket("the packet is too short to hold a public key")
        try:
            public_key = PublicKey(data[:PUBLIC_KEY_SIZE])
        except InvalidPublicKey:
            raise MalformedPacket("the packet's public key is not a valid Ed25519 key") from None
        return cls.from_relay_payload(public_key, data[PUBLIC_KEY_SIZE:])

    @classmethod
    def from_relay_payload(cls, public_key: PublicKey, data: bytes) -> SignedPacket:
        data = bytes(data)
        header = SIGNATURE_SIZE + SEQ_SIZE
        if len(data) < header:
            raise MalformedPacket("the packet is too short to hold a signature and seq")
        return cls(
            public_key=public_key,
            signature=data[:SIGNATURE_SIZE],
            seq=int.from_bytes(data[SIGNATURE_SIZE:header], "big"),
            message=data[header:],
        )

    @classmethod
    def create(cls, identity: Identity, seq: int, message: bytes) -> SignedPacket:
        """Sign message as identity's item number seq."""
        unsigned = cls(identity.public_key, bytes(SIGNATURE_SIZE), seq, message)
        return cls(identity.public_key, identity.sign(unsigned.signable()), seq, message)
