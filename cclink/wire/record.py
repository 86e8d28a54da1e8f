"""The signed handoff record carried in the `_cclink` TXT record (docs/wire.md §5)."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, replace

from cclink.errors import BadSignature, InvalidPublicKey, MalformedRecord
from cclink.wire import strictjson
from cclink.wire.keys import SIGNATURE_SIZE, Identity, PublicKey

PIN_SALT_SIZE = 32
# Rust reads these as u64; we stop at i64 so every consumer (time, sqlite, ...) copes.
MAX_INTEGER = 2**63


@dataclass(frozen=True)
class Record:
    """A handoff record; `signature` is empty until signed."""

    blob: bytes
    created_at: int
    ttl: int
    pubkey: str
    burn: bool = False
    hostname: str = ""
    project: str = ""
    pin_salt: bytes | None = None
    recipient: str | None = None
    signature: bytes = b""

    def signable(self) -> bytes:
        """The canonical JSON the signature covers: every field but signature, nulls kept."""
        document = {
            "blob": _b64encode(self.blob),
            "burn": self.burn,
            "created_at": self.created_at,
            "hostname": self.hostname,
            "pin_salt": None if self.pin_salt is None else _b64encode(self.pin_salt),
            "project": self.project,
            "pubkey": self.pubkey,
            "recipient": self.recipient,
            "ttl": self.ttl,
        }
        return _dumps(document)

    def sign(self, identity: Identity) -> Record:
        """A copy carrying identity's signature over signable()."""
        return replace(self, signature=identity.sign(self.signable()))

    def verify(self, publisher: PublicKey) -> None:
        """Check the record against the key it was resolved under."""
        if self.pubkey != publisher.z32:
            raise MalformedRecord("the handoff record names a different publisher than the key it was published under")
        try:
            publisher.verify(self.signable(), self.signature)
        except BadSignature:
            raise BadSignature("the handoff record's signature does not verify") from None

    def to_json(self) -> bytes:
        """The TXT content: compact, alphabetical, optional keys only when set (serde's skip rules)."""
        document: dict[str, object] = {"blob": _b64encode(self.blob)}
        if self.burn:
            document["burn"] = True
        document["created_at"] = self.created_at
        if self.hostname:
            document["hostname"] = self.hostname
        if self.pin_salt is not None:
            document["pin_salt"] = _b64encode(self.pin_salt)
        if self.project:
            document["project"] = self.project
        document["pubkey"] = self.pubkey
        if self.recipient is not None:
            document["recipient"] = self.recipient
        document["signature"] = _b64encode(self.signature)
        document["ttl"] = self.ttl
        return _dumps(document)

    @classmethod
    def from_json(cls, data: bytes) -> Record:
        """Parse TXT content strictly; MalformedRecord for anything off."""
        document = _load_object(data)
        record = cls(
            blob=_base64_field(document, "blob"),
            created_at=_integer_field(document, "created_at"),
            ttl=_integer_field(document, "ttl"),
            pubkey=_text_field(document, "pubkey"),
            burn=_bool_field(document, "burn"),
            hostname=_text_field(document, "hostname", default=""),
            project=_text_field(document, "project", default=""),
            pin_salt=_optional_base64_field(document, "pin_salt", size=PIN_SALT_SIZE),
            recipient=_optional_text_field(document, "recipient"),
            signature=_base64_field(document, "signature", size=SIGNATURE_SIZE),
        )
        record.publisher()
        record.recipient_key()
        return record

    @property
    def expires_at(self) -> int:
        return self.created_at + self.ttl

    def is_expired(self, now: float) -> bool:
        return now >= self.expires_at

    def publisher(self) -> PublicKey:
        """The key named in the pubkey field (bare z32 only)."""
        key = _parse_key(self.pubkey, "pubkey")
        if key.z32 != self.pubkey:
            raise MalformedRecord("the handoff record's pubkey is not a bare lower-case z-base-32 key")
        return key

    def recipient_key(self) -> PublicKey | None:
        """The --share key, accepting the `pk:` prefix the Rust tool may have stored."""
        return None if self.recipient is None else _parse_key(self.recipient, "recipient")


def new_record(
    identity: Identity,
    blob: bytes,
    ttl: int,
    now: float,
    burn: bool = False,
    pin_salt: bytes | None = None,
    recipient: PublicKey | None = None,
) -> Record:
    """A signed record published now by identity."""
    if pin_salt is not None and len(pin_salt) != PIN_SALT_SIZE:
        raise ValueError("a PIN salt is 32 bytes")
    if not 0 <= ttl < MAX_INTEGER:
        raise ValueError("ttl must be a non-negative 63-bit integer")
    record = Record(
        blob=blob,
        created_at=int(now),
        ttl=ttl,
        pubkey=identity.public_key.z32,
        burn=burn,
        pin_salt=pin_salt,
        recipient=None if recipient is None else recipient.z32,
    )
    return record.sign(identity)


# --- encoding ---------------------------------------------------------------------


def _dumps(document: dict[str, object]) -> bytes:
    # ensure_ascii=False escapes exactly what serde_json does: `"`, `\` and
    # U+0000..U+001F (short forms for \b \f \n \r \t, else lower-case \u00xx).
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# --- strict decoding --------------------------------------------------------------

_MISSING = object()


def _load_object(data: bytes) -> dict[str, object]:
    try:
        text = bytes(data).decode("utf-8")
    except (UnicodeDecodeError, TypeError):
        raise MalformedRecord("the handoff record is not UTF-8 text") from None
    try:
        document = strictjson.loads(text)
    except strictjson.RepeatedKey:
        raise MalformedRecord("the handoff record repeats a JSON key") from None
    except ValueError:
        # ValueError also covers Python's limit on huge integers.
        raise MalformedRecord("the handoff record is not valid JSON") from None
    if not isinstance(document, dict):
        raise MalformedRecord("the handoff record is not a JSON object")
    return document


def _get(document: dict[str, object], key: str, default: object) -> object:
    value = document.get(key, default)
    if value is _MISSING:
        raise MalformedRecord(f"the handoff record has no {key} field")
    return value


def _integer_field(document: dict[str, object], key: str) -> int:
    value = _get(document, key, _MISSING)
    # bool is an int subclass in Python but not a JSON number.
    if type(value) is not int or not 0 <= value < MAX_INTEGER:
        raise MalformedRecord(f"the handoff record's {key} is not a non-negative integer")
    return value


def _bool_field(document: dict[str, object], key: str) -> bool:
    value = _get(document, key, False)
    if type(value) is not bool:
        raise MalformedRecord(f"the handoff record's {key} is not true or false")
    return value


def _text_field(document: dict[str, object], key: str, default: object = _MISSING) -> str:
    value = _get(document, key, default)
    if not isinstance(value, str) or not strictjson.is_unicode(value):
        raise MalformedRecord(f"the handoff record's {key} is not a string")
    return value


def _optional_text_field(document: dict[str, object], key: str) -> str | None:
    if document.get(key) is None:
        return None
    return _text_field(document, key)


def _base64_field(document: dict[str, object], key: str, size: int | None = None) -> bytes:
    text = _text_field(document, key)
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise MalformedRecord(f"the handoff record's {key} is not valid base64") from None
    # Rust's base64 rejects non-zero padding bits and missing padding: only the
    # canonical spelling is accepted.
    if _b64encode(raw) != text:
        raise MalformedRecord(f"the handoff record's {key} is not canonical base64")
    if size is not None and len(raw) != size:
        raise MalformedRecord(f"the handoff record's {key} is not {size} bytes")
    return raw


def _optional_base64_field(document: dict[str, object], key: str, size: int) -> bytes | None:
    if document.get(key) is None:
        return None
    return _base64_field(document, key, size)


def _parse_key(text: str, key: str) -> PublicKey:
    try:
        return PublicKey.parse(text)
    except InvalidPublicKey:
        raise MalformedRecord(f"the handoff record's {key} is not a public key") from None
