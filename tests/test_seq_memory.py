"""The rollback guard's memory (cclink.net.seq_memory) and where it lives (files.state_dir).

The memory is a real file under a temp directory.
"""

from __future__ import annotations

import json
import os
import stat
import sys
import threading
from pathlib import Path

import pytest

from cclink.local import files
from cclink.net import seq_memory
from cclink.net.seq_memory import SeqMemory
from cclink.wire import z32
from cclink.wire.keys import Identity

SEQ = 1_712_345_678_901_234  # a seq as pkarr signs it: the clock in microseconds


def a_key() -> bytes:
    return Identity.generate().public_key.raw


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "cclink" / seq_memory.FILE_NAME


def stored(path: Path) -> dict[bytes, int]:
    """What the file holds, read independently of cclink.net.seq_memory."""
    document = json.loads(path.read_text())
    return {z32.decode(key): seq for key, seq in document["seqs"]}


def temp_files(directory: Path) -> list[str]:
    return [name for name in os.listdir(directory) if name.endswith(".tmp")]


# --- remembering ------------------------------------------------------------------------


def test_a_seq_remembered_is_the_floor_for_the_next_command(path: Path) -> None:
    key, other = a_key(), a_key()
    SeqMemory(path).remember(key, SEQ)

    later = SeqMemory(path)

    assert later.floor(key) == SEQ
    assert later.floor(other) == seq_memory.NONE_SEEN


def test_a_floor_is_never_lowered(path: Path) -> None:
    key = a_key()
    memory = SeqMemory(path)
    memory.remember(key, SEQ)
    memory.remember(key, SEQ - 1)

    assert memory.floor(key) == SEQ
    assert stored(path) == {key: SEQ}


def test_commands_writing_at_once_keep_what_each_learnt(path: Path) -> None:
    keys = [a_key() for _ in range(8)]
    memories = [SeqMemory(path) for _ in keys]
    for memory in memories:
        memory.floor(keys[0])  # each has read the file before any of them writes

    threads = [
        threading.Thread(target=memory.remember, args=(key, SEQ)) for memory, key in zip(memories, keys, strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert stored(path) == {key: SEQ for key in keys}


def test_a_memory_in_memory_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(files, "state_dir", lambda: tmp_path / "state")
    memory = SeqMemory.in_memory()
    key = a_key()

    memory.remember(key, SEQ)

    assert memory.floor(key) == SEQ
    assert list(tmp_path.iterdir()) == []


# --- the file: private, atomic, bounded ----------------------------------------------------------


def test_the_file_is_private_and_its_directories_too(path: Path) -> None:
    umask = os.umask(0o022)  # the umask of most users, which would leave it readable by all
    try:
        SeqMemory(path).remember(a_key(), SEQ)
    finally:
        os.umask(umask)

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_the_file_is_replaced_whole_never_rewritten_in_place(path: Path) -> None:
    """A reader (another command) holding the old file reads it whole; no temporary file is left."""
    first, second = a_key(), a_key()
    memory = SeqMemory(path)
    memory.remember(first, SEQ)
    before = path.read_bytes()

    inode = path.stat().st_ino
    with open(path, "rb") as reader:
        memory.remember(second, SEQ)
        assert reader.read() == before

    assert path.stat().st_ino != inode
    assert stored(path) == {first: SEQ, second: SEQ}
    assert temp_files(path.parent) == []


def test_only_the_most_recently_remembered_keys_are_kept(path: Path) -> None:
    keys = [a_key() for _ in range(7)]
    memory = SeqMemory(path, capacity=4)
    for key in keys:
        memory.remember(key, SEQ)
    memory.remember(keys[3], SEQ + 1)  # remembered again: the most recent now

    kept = stored(path)

    assert list(kept) == [keys[4], keys[5], keys[6], keys[3]]
    assert SeqMemory(path, capacity=4).floor(keys[0]) == seq_memory.NONE_SEEN


def test_a_full_file_stays_within_its_size_bound(path: Path) -> None:
    memory = SeqMemory(path, capacity=seq_memory.MAX_KEYS)
    # Written directly, as many keys as the bound allows at the longest seq, then one more remembered.
    entries = [[z32.encode(os.urandom(32)), seq_memory.MAX_SEQ - 1] for _ in range(seq_memory.MAX_KEYS)]
    files.write_private(path, json.dumps({"version": seq_memory.FORMAT_VERSION, "seqs": entries}).encode())

    memory.remember(a_key(), seq_memory.MAX_SEQ - 1)

    assert len(stored(path)) == seq_memory.MAX_KEYS
    assert path.stat().st_size <= seq_memory.MAX_FILE_SIZE


# --- a damaged or hostile file -------------------------------------------------------------------


DAMAGED = {
    "not-json": b"\x00\xff this is not JSON",
    "truncated": b'{"version":1,"seqs":[["',
    "a-list": b"[1, 2, 3]",
    "another-version": b'{"version":2,"seqs":[]}',
    "seqs-not-a-list": b'{"version":1,"seqs":{"a":1}}',
    "deeply-nested": b"[" * 50_000 + b"]" * 50_000,
    "huge-number": b'{"version":1,"seqs":[["k",' + b"9" * 5000 + b"]]}",
    "too-large": b'{"version":1,"seqs":[' + b" " * (seq_memory.MAX_FILE_SIZE + 1) + b"]}",
}


@pytest.mark.parametrize("content", DAMAGED.values(), ids=DAMAGED.keys())
def test_a_damaged_file_is_ignored_then_replaced(path: Path, content: bytes) -> None:
    files.write_private(path, content)
    key = a_key()
    memory = SeqMemory(path)

    assert memory.floor(key) == seq_memory.NONE_SEEN
    memory.remember(key, SEQ)

    assert stored(path) == {key: SEQ}


def test_bad_entries_cost_only_themselves(path: Path) -> None:
    good, other = a_key(), a_key()
    entries = [
        [z32.encode(good), SEQ],
        [z32.encode(other), -1],
        [z32.encode(other), seq_memory.MAX_SEQ],
        [z32.encode(other), True],
        [z32.encode(other), 1.5],
        [z32.encode(other), str(SEQ)],
        ["not z-base-32!", SEQ],
        [z32.encode(os.urandom(20)), SEQ],  # not a public key's length
        [z32.encode(other)],
        "a string",
    ]
    files.write_private(path, json.dumps({"version": seq_memory.FORMAT_VERSION, "seqs": entries}).encode())

    memory = SeqMemory(path)

    assert memory.floor(good) == SEQ
    assert memory.floor(other) == seq_memory.NONE_SEEN


@pytest.mark.parametrize("kind", ["directory", "fifo", "symlink"])
def test_something_else_in_place_of_the_file_is_ignored(path: Path, kind: str) -> None:
    """Never blocks on a FIFO and never follows a link to a file of someone's choosing."""
    path.parent.mkdir(parents=True)
    elsewhere = path.parent / "elsewhere.json"
    key = a_key()
    elsewhere.write_text(json.dumps({"version": seq_memory.FORMAT_VERSION, "seqs": [[z32.encode(key), SEQ]]}))
    if kind == "directory":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    else:
        path.symlink_to(elsewhere)

    assert SeqMemory(path).floor(key) == seq_memory.NONE_SEEN


def test_a_file_that_cannot_be_written_leaves_the_memory_to_the_command(tmp_path: Path) -> None:
    """A state directory that cannot be made (here a file is in its way; as well a read-only home) costs no failure."""
    (tmp_path / "state").write_text("a file where a directory should be")
    path = tmp_path / "state" / "cclink" / seq_memory.FILE_NAME
    key = a_key()
    memory = SeqMemory(path)

    memory.remember(key, SEQ)

    assert memory.floor(key) == SEQ
    assert (tmp_path / "state").read_text() == "a file where a directory should be"


# --- where it lives --------------------------------------------------------------------------------


def test_state_dir_follows_xdg_state_home_when_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert files.state_dir() == tmp_path / "xdg" / "cclink"

    monkeypatch.setenv("XDG_STATE_HOME", "relative/state")
    assert files.state_dir() == tmp_path / ".local" / "state" / "cclink"

    monkeypatch.delenv("XDG_STATE_HOME")
    assert files.state_dir() == tmp_path / ".local" / "state" / "cclink"


def test_state_dir_on_macos_is_application_support(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "darwin")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))

    assert files.state_dir() == tmp_path / "Library" / "Application Support" / "cclink"


def test_the_default_memory_lives_in_the_state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(files, "state_dir", lambda: tmp_path / "state")
    key = a_key()

    SeqMemory.in_state_dir().remember(key, SEQ)

    assert stored(tmp_path / "state" / seq_memory.FILE_NAME) == {key: SEQ}


def test_threads_remembering_different_keys_lose_none():
    # Pickup looks up several keys at once (paired devices), each thread remembering what it saw.
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible, to make a lost update likely
    try:
        memory = SeqMemory.in_memory()
        keys = [os.urandom(32) for _ in range(400)]
        threads = [
            threading.Thread(target=lambda part: [memory.remember(key, 5) for key in part], args=(keys[i::8],))
            for i in range(8)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(previous)
    assert [memory.floor(key) for key in keys] == [5] * len(keys)
