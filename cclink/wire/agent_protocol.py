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

`carry` hands the agent a carried session to offer (`Transfer`): the
signed handoff it renews, the signed revocation it puts once the recipient
acknowledged (burn), what the torrent must be, and the archive's SHA-256
that the acknowledgement key comes from; and each device item the command
put beside the handoff, renewed with it, with its own revocation for burn
(for those a carry request may be longer than the others: MAX_CARRY_LINE).
The encrypted file itself is named only by a transfer id: a directory in
the agent's own carry directory, never a path of the request's choosing.
The same object, in a file of its own there, lets the agent take the
transfer up again after a restart.

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
from cclink.wire.payload import SESSION_ID_PATTERN

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
MAX_TRANSFERS = 8  # carried sessions the agent offers at once
MAX_CARRY_SIZE = 16 << 30  # flows/carry.MAX_UNPACKED: no picker accepts more
MAX_DEVICE_ITEMS = 16  # device items a transfer carries beside its handoff
# Room for a carry request of MAX_DEVICE_ITEMS items of the largest value with their revocations (a test checks).
MAX_CARRY_LINE = 65536
MAX_TRANSFER_FILE = MAX_CARRY_LINE
TRANSFER_FILE_VERSION = 1
INFO_HASH_SIZE = 20
MAX_PORT = 65535
_HEX = re.compile(r"(?:[0-9a-f]{2})*")
TRANSFER_ID = re.compile(r"[0-9a-f]{32}")

Kind = Literal["handoff", "revocation"]
KINDS: tuple[Kind, ...] = ("handoff", "revocation")
# Offering until the recipient acknowledges; fetched (the acknowledgement came); revoked or replaced elsewhere;
# timed out (--carry-timeout or the TTL passed); failed (the file was not what the transfer said).
TransferState = Literal["offering", "fetched", "revoked", "timed out", "failed"]
TRANSFER_STATES: tuple[TransferState, ...] = ("offering", "fetched", "revoked", "timed out", "failed")


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


@dataclass(frozen=True)
class CarriedItem:
    """A device item put beside a carried handoff, as signed, and for burn its revocation signed in advance."""

    handoff: Item  # under the pairwise key (wire/device_items.py): renewed unchanged with the handoff
    revocation: Item | None  # its next seq, put once the recipient acknowledged


@dataclass(frozen=True)
class Transfer:
    """A carried session for the agent to offer until the recipient acknowledges it, or deadline."""

    session_id: str  # shown by status only: the record's payload, which names it, is encrypted
    handoff: Item  # the published handoff, signed: renewed unchanged while offering
    revocation: Item | None  # for burn: signed in advance at the next seq, put once acknowledged
    info_hash: bytes  # the torrent the file must make (what the record promises the picker)
    size: int
    sha256: bytes
    archive_sha256: bytes = field(repr=False)  # the acknowledgement key's seed comes from it
    deadline: int  # seconds since the epoch: --carry-timeout, or the TTL
    # The port the record's address hints name, to listen on if it is free; None from commands before it was sent.
    port: int | None = None
    # The device items put with the handoff; () from commands before they were sent.
    device_items: tuple[CarriedItem, ...] = ()


@dataclass(frozen=True)
class Carry:
    """Offer the file `carry.age` in the transfer_id directory of the agent's carry directory."""

    transfer_id: str
    transfer: Transfer


Request = Keep | Status | Stop | Unlock | GetKey | Lock | Carry
OPS = ("keep", "status", "stop", "unlock", "key", "lock", "carry")


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
class TransferEntry:
    """One carried session as status shows it."""

    transfer_id: str
    publisher: bytes
    session_id: str
    size: int
    peers: int
    uploaded: int  # bytes sent so far
    state: TransferState
    revoked: bool  # burn: the agent put the revocation once it was fetched
    deadline: int


@dataclass(frozen=True)
class Answer:
    ok: bool
    error: str | None = None  # when not ok
    pid: int | None = None  # status only
    kept: tuple[Entry, ...] | None = None  # status only
    seed: bytes | None = field(default=None, repr=False)  # key only
    unlocked_until: int | None = None  # status, unlock and key: until when a key is held
    forgot: bool | None = None  # lock only: whether a key was held
    transfers: tuple[TransferEntry, ...] | None = None  # status only


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
    if isinstance(request, Carry):
        return _line(
            {"v": VERSION, "op": "carry", "id": request.transfer_id, "transfer": _transfer_fields(request.transfer)}
        )
    op = "status" if isinstance(request, Status) else "stop" if isinstance(request, Stop) else "lock"
    return _line({"v": VERSION, "op": op})


def decode_request(line: bytes) -> Request:
    """One request line (with or without its newline); ProtocolError for anything else.

    Only a carry request may be longer than MAX_REQUEST_LINE (up to MAX_CARRY_LINE).
    """
    document = _document(line, MAX_CARRY_LINE)
    if document.get("v") != VERSION or type(document.get("v")) is not int:
        raise ProtocolError(f"the request is not of protocol version {VERSION}")
    op = document.get("op")
    if op != "carry" and len(line) > MAX_REQUEST_LINE:
        raise ProtocolError(f"the line is over {MAX_REQUEST_LINE} bytes")
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
    if op == "carry":
        _exact_keys(document, {"v", "op", "id", "transfer"})
        return Carry(transfer_id(document["id"]), _transfer(document["transfer"]))
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
    if answer.transfers is not None:
        document["transfers"] = [_transfer_entry_fields(entry) for entry in answer.transfers[:MAX_TRANSFERS]]
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
    transfers = document.get("transfers")
    if transfers is not None:
        if not isinstance(transfers, list) or len(transfers) > MAX_TRANSFERS:
            raise ProtocolError(f"the answer's transfers is not a list of at most {MAX_TRANSFERS}")
        transfers = tuple(_transfer_entry(entry) for entry in transfers)
    return Answer(
        ok,
        error,
        pid,
        entries,
        seed=None if seed is None else _hex(seed, "seed", SEED_SIZE, SEED_SIZE),
        unlocked_until=None if until is None else _int(until, "unlocked_until", 0, MAX_TIME),
        forgot=forgot,
        transfers=transfers,
    )


ANSWER_KEYS = {"ok", "error", "pid", "kept", "seed", "unlocked_until", "forgot", "transfers"}


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


TRANSFER_ENTRY_KEYS = {"id", "publisher", "session_id", "size", "peers", "uploaded", "state", "revoked", "deadline"}


def _transfer_entry_fields(entry: TransferEntry) -> dict[str, object]:
    return {
        "id": entry.transfer_id,
        "publisher": z32.encode(entry.publisher),
        "session_id": entry.session_id,
        "size": entry.size,
        "peers": entry.peers,
        "uploaded": entry.uploaded,
        "state": entry.state,
        "revoked": entry.revoked,
        "deadline": entry.deadline,
    }


def _transfer_entry(value: object) -> TransferEntry:
    if not isinstance(value, dict):
        raise ProtocolError("a transfer entry is not an object")
    _exact_keys(value, TRANSFER_ENTRY_KEYS)
    state, revoked = value["state"], value["revoked"]
    if state not in TRANSFER_STATES:
        raise ProtocolError(f"a transfer's state is not one of {', '.join(TRANSFER_STATES)}")
    if not isinstance(revoked, bool):
        raise ProtocolError("a transfer's revoked is not true or false")
    return TransferEntry(
        transfer_id=transfer_id(value["id"]),
        publisher=_publisher(value["publisher"]),
        session_id=_session_id(value["session_id"]),
        size=_int(value["size"], "size", 1, MAX_CARRY_SIZE),
        peers=_int(value["peers"], "peers", 0, MAX_NODES),
        uploaded=_int(value["uploaded"], "uploaded", 0, MAX_TIME),
        state=state,
        revoked=revoked,
        deadline=_int(value["deadline"], "deadline", 0, MAX_TIME),
    )


# --- transfers ------------------------------------------------------------------------

TRANSFER_KEYS = {"session_id", "handoff", "revocation", "info_hash", "size", "sha256", "archive_sha256", "deadline"}
# Absent from what commands before it sent, and from the transfer files agents before it kept.
OPTIONAL_TRANSFER_KEYS = frozenset({"port", "device_items"})
CARRIED_ITEM_KEYS = {"handoff", "revocation"}


def transfer_id(value: object) -> str:
    """A transfer's id: 32 lower-case hex digits, so that it names one directory and nothing else."""
    if not isinstance(value, str) or TRANSFER_ID.fullmatch(value) is None:
        raise ProtocolError("the transfer id is not 32 lower-case hex digits")
    return value


def _transfer_fields(transfer: Transfer) -> dict[str, object]:
    fields: dict[str, object] = {
        "session_id": transfer.session_id,
        "handoff": _item_fields(transfer.handoff),
        "revocation": None if transfer.revocation is None else _item_fields(transfer.revocation),
        "info_hash": transfer.info_hash.hex(),
        "size": transfer.size,
        "sha256": transfer.sha256.hex(),
        "archive_sha256": transfer.archive_sha256.hex(),
        "deadline": transfer.deadline,
    }
    if transfer.port is not None:
        fields["port"] = transfer.port
    if transfer.device_items:  # left out when there are none, as a command before them sent it
        fields["device_items"] = [
            {
                "handoff": _item_fields(carried.handoff),
                "revocation": None if carried.revocation is None else _item_fields(carried.revocation),
            }
            for carried in transfer.device_items
        ]
    return fields


def _transfer(value: object) -> Transfer:
    if not isinstance(value, dict):
        raise ProtocolError("the transfer is not an object")
    _exact_keys(value, TRANSFER_KEYS, optional=OPTIONAL_TRANSFER_KEYS)
    revocation = value["revocation"]
    return Transfer(
        session_id=_session_id(value["session_id"]),
        handoff=_nested_item(value["handoff"], "handoff"),
        revocation=None if revocation is None else _nested_item(revocation, "revocation"),
        info_hash=_hex(value["info_hash"], "info_hash", INFO_HASH_SIZE, INFO_HASH_SIZE),
        size=_int(value["size"], "size", 1, MAX_CARRY_SIZE),
        sha256=_hex(value["sha256"], "sha256", SHA256_SIZE, SHA256_SIZE),
        archive_sha256=_hex(value["archive_sha256"], "archive_sha256", SHA256_SIZE, SHA256_SIZE),
        deadline=_int(value["deadline"], "deadline", 0, MAX_TIME),
        port=_int(value["port"], "port", 1, MAX_PORT) if "port" in value else None,
        device_items=_carried_items(value["device_items"]) if "device_items" in value else (),
    )


def _carried_items(value: object) -> tuple[CarriedItem, ...]:
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_DEVICE_ITEMS:
        raise ProtocolError(f"the transfer's device items are not a list of 1 to {MAX_DEVICE_ITEMS}")
    carried = []
    for entry in value:
        if not isinstance(entry, dict):
            raise ProtocolError("a transfer's device item is not an object")
        _exact_keys(entry, CARRIED_ITEM_KEYS)
        revocation = entry["revocation"]
        carried.append(
            CarriedItem(
                _nested_item(entry["handoff"], "device item"),
                None if revocation is None else _nested_item(revocation, "device item's revocation"),
            )
        )
    return tuple(carried)


def _nested_item(value: object, name: str) -> Item:
    if not isinstance(value, dict):
        raise ProtocolError(f"the transfer's {name} is not an item")
    _exact_keys(value, ITEM_KEYS)
    return _item(value)


def _session_id(value: object) -> str:
    if not isinstance(value, str) or SESSION_ID_PATTERN.fullmatch(value) is None:
        raise ProtocolError("the session id is not 1-128 letters, digits, '_', '-' or '.'")
    return value


def encode_transfer_file(transfer: Transfer) -> bytes:
    """What the agent keeps of a transfer beside its file, to take it up again after a restart."""
    document = {"version": TRANSFER_FILE_VERSION, "transfer": _transfer_fields(transfer)}
    return json.dumps(document, separators=(",", ":")).encode() + b"\n"


def decode_transfer_file(data: bytes) -> Transfer:
    """The transfer a file of the agent's holds; ProtocolError for anything else."""
    document = _document(data, MAX_TRANSFER_FILE)
    if document.get("version") != TRANSFER_FILE_VERSION or type(document.get("version")) is not int:
        raise ProtocolError(f"the transfer file is not of version {TRANSFER_FILE_VERSION}")
    _exact_keys(document, {"version", "transfer"})
    return _transfer(document["transfer"])


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


def _exact_keys(document: dict[str, object], keys: set[str], *, optional: frozenset[str] = frozenset()) -> None:
    if not keys <= set(document) <= keys | optional:
        also = f" (and maybe {', '.join(sorted(optional))})" if optional else ""
        raise ProtocolError(f"the fields are not {', '.join(sorted(keys))}{also}")


def _known_keys(document: dict[str, object], keys: set[str]) -> None:
    if not set(document) <= keys:
        raise ProtocolError(f"unknown fields: only {', '.join(sorted(keys))} are allowed")
