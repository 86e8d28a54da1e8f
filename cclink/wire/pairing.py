"""`cclink pair` on the wire: the code, the mailboxes, the messages and the keys SPAKE2 gives (docs/pairing.md).

Everything here is pure: bytes in, bytes or values out. A message from the
network is parsed as hostile input: bounded, strictly typed, and shaped as
its sender's role and phase require, or refused with a WireError.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import secrets
from dataclasses import dataclass
from typing import Literal

import dns.name
import nacl.exceptions
import nacl.secret
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from spake2 import SPAKE2_A, SPAKE2_B, SPAKEError  # type: ignore[import-untyped]
from spake2.ed25519_basic import NotOnCurve  # type: ignore[import-untyped]

from cclink.errors import CannotDecrypt, InvalidPublicKey, MalformedPacket, MalformedRecord, UsageError
from cclink.wire import packet, strictjson, words
from cclink.wire.contacts import KINDS, Kind
from cclink.wire.keys import Identity, PublicKey

VERSION = 1
PROTOCOL = b"cclink pair 1"
MAX_NAMEPLATE = 9999
DEFAULT_TIMEOUT = 600  # seconds a code stays good unless `--timeout` says otherwise
MAX_TIMEOUT = 3600
MAX_SKEW = 300  # seconds a peer's clock may run ahead of ours
MAX_CREATED = 2**40  # seconds since the epoch: far beyond any real date, far below what breaks arithmetic
PAKE_SIZE = 33  # SPAKE2 (Ed25519 group): one side byte, one 32-byte element
ANSWERS_SIZE = 16  # bytes of SHA-256 naming the SPAKE2 message a message answers
MAX_HOST = 64  # characters of a hostname kept (a longer one is cut, never refused)
MAX_BOX = 512  # bytes of a sealed card: far more than the largest card takes
LABEL = "_cclink-pair"
VERIFY_WORDS = 3

Role = Literal["A", "B"]
Phase = Literal["pake", "key", "confirmed", "closed"]
Reason = Literal["wrong-code", "declined", "kind", "same-key", "gave-up"]
PHASES: tuple[Phase, ...] = ("pake", "key", "confirmed", "closed")
REASONS: tuple[Reason, ...] = ("wrong-code", "declined", "kind", "same-key", "gave-up")

# The fields each role's message holds in each phase, beside v, phase and created: (required, optional).
# A closes before any B answered, or after; B closes only after reading A's first message.
_FIELDS: dict[tuple[Role, Phase], tuple[frozenset[str], frozenset[str]]] = {
    ("A", "pake"): (frozenset({"pake", "ttl"}), frozenset()),
    ("A", "key"): (frozenset({"answers", "box"}), frozenset()),
    ("A", "confirmed"): (frozenset({"answers", "box"}), frozenset()),
    ("A", "closed"): (frozenset({"reason"}), frozenset({"answers"})),
    ("B", "pake"): (frozenset({"pake", "answers", "box"}), frozenset()),
    ("B", "confirmed"): (frozenset({"pake", "answers", "box"}), frozenset()),
    ("B", "closed"): (frozenset({"reason", "answers"}), frozenset()),
}
_COMMON = frozenset({"v", "phase", "created"})


# --- the code -------------------------------------------------------------------------


@dataclass(frozen=True)
class Code:
    """`<nameplate>-<even word>-<odd word>`: the nameplate finds the mailboxes, the words are the password."""

    nameplate: int
    first: str
    second: str

    def __str__(self) -> str:
        return f"{self.nameplate}-{self.first}-{self.second}"

    @property
    def password(self) -> bytes:
        return str(self).encode()

    @classmethod
    def random(cls) -> Code:
        return cls(secrets.randbelow(MAX_NAMEPLATE) + 1, secrets.choice(words.EVEN), secrets.choice(words.ODD))

    @classmethod
    def parse(cls, text: str) -> Code:
        """A code as typed: case and spaces (or several dashes) between its parts do not matter; UsageError if wrong."""
        parts = [part for part in re.split(r"[\s-]+", text.strip().lower()) if part]
        if len(parts) != 3 or not parts[0].isascii() or not parts[0].isdigit():
            raise UsageError("a pairing code is a number and two words, such as 7-guitar-ocean")
        nameplate, first, second = int(parts[0]), parts[1], parts[2]
        if not 1 <= nameplate <= MAX_NAMEPLATE:
            raise UsageError(f"a pairing code starts with a number from 1 to {MAX_NAMEPLATE}")
        if first not in words.EVEN or second not in words.ODD:
            swapped = first in words.ODD and second in words.EVEN
            hint = " (the two words seem swapped)" if swapped else ""
            raise UsageError(f"the words of that pairing code are not the words cclink prints{hint}; check the code")
        return cls(nameplate, first, second)


def mailbox(nameplate: int, role: Role) -> Identity:
    """The key of role's mailbox for nameplate: anyone can derive it, so anyone can write there (see docs)."""
    return Identity(hashlib.sha256(PROTOCOL + b" " + role.encode() + b"\0" + str(nameplate).encode()).digest())


# --- SPAKE2 and the keys it gives --------------------------------------------------------


@dataclass(frozen=True)
class Keys:
    """What both sides derive from SPAKE2's shared key K once it finished."""

    box_a: bytes  # seals what A sends
    box_b: bytes  # seals what B sends
    verification: str  # words both screens show

    @classmethod
    def from_shared(cls, shared: bytes) -> Keys:
        check = _hkdf(shared, b"verify", VERIFY_WORDS)
        spoken = [(words.EVEN if index % 2 == 0 else words.ODD)[byte] for index, byte in enumerate(check)]
        return cls(_hkdf(shared, b"box A", 32), _hkdf(shared, b"box B", 32), " ".join(spoken))


def _hkdf(shared: bytes, purpose: bytes, length: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=PROTOCOL + b" " + purpose).derive(shared)


class Pake:
    """One side's SPAKE2 for a code: its message to send, then finish() with the other side's."""

    def __init__(self, role: Role, code: Code) -> None:
        kind = SPAKE2_A if role == "A" else SPAKE2_B
        self._spake = kind(code.password, idA=PROTOCOL + b" A", idB=PROTOCOL + b" B")
        self.message: bytes = self._spake.start()

    def finish(self, peer_message: bytes) -> Keys:
        """The keys; CannotDecrypt when the peer's message is not a SPAKE2 message of the other role."""
        try:
            return Keys.from_shared(self._spake.finish(peer_message))
        except (SPAKEError, ValueError, NotOnCurve):
            raise CannotDecrypt(WRONG_CODE) from None


def answers(pake_message: bytes) -> bytes:
    """What a message carries to say which SPAKE2 message it answers (so stale ones are told apart)."""
    return hashlib.sha256(pake_message).digest()[:ANSWERS_SIZE]


WRONG_CODE = "the code was wrong, or someone tried to guess it; nothing was paired"


# --- the card: what each side tells the other, sealed --------------------------------------


@dataclass(frozen=True)
class Card:
    """A side's key, hostname, how it stores the other side, and whether its person confirmed."""

    key: PublicKey
    host: str
    kind: Kind
    confirmed: bool

    def seal(self, box_key: bytes) -> bytes:
        # As UTF-8, not \u escapes, so that any hostname of MAX_HOST characters fits in MAX_BOX; a lone
        # surrogate (an undecodable byte in the name) becomes "?".
        host = self.host[:MAX_HOST].encode("utf-8", "replace").decode("utf-8")
        document = {"key": self.key.z32, "host": host, "kind": self.kind, "confirmed": self.confirmed}
        plain = json.dumps(document, ensure_ascii=False).encode("utf-8")
        return bytes(nacl.secret.SecretBox(box_key).encrypt(plain))

    @classmethod
    def open(cls, box_key: bytes, sealed: bytes) -> Card:
        """The card in sealed; CannotDecrypt when box_key does not open it, MalformedRecord when it is not a card."""
        try:
            plain = nacl.secret.SecretBox(box_key).decrypt(sealed)
        except (nacl.exceptions.CryptoError, nacl.exceptions.ValueError, nacl.exceptions.TypeError):
            raise CannotDecrypt(WRONG_CODE) from None
        document = _json_object(plain, "a pairing card")
        if set(document) != {"key", "host", "kind", "confirmed"}:
            raise MalformedRecord("a pairing card has missing or unknown fields")
        key, host, kind, confirmed = document["key"], document["host"], document["kind"], document["confirmed"]
        if not isinstance(host, str) or len(host) > MAX_HOST or kind not in KINDS or not isinstance(confirmed, bool):
            raise MalformedRecord("a pairing card has a bad hostname, kind or confirmation")
        try:
            if not isinstance(key, str):
                raise InvalidPublicKey("not a string")
            public_key = PublicKey.parse(key)
        except InvalidPublicKey:
            raise MalformedRecord("a pairing card holds no valid public key") from None
        return cls(public_key, host, kind, confirmed)


# --- messages ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Message:
    """One item in a mailbox: the phase its sender is in and what that phase carries (the rest is None)."""

    phase: Phase
    created: int  # seconds since the epoch, by the sender's clock
    pake: bytes | None = None
    ttl: int | None = None  # A's first message: seconds the code stays good
    answers: bytes | None = None
    box: bytes | None = None
    reason: Reason | None = None

    def to_json(self) -> bytes:
        document: dict[str, object] = {"v": VERSION, "phase": self.phase, "created": self.created}
        for name in ("pake", "answers", "box"):
            value = getattr(self, name)
            if value is not None:
                document[name] = base64.b64encode(value).decode()
        if self.ttl is not None:
            document["ttl"] = self.ttl
        if self.reason is not None:
            document["reason"] = self.reason
        return json.dumps(document, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes, role: Role) -> Message:
        """The message role sent; MalformedRecord unless it is exactly what that role sends in its phase."""
        document = _json_object(data, "a pairing message")
        phase = document.get("phase")
        if document.get("v") != VERSION or phase not in PHASES or (role, phase) not in _FIELDS:
            raise MalformedRecord(f"not a version {VERSION} pairing message {role} sends")
        required, optional = _FIELDS[(role, phase)]
        if not (_COMMON | required) <= set(document) <= (_COMMON | required | optional):
            raise MalformedRecord("a pairing message has missing or unknown fields")
        return cls(
            phase=phase,
            created=_bounded_int(document["created"], 0, MAX_CREATED, "created"),
            pake=_bytes_field(document, "pake", PAKE_SIZE, PAKE_SIZE),
            ttl=_bounded_int(document["ttl"], 1, MAX_TIMEOUT, "ttl") if "ttl" in document else None,
            answers=_bytes_field(document, "answers", ANSWERS_SIZE, ANSWERS_SIZE),
            box=_bytes_field(document, "box", nacl.secret.SecretBox.NONCE_SIZE + 16, MAX_BOX),
            reason=_reason(document),
        )


def _json_object(data: bytes, what: str) -> dict[str, object]:
    try:
        document = strictjson.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise MalformedRecord(f"{what} is not JSON") from None
    if not isinstance(document, dict):
        raise MalformedRecord(f"{what} is not a JSON object")
    return document


def _bounded_int(value: object, low: int, high: int, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise MalformedRecord(f"a pairing message's {name} is not a number from {low} to {high}")
    return value


def _bytes_field(document: dict[str, object], name: str, least: int, most: int) -> bytes | None:
    if name not in document:
        return None
    value = document[name]
    # base64 of `most` bytes is at most 4 * ceil(most / 3) characters: checked before decoding anything.
    if not isinstance(value, str) or len(value) > 4 * (-(-most // 3)):
        raise MalformedRecord(f"a pairing message's {name} is not base64 of at most {most} bytes")
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise MalformedRecord(f"a pairing message's {name} is not base64") from None
    if not least <= len(raw) <= most:
        raise MalformedRecord(f"a pairing message's {name} is not {least} to {most} bytes")
    return raw


def _reason(document: dict[str, object]) -> Reason | None:
    if "reason" not in document:
        return None
    reason = document["reason"]
    for known in REASONS:
        if reason == known:
            return known
    raise MalformedRecord("a pairing message gives an unknown reason")


# --- the DNS message around a message (pkarr relays carry only DNS messages) -----------------


def mailbox_name(mailbox_key: PublicKey) -> dns.name.Name:
    return dns.name.from_text(f"{LABEL}.{mailbox_key.z32}.")


def to_dns(mailbox_key: PublicKey, message: Message) -> bytes:
    """message as a DNS message with one TXT answer under the mailbox's name (as wire/packet.py builds records)."""
    wire = packet.txt_message(mailbox_name(mailbox_key), message.to_json())
    if len(wire) > MAX_ITEM:
        raise AssertionError(f"a pairing message took {len(wire)} bytes; every one fits in {MAX_ITEM}")
    return wire


MAX_ITEM = packet.MAX_MESSAGE_SIZE - 4  # BEP 44 counts the bencoded "<length>:" prefix too


def from_dns(mailbox_key: PublicKey, value: bytes, role: Role) -> Message:
    """The message role left in its mailbox; MalformedPacket or MalformedRecord for anything else."""
    if len(value) > MAX_ITEM:
        raise MalformedPacket(f"a pairing item is over {MAX_ITEM} bytes")
    content = packet.txt_content(value, mailbox_name(mailbox_key))
    if content is None:
        raise MalformedPacket("a pairing item holds no pairing message")
    return Message.from_json(content, role)
