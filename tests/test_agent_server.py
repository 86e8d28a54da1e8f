"""The agent's process in this one (net/agent_server.py, local/runtime.py): its socket, who may talk to it, garbage on
the socket, stop, ending when nothing is left, a second agent, where its socket goes, and the key it holds
after `cclink unlock` (given, asked for, locked, expired, refused to another user, forgotten when it ends).

The agent serves in a thread here with the real keeping over MemoryItems; clients are real Unix sockets.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.keepers import handoff_item
from support.records import MemoryItems

from cclink.errors import UsageError
from cclink.flows.keeping import Keeping
from cclink.local import runtime
from cclink.net import agent, agent_server
from cclink.net.endpoints import PUBLIC, Network
from cclink.wire import agent_protocol
from cclink.wire.agent_protocol import MAX_REQUEST_LINE, GetKey, Keep, Lock, Status, Stop, Unlock
from cclink.wire.keys import Identity

NOBODY = 65534
GUARD = 30.0  # seconds: a guard against hangs, never a measurement


class Running:
    """An agent serving place in a thread of this process."""

    def __init__(
        self,
        place: agent.Place,
        items: MemoryItems,
        grace: float = agent_server.GRACE,
        key: agent_server.UnlockedKey | None = None,
    ) -> None:
        self.place = place
        self.keeping = Keeping(items, lambda kept: agent.save_kept(place, kept))
        self.result: list[int | None] = []
        self.thread = threading.Thread(
            target=lambda: self.result.append(agent_server.serve(place, self.keeping, grace=grace, key=key)),
            daemon=True,
        )
        self.thread.start()

    def answering(self) -> agent_protocol.Answer:
        answer = agent.wait_for(self.place, timeout=GUARD)
        assert answer is not None, "the agent never answered"
        return answer

    def ended(self) -> int | None:
        self.thread.join(GUARD)
        assert not self.thread.is_alive(), "the agent did not end"
        return self.result[0]


@pytest.fixture
def place() -> Iterator[agent.Place]:
    root = Path(tempfile.mkdtemp(prefix="ccag", dir="/tmp"))  # short: AF_UNIX's limit
    directory = root / "cclink"
    yield agent.Place(
        directory / "agent.sock",
        directory / "agent.lock",
        root / "state" / "kept.json",
        root / "agent.log",
        root / "state" / "carry",
    )
    agent.ask(
        agent.Place(directory / "agent.sock", directory / "agent.lock", root / "k", root / "l", root / "c"), Stop()
    )
    shutil.rmtree(root, ignore_errors=True)


def exchange(place: agent.Place, data: bytes) -> bytes:
    """Send data as it is and read what comes back until the agent closes the connection."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(GUARD)
        client.connect(str(place.socket))
        client.sendall(data)
        received = b""
        while chunk := client.recv(65536):
            received += chunk
    return received


def test_an_item_kept_over_the_socket_shows_in_status_and_in_the_kept_list(place: agent.Place) -> None:
    items = MemoryItems()
    running = Running(place, items)
    assert running.answering().kept == ()
    item = handoff_item(Identity.generate(), items, 1_800_000_000, ttl=86400 * 365)

    answer = agent.ask(place, Keep(item))

    assert answer is not None and answer.ok
    status = agent.ask(place, Status())
    assert status is not None and status.pid == os.getpid()
    assert [(entry.publisher, entry.seq, entry.kind) for entry in status.kept or ()] == [
        (item.publisher, item.seq, "handoff")
    ]
    assert agent.read_kept(place) == [item]
    assert place.socket.stat().st_mode & 0o777 == 0o600
    assert agent.stop(place) and running.ended() is None
    assert not place.socket.exists()


def test_a_refused_item_is_answered_with_why(place: agent.Place) -> None:
    items = MemoryItems()
    running = Running(place, items)
    running.answering()
    item = handoff_item(Identity.generate(), items, 1_800_000_000)
    forged = agent_protocol.Item(item.publisher, item.seq, bytes(64), item.value, item.expires_at)

    answer = agent.ask(place, Keep(forged))

    assert answer is not None and not answer.ok and "signed" in (answer.error or "")


@pytest.mark.parametrize(
    "data",
    [
        b"garbage\n",
        b'{"v":1,"op":"status","op":"stop"}\n',
        b"x" * (MAX_REQUEST_LINE * 4),
        b"\x00" * 100 + b"\n",
        b'{"v":1,"op":"status"}',  # no newline, then the client stops writing
    ],
    ids=["words", "repeated-key", "huge", "zeros", "unterminated"],
)
def test_garbage_on_the_socket_is_answered_or_dropped_and_the_agent_goes_on(place: agent.Place, data: bytes) -> None:
    running = Running(place, MemoryItems())
    running.answering()

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(GUARD)
        client.connect(str(place.socket))
        try:
            client.sendall(data)
            client.shutdown(socket.SHUT_WR)
            received = client.recv(65536)
        except (BrokenPipeError, ConnectionResetError):
            received = b""  # the agent stopped reading at its bound

    if received:
        answer = agent_protocol.decode_answer(received)
        assert answer.ok == (data == b'{"v":1,"op":"status"}')
    assert running.answering().ok


def test_an_agent_with_nothing_to_keep_ends_after_its_grace(place: agent.Place) -> None:
    running = Running(place, MemoryItems(), grace=0.2)
    running.answering()
    assert running.ended() is None
    assert agent.ask(place, Status()) is None


def test_a_second_agent_hands_the_kept_list_to_the_first_and_ends(place: agent.Place) -> None:
    items = MemoryItems()
    first = Running(place, items)
    pid = first.answering().pid
    late = handoff_item(Identity.generate(), items, 1_800_000_000, ttl=86400 * 365)
    agent.add_kept(place, late)  # as a command does that found no agent a moment ago

    assert agent_server.serve(place, Keeping(items, lambda kept: None), lock_wait=0.1) == pid

    status = agent.ask(place, Status())
    assert status is not None and [entry.seq for entry in status.kept or ()] == [late.seq]


def test_a_client_does_not_use_a_socket_directory_open_to_others(place: agent.Place) -> None:
    running = Running(place, MemoryItems())
    running.answering()
    place.socket.parent.chmod(0o755)
    try:
        assert agent.ask(place, Status()) is None
    finally:
        place.socket.parent.chmod(0o700)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a client as another user")
def test_a_peer_of_another_user_is_refused(place: agent.Place) -> None:
    running = Running(place, MemoryItems())
    running.answering()
    # Let nobody reach the socket at all, so that only the agent's own check stands in its way.
    for directory in (place.socket.parent.parent, place.socket.parent):
        directory.chmod(0o711)
    place.socket.chmod(0o666)
    heard = _as_nobody_send(place.socket, b'{"v":1,"op":"stop"}\n')

    assert heard == b""  # closed without an answer
    for directory in (place.socket.parent.parent, place.socket.parent):
        directory.chmod(0o700)
    assert running.answering().ok  # and not stopped


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a client as another user")
def test_a_peer_of_another_user_cannot_get_the_key(place: agent.Place) -> None:
    running = Running(place, MemoryItems())
    running.answering()
    unlocked = agent.ask(place, Unlock(bytearray(SEED), DIGEST, 900))
    assert unlocked is not None and unlocked.ok
    for directory in (place.socket.parent.parent, place.socket.parent):
        directory.chmod(0o711)
    place.socket.chmod(0o666)

    heard = _as_nobody_send(place.socket, agent_protocol.encode_request(GetKey(DIGEST)))

    assert heard == b""
    for directory in (place.socket.parent.parent, place.socket.parent):
        directory.chmod(0o700)
    assert agent.UnlockedInAgent(place).seed(DIGEST) == SEED  # still held, for its own user


def _as_nobody_send(path: Path, data: bytes) -> bytes:
    """What a process of user nobody hears after connecting to path and sending data (a forked child)."""
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
                client.settimeout(GUARD)
                client.connect(str(path))
                try:
                    client.sendall(data)
                    heard = client.recv(100)
                except (BrokenPipeError, ConnectionResetError):
                    heard = b""  # closed before it could even send
            os.write(write_end, b"heard:" + heard)
        except BaseException as error:  # noqa: BLE001 - reported to the parent, which fails the test
            os.write(write_end, b"error:" + repr(error).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as reading:
        report = reading.read()
    os.waitpid(child, 0)
    assert report.startswith(b"heard:"), report
    return report.removeprefix(b"heard:")


# --- the unlocked key ------------------------------------------------------------------

SEED = bytes(range(1, 33))
DIGEST = hashlib.sha256(b"the key file's bytes").digest()


def eventually(check, what: str) -> None:
    give_up = time.monotonic() + GUARD
    while not check():
        assert time.monotonic() < give_up, f"never: {what}"
        time.sleep(0.05)


def test_a_key_given_is_handed_out_for_its_key_file_only_until_locked(place: agent.Place) -> None:
    running = Running(place, MemoryItems())
    running.answering()
    source = agent.UnlockedInAgent(place)
    assert source.seed(DIGEST) is None
    asked_at = time.time()

    given = agent.ask(place, Unlock(bytearray(SEED), DIGEST, 900))

    assert given is not None and given.ok and given.unlocked_until is not None
    assert asked_at + 900 <= given.unlocked_until <= time.time() + 901
    status = agent.ask(place, Status())
    assert status is not None and status.unlocked_until == given.unlocked_until
    assert source.seed(DIGEST) == SEED
    other = agent.ask(place, GetKey(hashlib.sha256(b"a replaced key file").digest()))
    assert other is not None and not other.ok and other.seed is None

    locked = agent.ask(place, Lock())

    assert locked is not None and locked.ok and locked.forgot is True
    assert source.seed(DIGEST) is None
    status = agent.ask(place, Status())
    assert status is not None and status.unlocked_until is None
    again = agent.ask(place, Lock())
    assert again is not None and again.forgot is False


def test_a_key_whose_time_is_up_is_refused_and_overwritten_unasked(place: agent.Place) -> None:
    key = agent_server.UnlockedKey()
    held = bytearray(SEED)
    assert key.unlock(held, DIGEST, 1, time.time()) > time.time()
    running = Running(place, MemoryItems(), key=key)
    running.answering()
    assert agent.UnlockedInAgent(place).seed(DIGEST) == SEED

    eventually(lambda: held == bytes(len(SEED)), "the agent overwrote the key when its time was up")

    assert agent.UnlockedInAgent(place).seed(DIGEST) is None


def test_an_agent_holding_a_key_stays_until_its_time_is_up_then_ends_after_its_grace(place: agent.Place) -> None:
    key = agent_server.UnlockedKey()
    held = bytearray(SEED)
    until = key.unlock(held, DIGEST, 2, time.time())
    running = Running(place, MemoryItems(), grace=0.2, key=key)

    assert running.ended() is None

    assert time.time() >= until  # nothing to keep, yet it stayed while it held the key
    assert held == bytes(len(SEED))


def test_stopping_the_agent_forgets_the_key(place: agent.Place) -> None:
    key = agent_server.UnlockedKey()
    held = bytearray(SEED)
    key.unlock(held, DIGEST, 900, time.time())
    running = Running(place, MemoryItems(), key=key)
    running.answering()

    assert agent.stop(place) and running.ended() is None

    assert held == bytes(len(SEED))
    assert key.until(time.time()) is None


def test_the_key_holder_keeps_a_key_a_day_at_most_and_overwrites_what_it_lets_go() -> None:
    key = agent_server.UnlockedKey()
    now = 1_800_000_000.5
    first, second = bytearray(SEED), bytearray(SEED[::-1])

    assert key.unlock(first, DIGEST, 10 * 86400, now) == 1_800_000_001 + agent.MAX_UNLOCK  # from the next second
    assert key.unlock(second, DIGEST, 60, now) == 1_800_000_061
    assert first == bytes(32)  # the key it replaced
    assert key.key(DIGEST, now) == (SEED[::-1], 1_800_000_061)
    assert key.key(DIGEST, now + 61) is None and second == bytes(32)


@pytest.mark.parametrize(("text", "seconds"), [("90s", 90), ("15m", 900), ("2h", 7200), ("600", 600), ("24H", 86400)])
def test_unlock_durations(text: str, seconds: int) -> None:
    assert agent.unlock_seconds(text) == seconds


@pytest.mark.parametrize("text", ["", "m", "0", "0s", "-5", "1.5m", "1d", "86401", "25h", "15 m", "\u0663m", "ten"])
def test_unlock_durations_that_are_refused(text: str) -> None:
    with pytest.raises(UsageError):
        agent.unlock_seconds(text)


# --- where the socket goes, and whose it is ---------------------------------------------


def test_the_socket_goes_in_the_runtime_directory_when_it_is_ours(tmp_path: Path) -> None:
    runtime_dir = Path(tempfile.mkdtemp(prefix="ccrt", dir="/tmp"))
    try:
        assert runtime.socket_dir({"XDG_RUNTIME_DIR": str(runtime_dir), "HOME": "/h"}) == runtime_dir / "cclink"
        assert runtime.socket_dir({"XDG_RUNTIME_DIR": "relative/dir", "HOME": "/h"}) != Path("relative/dir/cclink")
        missing = runtime_dir / "missing"
        assert runtime.socket_dir({"XDG_RUNTIME_DIR": str(missing), "HOME": "/h"}) != missing / "cclink"
    finally:
        shutil.rmtree(runtime_dir)


def test_a_path_too_long_for_a_unix_socket_gives_a_short_private_one(monkeypatch: pytest.MonkeyPatch) -> None:
    long_home = "/h/" + "x" * 200
    monkeypatch.setenv("XDG_STATE_HOME", long_home + "/state")
    chosen = runtime.socket_dir({"XDG_RUNTIME_DIR": "", "HOME": long_home})
    assert chosen.parent == Path(f"/tmp/cclink-{os.getuid()}")
    assert chosen == runtime.socket_dir({"HOME": long_home})  # the same HOME, the same place
    assert chosen != runtime.socket_dir({"HOME": long_home + "y"})
    assert len(str(chosen)) + runtime.SOCKET_NAME_ROOM <= runtime.MAX_SOCKET_PATH


def test_a_directory_not_private_is_refused(tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    assert runtime.private_dir(mine, create=True) == mine
    assert mine.stat().st_mode & 0o777 == 0o700

    link = tmp_path / "link"
    link.symlink_to(mine)
    with pytest.raises(runtime.NotPrivate):
        runtime.private_dir(link, create=True)

    open_dir = tmp_path / "open"
    open_dir.mkdir(mode=0o755)
    open_dir.chmod(0o755)
    with pytest.raises(runtime.NotPrivate):
        runtime.private_dir(open_dir, create=False)

    with pytest.raises(FileNotFoundError):
        runtime.private_dir(tmp_path / "absent", create=False)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a directory away")
def test_a_directory_of_another_user_is_refused(tmp_path: Path) -> None:
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o700)
    os.chown(theirs, NOBODY, NOBODY)
    with pytest.raises(runtime.NotPrivate):
        runtime.private_dir(theirs, create=True)


def test_peer_uid_is_the_connecting_users() -> None:
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with left, right:
        assert runtime.peer_uid(left) == os.getuid()


def test_only_a_test_network_honours_a_shorter_republish_interval() -> None:
    test_network = Network((("127.0.0.1", 7000),), test=True)
    assert agent.republish_every(test_network, {agent.REPUBLISH_ENV: "2.5"}) == 2.5
    assert agent.republish_every(test_network, {}) is None
    assert agent.republish_every(PUBLIC, {agent.REPUBLISH_ENV: "2.5"}) is None
    for bad in ("0", "-1", "nan", "soon", "86401"):
        with pytest.raises(UsageError):
            agent.republish_every(test_network, {agent.REPUBLISH_ENV: bad})


def test_each_network_has_an_agent_of_its_own() -> None:
    assert agent.network_tag(PUBLIC) == ""
    one, two = Network((("127.0.0.1", 7000),), test=True), Network((("127.0.0.1", 7001),), test=True)
    assert agent.network_tag(one) != agent.network_tag(two) != ""
    assert agent.network_tag(one) == agent.network_tag(Network((("127.0.0.1", 7000),), test=True))
