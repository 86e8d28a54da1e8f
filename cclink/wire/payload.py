"""The encrypted payload of a handoff: session id, hostname and project (docs/wire.md §4).

A `--carry` handoff adds one key the Rust tool ignores, `c`: where to fetch the
session itself (see CarryInfo).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from cclink.errors import MalformedPayload
from cclink.wire import agecrypt, strictjson

# The id becomes `<id>.jsonl` on the picker's machine: no separators, no `.`/`..`,
# nothing hidden; and an argument of `claude`: nothing that starts like an option.
SESSION_ID_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")

_KNOWN_KEYS = ("h", "p", "s")
CARRY_KEY = "c"


def check_session_id(text: str) -> str:
    """Return text if it is a safe session id, else raise MalformedPayload."""
    if not isinstance(text, str) or SESSION_ID_PATTERN.fullmatch(text) is None:
        raise MalformedPayload(
            "the session id in the handoff is not 1-128 letters, digits, '_', '-' or '.' "
            "(starting with a letter, digit or '_')"
        )
    return text


def check_project(path: str) -> str:
    """Return path if it can name the publisher's project: empty (unknown) or absolute, without NUL."""
    # A relative path would be taken relative to the picker's directory, which
    # says nothing about where the publisher worked.
    if path and (not path.startswith("/") or "\0" in path):
        raise MalformedPayload("the project path in the handoff is not a usable absolute path")
    return path


@dataclass(frozen=True)
class Payload:
    """What the blob of a record decrypts to."""

    session_id: str
    hostname: str = ""
    project: str = ""
    extra: Mapping[str, object] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        check_session_id(self.session_id)
        if not isinstance(self.hostname, str) or not isinstance(self.project, str):
            raise MalformedPayload("the hostname and project of a handoff must be text")
        check_project(self.project)
        if any(key in _KNOWN_KEYS for key in self.extra):
            raise ValueError("extra payload keys must not shadow h, p or s")
        # A read-only copy, so a frozen Payload really is immutable.
        object.__setattr__(self, "extra", MappingProxyType(dict(self.extra)))

    @property
    def carry(self) -> CarryInfo | None:
        """Where the session data can be fetched, for a --carry handoff."""
        value = self.extra.get(CARRY_KEY)
        return None if value is None else CarryInfo.from_json(value)

    def with_carry(self, carry: CarryInfo) -> Payload:
        return Payload(self.session_id, self.hostname, self.project, {**self.extra, CARRY_KEY: carry.to_json()})

    def to_plaintext(self) -> bytes:
        """Compact JSON, keys h, p, s first (the Rust order), then extra keys as read."""
        document: dict[str, object] = {"h": self.hostname, "p": self.project, "s": self.session_id}
        document.update(self.extra)
        return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    @classmethod
    def from_plaintext(cls, data: bytes) -> Payload:
        """Read the JSON payload or the legacy bare session id."""
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedPayload("the decrypted handoff is not UTF-8 text") from None
        document = _json_object(text)
        if document is None:
            # Legacy writers put the bare id in the blob. The Rust reader also falls
            # back to it for JSON that is not its object, so `123` is an id too.
            return cls(session_id=check_session_id(text.strip()))
        return cls._from_object(document)

    @classmethod
    def _from_object(cls, document: dict[str, object]) -> Payload:
        session_id = document.get("s")
        if not isinstance(session_id, str):
            raise MalformedPayload("the decrypted handoff has no session id")
        hostname = _optional_text(document, "h", "hostname")
        project = _optional_text(document, "p", "project")
        extra = {key: value for key, value in document.items() if key not in _KNOWN_KEYS}
        return cls(session_id=session_id, hostname=hostname, project=project, extra=extra)


@dataclass(frozen=True)
class CarryInfo:
    """A carried session: the torrent to fetch, its size and SHA-256, and where the publisher listens.

    Written as `{"i": info-hash, "n": size, "d": SHA-256, "a": ["host:port", ...]}`
    with both hashes in unpadded base64url: a DHT record has room for
    little, and this is the most compact of the readable forms.

    The picker says that the session arrived with a DHT item only the
    recipient can make, and that costs the record no room: the Ed25519 seed
    of its key is SHA-256("cclink carry ack\\0" + SHA-256 of the decrypted
    archive), which only the publisher and whoever decrypted the whole
    session know. After decrypting, the picker puts a BEP 44 mutable item
    (no salt) under that key's public key, its value `v` the 20-byte
    info-hash as a bencoded string; the publisher takes a verified item
    there as the proof that the recipient has the session (see
    flows/acknowledgement.py). A peer that merely claims to have the file,
    or downloads the ciphertext, which anyone who learns the info-hash can,
    cannot make it.
    """

    info_hash: bytes
    size: int
    sha256: bytes
    hints: tuple[str, ...] = ()

    MAX_HINTS = 8

    def __post_init__(self) -> None:
        if len(self.info_hash) != 20 or len(self.sha256) != 32:
            raise MalformedPayload("the carried session's info-hash or SHA-256 has the wrong length")
        if not isinstance(self.size, int) or isinstance(self.size, bool) or not 0 < self.size < 1 << 50:
            raise MalformedPayload("the carried session's size is not a sensible number of bytes")
        if len(self.hints) > self.MAX_HINTS or not all(isinstance(h, str) and 0 < len(h) <= 64 for h in self.hints):
            raise MalformedPayload("the carried session's address hints are malformed")

    def to_json(self) -> dict[str, object]:
        document: dict[str, object] = {"i": _b64url(self.info_hash), "n": self.size, "d": _b64url(self.sha256)}
        if self.hints:
            document["a"] = list(self.hints)
        return document

    @classmethod
    def from_json(cls, value: object) -> CarryInfo:
        if not isinstance(value, Mapping):
            raise MalformedPayload("the carried session's details are not an object")
        hints = value.get("a", [])
        if not isinstance(hints, list):
            raise MalformedPayload("the carried session's address hints are malformed")
        return cls(
            info_hash=_from_b64url(value.get("i"), "info-hash"),
            size=value.get("n"),  # type: ignore[arg-type]  # checked in __post_init__
            sha256=_from_b64url(value.get("d"), "SHA-256"),
            hints=tuple(hints),
        )


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _from_b64url(value: object, name: str) -> bytes:
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", value):
        raise MalformedPayload(f"the carried session's {name} is not base64url")
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        raise MalformedPayload(f"the carried session's {name} is not base64url") from None


def seal(payload: Payload, recipients: agecrypt.Recipients, tries: int = agecrypt.COMPACT_TRIES) -> bytes:
    """Encrypt a payload to one age recipient or several (the record's blob), as small as age allows.

    Several recipients make one age file with a stanza each: any of their
    identities opens it alone, so the Rust tool, which knows nothing of
    devices, still opens a handoff to its key and paired devices with its key.
    """
    return agecrypt.encrypt_compact(payload.to_plaintext(), recipients, tries)


def open_payload(blob: bytes, identity: agecrypt.Identity) -> Payload:
    """Decrypt a record's blob; CannotDecrypt when it is not for identity."""
    return Payload.from_plaintext(agecrypt.decrypt(blob, identity))


def _optional_text(document: Mapping[str, object], key: str, name: str) -> str:
    value = document.get(key, "")
    if not isinstance(value, str) or not strictjson.is_unicode(value):
        raise MalformedPayload(f"the {name} in the decrypted handoff is not text")
    return value


def _json_object(text: str) -> dict[str, object] | None:
    """The JSON object text holds, or None when it is not JSON or not an object."""
    try:
        document = strictjson.loads(text)
    except strictjson.RepeatedKey:
        raise MalformedPayload("the decrypted handoff repeats a JSON key") from None
    except ValueError:
        # ValueError also covers Python's limit on huge integers.
        return None
    return document if isinstance(document, dict) else None
