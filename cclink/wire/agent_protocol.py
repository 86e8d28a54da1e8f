"""The agent's protocol and its kept list's file (docs/wire.md §10a and §11).

A client connects to the agent's Unix socket, writes one request as one JSON
object on one line, reads one answer the same way, and the connection ends.
Both sides read what they are given as hostile input: lines, strings and
lists are bounded before anything is parsed, the JSON is read strictly
(strictjson: no repeated keys, NaN or lone surrogates), every field is
checked for type and range, and unknown fields are refused.

The kept list's file holds the same items as keep requests, so the agent
resumes after a reboot exactly what it was handed; there, one bad entry
costs only itself.

`unlock`, `key` and `lock` carry the key `cclink unlock` hands the agent:
its 32-byte seed, bound to the SHA-256 of the key file it was opened from.
The seed is decoded into a bytearray, which the agent overwrites when it
forgets the key; the line and the hex string it came in are copies Python
gives no way to overwrite (docs/design.md, "The unlocked key").
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Literal

from cclink.errors import WireError
from cclink.wire import strictjson, z32

VERSION = 1
MAX_REQUEST_LINE = 4096  # a keep request of the largest item takes about 2,300 bytes
MAX_KEPT = 64  # publisher keys the agent keeps an item for
MAX_ANSWER_LINE = 65536  # a status answer of MAX_KEPT entries takes about 16 KiB
MAX_ERROR = 200  # characters of an answer's error sentence
MAX_VALUE = 1000  # BEP 44's bound on an item's value
SIGNATURE_SIZE = 64
PUBLIC_KEY_SIZE = 32
MAX_SEQ = 2**63  # BEP 44's seq as libtorrent keeps it
MAX_TIME = 2**53  # seconds since the epoch: any time a JSON number holds exactly
MAX_UNLOCK_SECONDS = 86400  # a key is held a day at most after `cclink unlock`
MAX_NODES = 1000  # nodes reported holding an item
MAX_PID = 2**31
SEED_SIZE = 32
SHA256_SIZE = 32
KEPT_FILE_VERSION = 1
MAX_KEPT_FILE = MAX_KEPT * MAX_REQUEST_LINE
_HEX = re.compile(r"(?:[0-9a-f]{2})*")

Kind = Literal["handoff", "revocation"]
KINDS: tuple[Kind, ...] = ("handoff", "revocation")


class ProtocolError(WireError):
    """A request, answer or kept-list entry that is not what this protocol allows."""


@dataclass(frozen=True)
class Item:
    """A signed BEP 44 item to keep alive, and until when: its record's expiry (a revocation's: the revoked one's)."""

    publisher: bytes  # raw Ed25519 public key
    seq: int
    signature: bytes
    value: bytes
    expires_at: int


@dataclass(frozen=True)
class Keep:
    item: Item


@dataclass(frozen=True)
class Status:
    pass


@dataclass(frozen=True)
class Stop:
    pass


@dataclass(frozen=True)
class Unlock:
    """Hold this key for seconds from when the agent gets it (a day at most)."""

    seed: bytearray = field(repr=False)  # the Ed25519 seed; the agent takes it and overwrites it when it forgets
    key_file_sha256: bytes
    seconds: int


@dataclass(frozen=True)
class GetKey:
    """The held key's seed, if it was opened from a key file with these bytes' SHA-256 (the `key` op)."""

    key_file_sha256: bytes


@dataclass(frozen=True)
class Lock:
    pass


Request = Keep | Status | Stop | Unlock | GetKey | Lock
OPS = ("keep", "status", "stop", "unlock", "key", "lock")


@dataclass(frozen=True)
class Entry:
    """One kept item as status shows it."""

    publisher: bytes
    seq: int
    kind: Kind
    expires_at: int
    nodes: int | None  # how many nodes acknowledged the last put; None before the agent's first
    last_put: int | None
    next_put: int


@dataclass(frozen=True)
class Answer:
    ok: bool
    error: str | None = None  # when not ok
    pid: int | None = None  # status only
    kept: tuple[Entry, ...] | None = None  # status only
    seed: bytes | None = field(default=None, repr=False)  # key only
    unlocked_until: int | None = None  # status, unlock and key: until when a key is held
    forgot: bool | None = None  # lock only: whether a key was held


# --- requests -------------------------------------------------------------------------


def encode_request(request: Request) -> bytes:
    if isinstance(request, Keep):
        return _line({"v": VERSION, "op": "keep", **_item_fields(request.item)})
    if isinstance(request, Unlock):
        return _line(
            {
                "v": VERSION,
                "op": "unlock",
                "seed": request.seed.hex(),
                "key_file_sha256": request.key_file_sha256.hex(),
                "seconds": request.seconds,
            }
        )
    if isinstance(request, GetKey):
        return _line({"v": VERSION, "op": "key", "key_file_sha256": request.key_file_sha256.hex()})
    op = "status" if isinstance(request, Status) else "stop" if isinstance(request, Stop) else "lock"
    return _line({"v": VERSION, "op": op})


def decode_request(line: bytes) -> Request:
    """One request line (with or without its newline); ProtocolError for anything else."""
    document = _document(line, MAX_REQUEST_LINE)
    if document.get("v") != VERSION or type(document.get("v")) is not int:
        raise ProtocolError(f"the request is not of protocol version {VERSION}")
    op = document.get("op")
    if op == "keep":
        _exact_keys(document, {"v", "op", *ITEM_KEYS})
        return Keep(_item(document))
    if op == "unlock":
        _exact_keys(document, {"v", "op", "seed", "key_file_sha256", "seconds"})
        return Unlock(
            bytearray(_hex(document["seed"], "seed", SEED_SIZE, SEED_SIZE)),
            _hex(document["key_file_sha256"], "key_file_sha256", SHA256_SIZE, SHA256_SIZE),
            _int(document["seconds"], "seconds", 1, MAX_UNLOCK_SECONDS),
        )
    if op == "key":
        _exact_keys(document, {"v", "op", "key_file_sha256"})
        return GetKey(_hex(document["key_file_sha256"], "key_file_sha256", SHA256_SIZE, SHA256_SIZE))
    if op in ("status", "stop", "lock"):
        _exact_keys(document, {"v", "op"})
        return Status() if op == "status" else Stop() if op == "stop" else Lock()
    raise ProtocolError(f"the request's op is not one of {', '.join(OPS)}")


# --- answers --------------------------------------------------------------------------


def encode_answer(answer: Answer) -> bytes:
    document: dict[str, object] = {"ok": answer.ok}
    if answer.error is not None:
        document["error"] = answer.error[:MAX_ERROR]
    if answer.pid is not None:
        document["pid"] = answer.pid
    if answer.kept is not None:
        document["kept"] = [_entry_fields(entry) for entry in answer.kept[:MAX_KEPT]]
    if answer.seed is not None:
        document["seed"] = answer.seed.hex()
    if answer.unlocked_until is not None:
        document["unlocked_until"] = answer.unlocked_until
    if answer.forgot is not None:
        document["forgot"] = answer.forgot
    return _line(document)


def decode_answer(line: bytes) -> Answer:
    document = _document(line, MAX_ANSWER_LINE)
    _known_keys(document, ANSWER_KEYS)
    ok = document.get("ok")
    if not isinstance(ok, bool):
        raise ProtocolError("the answer has no ok")
    error = document.get("error")
    if error is not None and not (isinstance(error, str) and len(error) <= MAX_ERROR):
        raise ProtocolError("the answer's error is not a short string")
    pid = document.get("pid")
    if pid is not None:
        pid = _int(pid, "pid", 1, MAX_PID)
    kept = document.get("kept")
    entries = None
    if kept is not None:
        if not isinstance(kept, list) or len(kept) > MAX_KEPT:
            raise ProtocolError(f"the answer's kept is not a list of at most {MAX_KEPT}")
        entries = tuple(_entry(entry) for entry in kept)
    seed = document.get("seed")
    until = document.get("unlocked_until")
    forgot = document.get("forgot")
    if forgot is not None and not isinstance(forgot, bool):
        raise ProtocolError("the answer's forgot is not true or false")
    return Answer(
        ok,
        error,
        pid,
        entries,
        seed=None if seed is None else _hex(seed, "seed", SEED_SIZE, SEED_SIZE),
        unlocked_until=None if until is None else _int(until, "unlocked_until", 0, MAX_TIME),
        forgot=forgot,
    )


ANSWER_KEYS = {"ok", "error", "pid", "kept", "seed", "unlocked_until", "forgot"}


ENTRY_KEYS = {"publisher", "seq", "kind", "expires_at", "nodes", "last_put", "next_put"}


def _entry_fields(entry: Entry) -> dict[str, object]:
    return {
        "publisher": z32.encode(entry.publisher),
        "seq": entry.seq,
        "kind": entry.kind,
        "expires_at": entry.expires_at,
        "nodes": entry.nodes,
        "last_put": entry.last_put,
        "next_put": entry.next_put,
    }


def _entry(value: object) -> Entry:
    if not isinstance(value, dict):
        raise ProtocolError("a kept entry is not an object")
    _exact_keys(value, ENTRY_KEYS)
    kind = value["kind"]
    if kind not in KINDS:
        raise ProtocolError("a kept entry's kind is not handoff or revocation")
    nodes, last_put = value["nodes"], value["last_put"]
    return Entry(
        publisher=_publisher(value["publisher"]),
        seq=_int(value["seq"], "seq", 0, MAX_SEQ - 1),
        kind=kind,
        expires_at=_int(value["expires_at"], "expires_at", 0, MAX_TIME),
        nodes=None if nodes is None else _int(nodes, "nodes", 0, MAX_NODES),
        last_put=None if last_put is None else _int(last_put, "last_put", 0, MAX_TIME),
        next_put=_int(value["next_put"], "next_put", 0, MAX_TIME),
    )


# --- the kept list's file -------------------------------------------------------------


def encode_kept(items: list[Item]) -> bytes:
    """The kept list's file: the newest MAX_KEPT items."""
    entries = [_item_fields(item) for item in items[-MAX_KEPT:]]
    return json.dumps({"version": KEPT_FILE_VERSION, "kept": entries}, separators=(",", ":")).encode() + b"\n"


def decode_kept(data: bytes) -> list[Item]:
    """The items of a kept list's file; an empty list for a damaged file, and a bad entry is left out alone."""
    if len(data) > MAX_KEPT_FILE:
        return []
    try:
        document = strictjson.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return []
    if not isinstance(document, dict) or document.get("version") != KEPT_FILE_VERSION:
        return []
    entries = document.get("kept")
    if not isinstance(entries, list):
        return []
    items = []
    for entry in entries[-MAX_KEPT:]:
        try:
            if not isinstance(entry, dict):
                raise ProtocolError("not an object")
            _exact_keys(entry, ITEM_KEYS)
            items.append(_item(entry))
        except ProtocolError:
            continue
    return items


# --- items ----------------------------------------------------------------------------

ITEM_KEYS = {"publisher", "seq", "signature", "value", "expires_at"}


def _item_fields(item: Item) -> dict[str, object]:
    return {
        "publisher": z32.encode(item.publisher),
        "seq": item.seq,
        "signature": item.signature.hex(),
        "value": item.value.hex(),
        "expires_at": item.expires_at,
    }


def _item(fields: dict[str, object]) -> Item:
    return Item(
        publisher=_publisher(fields["publisher"]),
        seq=_int(fields["seq"], "seq", 0, MAX_SEQ - 1),
        signature=_hex(fields["signature"], "signature", SIGNATURE_SIZE, SIGNATURE_SIZE),
        value=_hex(fields["value"], "value", 0, MAX_VALUE),
        expires_at=_int(fields["expires_at"], "expires_at", 0, MAX_TIME),
    )


def _publisher(value: object) -> bytes:
    if not isinstance(value, str) or len(value) != 52:
        raise ProtocolError("publisher is not a z-base-32 public key")
    try:
        raw = z32.decode(value)
    except WireError:
        raise ProtocolError("publisher is not z-base-32") from None
    if len(raw) != PUBLIC_KEY_SIZE or z32.encode(raw) != value:
        raise ProtocolError("publisher is not a 32-byte key")
    return raw


def _hex(value: object, name: str, least: int, most: int) -> bytes:
    """Lower-case hex of least to most bytes, one spelling only."""
    if not isinstance(value, str) or not least * 2 <= len(value) <= most * 2 or not _HEX.fullmatch(value):
        raise ProtocolError(f"{name} is not lower-case hex of {least} to {most} bytes")
    return bytes.fromhex(value)


def _int(value: object, name: str, least: int, most: int) -> int:
    # bool is an int to Python, not to JSON.
    if type(value) is not int or not least <= value <= most:
        raise ProtocolError(f"{name} is not a whole number from {least} to {most}")
    return value


# --- lines ----------------------------------------------------------------------------


def _line(document: dict[str, object]) -> bytes:
    return json.dumps(document, separators=(",", ":"), ensure_ascii=True).encode("ascii") + b"\n"


def _document(line: bytes, limit: int) -> dict[str, object]:
    if len(line) > limit:
        raise ProtocolError(f"the line is over {limit} bytes")
    if line.endswith(b"\n"):
        line = line[:-1]
    if b"\n" in line:
        raise ProtocolError("more than one line")
    try:
        document = strictjson.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ProtocolError("the line is not one JSON object") from None
    if not isinstance(document, dict):
        raise ProtocolError("the line is not one JSON object")
    return document


def _exact_keys(document: dict[str, object], keys: set[str]) -> None:
    if set(document) != keys:
        raise ProtocolError(f"the fields are not {', '.join(sorted(keys))}")


def _known_keys(document: dict[str, object], keys: set[str]) -> None:
    if not set(document) <= keys:
        raise ProtocolError(f"unknown fields: only {', '.join(sorted(keys))} are allowed")
