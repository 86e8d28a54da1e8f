"""The agent's process itself (docs/design.md, "The agent"); commands reach it with net/agent.py.

One agent per user and network, listening on a Unix socket in
runtime.socket_dir(); it serves whoever runs as the same user and no one
else (peer_uid). What it keeps, and when it puts each item again, is a flow
(flows/keeping.py, a `Service` here): this module is the process around it,
which is why it lives in net, below the flows: sockets, threads, files and
the clock. The CLI puts the two together (`cclink agent`).

It holds the key `cclink unlock` hands it in memory only (`UnlockedKey`),
until the time is up, `cclink lock`, or it ends. Only the agent's process
imports this module: the client (agent.py) never does, so commands that do
not run the agent do not load it.
"""

from __future__ import annotations

import contextlib
import hmac
import math
import os
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from cclink.local import files, runtime
from cclink.net.agent import LOCK_WAIT, MAX_UNLOCK, Place, ask, kept_lock, read_kept, read_line
from cclink.wire import agent_protocol
from cclink.wire.agent_protocol import (
    Answer,
    Carry,
    Entry,
    GetKey,
    Item,
    Keep,
    Lock,
    ProtocolError,
    Status,
    Stop,
    Transfer,
    TransferEntry,
    Unlock,
)

GRACE = 30.0  # an agent with nothing to keep waits this long for something before it exits
READ_TIMEOUT = 2.0  # the agent gives a client this long to send its request
MAX_CLIENTS = 8  # requests answered at once; more connections are closed at once
ACCEPT_TICK = 0.5  # how often the accepting thread looks whether the agent is ending
AFTER_FAILURE = 60.0  # the worker's pause after a round that raised
MAX_SLEEP = 60.0  # the worker wakes at least this often: a suspended machine's clock jumps


def log(sentence: str) -> None:
    """A line in the agent's log (its stderr), with the time."""
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {sentence}", file=sys.stderr, flush=True)


# --- the unlocked key -----------------------------------------------------------------


class UnlockedKey:
    """The key `cclink unlock` gave the agent: in this process's memory only, overwritten when forgotten.

    Each method takes the time and first forgets a key whose time is up.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seed: bytearray | None = None
        self._key_file_sha256 = b""
        self._until = 0

    def unlock(self, seed: bytearray, key_file_sha256: bytes, seconds: int, now: float) -> int:
        """Hold seed (taken, not copied) for seconds from now, a day at most; until when.

        The time runs from when the agent gets the key, not from when the
        command asked: starting the agent can take a while.
        """
        with self._lock:
            self._forget()
            until = math.ceil(now) + min(seconds, MAX_UNLOCK)
            self._seed, self._key_file_sha256, self._until = seed, key_file_sha256, until
            return until

    def key(self, key_file_sha256: bytes, now: float) -> tuple[bytes, int] | None:
        """The seed and until when it is held, if it was opened from a key file of that SHA-256."""
        with self._lock:
            self._forget_if_due(now)
            if self._seed is None or not hmac.compare_digest(self._key_file_sha256, key_file_sha256):
                return None
            return bytes(self._seed), self._until

    def until(self, now: float) -> int | None:
        """Until when a key is held; None when none is."""
        with self._lock:
            self._forget_if_due(now)
            return self._until if self._seed is not None else None

    def lock(self) -> bool:
        """Forget the key; whether one was held."""
        with self._lock:
            held = self._seed is not None
            self._forget()
            return held

    def _forget_if_due(self, now: float) -> None:
        if self._seed is not None and now >= self._until:
            self._forget()

    def _forget(self) -> None:
        if self._seed is not None:
            _overwrite(self._seed)
        self._seed, self._key_file_sha256, self._until = None, b"", 0


def _overwrite(secret: bytearray) -> None:
    secret[:] = bytes(len(secret))


def without_core_dumps() -> None:
    """Let this process leave no core file (it may hold a key), where the system allows setting that."""
    import resource

    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


# --- the agent ------------------------------------------------------------------------


class Service(Protocol):
    """What the agent keeps, and the work of keeping it (flows/keeping.Keeping)."""

    def keep(self, item: Item, now: float) -> str | None: ...

    def resume(self, items: list[Item], now: float) -> None: ...

    def entries(self, now: float) -> tuple[Entry, ...]: ...

    def next_due(self, now: float) -> float | None: ...

    def work(self, clock: Callable[[], float]) -> None: ...

    def carry(self, transfer_id: str, transfer: Transfer, now: float) -> str | None: ...

    def transfers(self, now: float) -> tuple[TransferEntry, ...]: ...

    def close(self) -> None: ...


def serve(
    place: Place,
    service: Service,
    *,
    grace: float = GRACE,
    clock: Callable[[], float] = time.time,
    lock_wait: float = LOCK_WAIT,
    key: UnlockedKey | None = None,
) -> int | None:
    """Be the agent until stopped, or until it has had neither an item to keep nor a key for grace seconds.

    None when it ended so; the key it held is forgotten whichever way it ends.
    When another agent holds the lock, hand it the kept list's items and
    return that agent's pid (0 when it did not answer).
    """
    key = UnlockedKey() if key is None else key
    runtime.private_dir(place.socket.parent, create=True)
    with files.locked(place.lock, wait=lock_wait) as held:
        if not held:
            return _hand_over(place)
        listener = _listen(place.socket)
        try:
            # Listening first: a command that finds no agent adds to the file before this reads it, or is answered.
            with kept_lock(place):
                kept = read_kept(place)
            service.resume(kept, clock())
            _Server(listener, service, key, grace, clock).run()
        finally:
            service.close()
            key.lock()
            listener.close()
            with contextlib.suppress(OSError):
                place.socket.unlink()
    return None


def _hand_over(place: Place) -> int:
    """Give the running agent what the kept list's file holds (a command may have just added to it); its pid."""
    for item in read_kept(place):
        ask(place, Keep(item))
    answer = ask(place, Status())
    if answer is None or answer.pid is None:
        return 0
    return answer.pid


def _listen(path: Path) -> socket.socket:
    """A listening socket at path, 0600; whatever was there is a dead agent's, since the lock is ours."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    previous = os.umask(0o177)
    try:
        listener.bind(str(path))
    finally:
        os.umask(previous)
    listener.listen(64)
    return listener


class _Server:
    """One thread accepts and checks peers, one per request answers, and one does the keeping's work."""

    def __init__(
        self, listener: socket.socket, service: Service, key: UnlockedKey, grace: float, clock: Callable[[], float]
    ) -> None:
        self.listener = listener
        self.service = service
        self.key = key
        self.grace = grace
        self.clock = clock
        self.ending = threading.Event()
        self.wake = threading.Event()
        # Held while a keep or a key is taken and while deciding to end: neither is taken by an agent that is leaving.
        self.deciding = threading.Lock()
        self.slots = threading.BoundedSemaphore(MAX_CLIENTS)

    def run(self) -> None:
        threading.Thread(target=self._work, name="keeping", daemon=True).start()
        self.listener.settimeout(ACCEPT_TICK)
        while not self.ending.is_set():
            try:
                connection, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                time.sleep(ACCEPT_TICK)  # out of file descriptors, say: the clients wait in the backlog
                continue
            if not self._of_this_user(connection) or not self.slots.acquire(blocking=False):
                connection.close()
                continue
            threading.Thread(target=self._serve, args=(connection,), daemon=True).start()

    def _of_this_user(self, connection: socket.socket) -> bool:
        try:
            return runtime.peer_uid(connection) == os.getuid()
        except OSError:
            return False

    def _serve(self, connection: socket.socket) -> None:
        try:
            with connection:
                connection.settimeout(READ_TIMEOUT)
                # The longest request there is (a carry's); the decoder holds every other op to MAX_REQUEST_LINE.
                line = read_line(connection, agent_protocol.MAX_CARRY_LINE, time.monotonic() + READ_TIMEOUT)
                answer = self._answer(line)
                if answer is not None:
                    connection.sendall(agent_protocol.encode_answer(answer))
        except OSError:
            pass
        finally:
            self.slots.release()

    def _answer(self, line: bytes) -> Answer | None:
        try:
            request = agent_protocol.decode_request(line)
        except ProtocolError as error:
            return Answer(False, error=error.message)
        if isinstance(request, Stop):
            self.ending.set()
            self.wake.set()
            return Answer(True)
        if isinstance(request, Status):
            now = self.clock()
            return Answer(
                True,
                pid=os.getpid(),
                kept=self.service.entries(now),
                unlocked_until=self.key.until(now),
                transfers=self.service.transfers(now),
            )
        if isinstance(request, GetKey):
            held = self.key.key(request.key_file_sha256, self.clock())
            if held is None:
                return Answer(False, error="no key of that key file is unlocked")
            return Answer(True, seed=held[0], unlocked_until=held[1])
        if isinstance(request, Lock):
            return Answer(True, forgot=self.key.lock())
        with self.deciding:
            if self.ending.is_set():
                if isinstance(request, Unlock):
                    _overwrite(request.seed)
                return None  # no answer: the client starts the next agent with it
            if isinstance(request, Unlock):
                answer = self._unlock(request)
            elif isinstance(request, Carry):
                refusal = self.service.carry(request.transfer_id, request.transfer, self.clock())
                answer = Answer(refusal is None, error=refusal)
            else:
                refusal = self.service.keep(request.item, self.clock())
                answer = Answer(refusal is None, error=refusal)
        self.wake.set()
        return answer

    def _unlock(self, request: Unlock) -> Answer:
        until = self.key.unlock(request.seed, request.key_file_sha256, request.seconds, self.clock())
        if until is None:
            return Answer(False, error="its time is up already")
        return Answer(True, unlocked_until=until)

    def _work(self) -> None:
        empty_since: float | None = None
        while not self.ending.is_set():
            failed = False
            try:
                self.service.work(self.clock)
            except Exception:  # noqa: BLE001 - a bug in one round must not end the keeping of everything
                traceback.print_exc()
                sys.stderr.flush()
                failed = True
            with self.deciding:
                now = self.clock()
                due = self.service.next_due(now)
                if failed and due is not None:
                    due = max(due, now + AFTER_FAILURE)  # what failed is still due: not again at once
                unlocked_until = self.key.until(now)  # forgets a key whose time is up
                wake_at = min((when for when in (due, unlocked_until) if when is not None), default=None)
                if wake_at is None:
                    empty_since = empty_since if empty_since is not None else time.monotonic()
                    wait = self.grace - (time.monotonic() - empty_since)
                    if wait <= 0:
                        self.ending.set()
                        return
                else:
                    empty_since = None
                    wait = wake_at - now
            if self.wake.wait(min(max(wait, 0.0), MAX_SLEEP)):
                self.wake.clear()
