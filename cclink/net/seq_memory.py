"""The rollback guard's memory: per publisher key, the highest seq seen verified (docs/wire.md §11).

Any item a publisher ever signed verifies forever, and DHT nodes drop an
item about two hours after its last put. Once a revocation (or a newer
record) is gone, anyone can put the older record again and it would be
picked up until it expires. So cclink remembers, per publisher key, the
highest seq it has seen in a verified record or revocation, or signed
itself, and refuses anything lower (rendezvous.py).

The file lives in files.state_dir(), not in the cache: losing it costs
only the protection, which falls back to that of a machine that never saw
the key. It is read as hostile input (any damage means starting empty, and
the next write replaces it), bounded to MAX_KEYS keys (the least recently
remembered go first), and written atomically, 0600, under a lock so that
concurrent commands merge what they learnt instead of overwriting it.

The same kind of file, a second one, remembers the seq of the last handoff
this machine picked up per publisher: what `pickup --wait` waits to see
surpassed.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from pathlib import Path

from cclink.errors import WireError
from cclink.local import files
from cclink.wire import z32

FILE_NAME = "seen-seqs.json"
# The seq of the last handoff picked up per publisher, which `pickup --wait` waits to see surpassed.
PICKED_UP_FILE_NAME = "picked-up-seqs.json"
FORMAT_VERSION = 1
MAX_KEYS = 1000
# An entry is a 52-character key and a 19-digit seq; anything much larger was not written by cclink.
MAX_FILE_SIZE = MAX_KEYS * 128
MAX_SEQ = 2**63  # BEP 44's seq as libtorrent keeps it (krpc.MAX_SEQ)
PUBLIC_KEY_SIZE = 32
NONE_SEEN = -1
LOCK_WAIT = 2.0


class SeqMemory:
    """Highest seq seen per publisher key (raw 32-byte Ed25519 keys), kept in a file, or only in memory."""

    def __init__(self, path: Path | None, *, capacity: int = MAX_KEYS) -> None:
        self.path = path
        self.capacity = capacity
        self._seqs: OrderedDict[bytes, int] | None = None  # least recently remembered first; loaded on first use
        # Lookups under several keys run in threads (pickup with paired devices), each remembering what it saw.
        self._lock = threading.RLock()

    @classmethod
    def in_state_dir(cls) -> SeqMemory:
        """The user's memory, in files.state_dir()."""
        return cls(files.state_dir() / FILE_NAME)

    @classmethod
    def of_pickups(cls) -> SeqMemory:
        """Per publisher, the seq of the newest handoff this machine picked up, in files.state_dir()."""
        return cls(files.state_dir() / PICKED_UP_FILE_NAME)

    @classmethod
    def in_memory(cls) -> SeqMemory:
        """A memory of this process alone, for tests and the demo."""
        return cls(None)

    def floor(self, public_key: bytes) -> int:
        """The highest seq seen under public_key, or NONE_SEEN."""
        return self._loaded().get(public_key, NONE_SEEN)

    def remember(self, public_key: bytes, seq: int) -> None:
        """Raise public_key's floor to seq (never lower it) and keep the key as the most recent.

        A file that cannot be written (a read-only home, a full disk) leaves
        the memory to this process: the command itself must not fail for it.
        """
        if len(public_key) != PUBLIC_KEY_SIZE or not 0 <= seq < MAX_SEQ:
            return
        with self._lock:
            self._remember(public_key, seq)

    def _remember(self, public_key: bytes, seq: int) -> None:
        if self.path is None:
            self._seqs = _updated(self._loaded(), public_key, seq, self.capacity)
            return
        try:
            # Past LOCK_WAIT it goes ahead unlocked: a command stuck holding the lock must not hang
            # every other one, and the worst is a lost update.
            with files.locked(self.path.with_suffix(".lock"), wait=LOCK_WAIT):
                # Another command may have written since this one read.
                current = _read(self.path, self.capacity)
                updated = _updated(current, public_key, seq, self.capacity)
                if updated != current:  # OrderedDicts compare their order too
                    # Not fsynced: a crash loses at most the newest floor, and every command writes here.
                    files.write_private(self.path, _encode(updated), durable=False)
        except OSError:
            updated = _updated(self._loaded(), public_key, seq, self.capacity)
        self._seqs = updated

    def _loaded(self) -> OrderedDict[bytes, int]:
        with self._lock:
            if self._seqs is None:
                self._seqs = _read(self.path, self.capacity) if self.path is not None else OrderedDict()
            return self._seqs


def _updated(seqs: OrderedDict[bytes, int], public_key: bytes, seq: int, capacity: int) -> OrderedDict[bytes, int]:
    updated = OrderedDict(seqs)
    updated[public_key] = max(updated.pop(public_key, NONE_SEEN), seq)
    while len(updated) > capacity:
        updated.popitem(last=False)
    return updated


# --- the file -------------------------------------------------------------------------


def _encode(seqs: OrderedDict[bytes, int]) -> bytes:
    entries = [[z32.encode(key), seq] for key, seq in seqs.items()]
    return json.dumps({"version": FORMAT_VERSION, "seqs": entries}, separators=(",", ":")).encode() + b"\n"


def _read(path: Path, capacity: int) -> OrderedDict[bytes, int]:
    """What the file holds; empty when it is missing, unreadable or damaged (it is replaced on the next write)."""
    data = files.read_bounded(path, MAX_FILE_SIZE)
    if data is None:
        return OrderedDict()
    try:
        document = json.loads(data)
    except (ValueError, RecursionError):
        return OrderedDict()
    entries = document.get("seqs") if isinstance(document, dict) and document.get("version") == FORMAT_VERSION else None
    if not isinstance(entries, list):
        return OrderedDict()
    seqs: OrderedDict[bytes, int] = OrderedDict()
    for entry in entries:
        parsed = _entry(entry)
        if parsed is not None:
            key, seq = parsed
            seqs[key] = max(seqs.pop(key, NONE_SEEN), seq)  # in place: _updated's copy per entry is quadratic
    while len(seqs) > capacity:
        seqs.popitem(last=False)
    return seqs


def _entry(entry: object) -> tuple[bytes, int] | None:
    """A [z32 key, seq] pair, or None for anything else (one bad entry costs only itself)."""
    if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str)):
        return None
    key, seq = entry
    # bool is an int to Python, not to JSON.
    if type(seq) is not int or not 0 <= seq < MAX_SEQ:
        return None
    try:
        raw = z32.decode(key)
    except WireError:
        return None
    return (raw, seq) if len(raw) == PUBLIC_KEY_SIZE else None
