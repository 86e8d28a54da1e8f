"""The agent's process and the client every command uses to reach it (docs/design.md, "The agent").

One agent per user and network, reached over a Unix socket in
runtime.socket_dir(); it serves whoever runs as the same user and no one
else (peer_uid). What it keeps, and when it puts each item again, is a flow
(flows/keeping.py, a `Service` here): this module is the process around it,
which is why it lives in net, below the flows: sockets, threads, files and
the clock. The CLI puts the two together (`cclink agent`).

`cclink unlock` hands it the key (`Unlock`), which it holds in memory
only, until the time is up, `cclink lock`, or it ends; commands then ask
it for the key (`UnlockedInAgent`, the KeyStore's unlocked source) and get
it only for the key file it was opened from. An agent holding a key stays
even with nothing to keep.

A command hands an item over with a keep request. When no agent answers,
it adds the item to the kept list's file and starts one, without waiting
for it: the agent reads the file once it listens, and an agent that finds
another already running hands that one what the file holds, so no item is
lost to a race between them. The same file lets the first command after a
reboot start an agent that resumes what is still live.

`cclink --carry` hands over a carried session with a carry request
(`AgentKeeper.carry`): the command links its encrypted file into a new
directory of the agent's carry directory and names only that directory's
id; the agent offers nothing from anywhere else (`TransferFiles`). Unlike a
keep, the command waits for the agent's answer (starting one if needed),
since it offers the session itself when the agent does not take it.

Files, per network (the public network's names carry no tag): the socket
`agent.sock` and the lock `agent.lock` held for the agent's life, in the
socket directory; the kept list `kept.json` (docs/wire.md §11), the log
`agent.log` and the carry directory `carry/` (one 0700 directory per
transfer: `carry.age` and `transfer.json`) in the state directory.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import math
import os
import secrets
import shutil
import socket
import stat
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from cclink.errors import UsageError
from cclink.local import files, runtime
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
    Request,
    Status,
    Stop,
    Transfer,
    TransferEntry,
    Unlock,
)

if TYPE_CHECKING:
    from cclink.net import krpc
    from cclink.net.endpoints import Network
    from cclink.wire.keys import PublicKey

AGENT_ENV = "CCLINK_AGENT"  # "off": commands neither start the agent nor hand it anything
OFF = "off"
# Seconds between puts of each kept item; honoured on a test network only, so that tests need not wait an hour.
REPUBLISH_ENV = "CCLINK_AGENT_REPUBLISH_EVERY"
SECRET_ENV = ("CCLINK_PIN", "CCLINK_PASSPHRASE")  # never passed on to the agent
GRACE = 30.0  # an agent with nothing to keep waits this long for something before it exits
ASK_TIMEOUT = 5.0  # a command waits this long for an agent's answer before going on without it
READ_TIMEOUT = 2.0  # the agent gives a client this long to send its request
LOCK_WAIT = 5.0  # a starting agent waits this long for one that is ending to let go of the lock
START_WAIT = 10.0  # `cclink agent` waits this long for the agent it started to answer
STOP_WAIT = 10.0  # `cclink agent stop` waits this long for the agent to end
MAX_CLIENTS = 8  # requests answered at once; more connections are closed at once
ACCEPT_TICK = 0.5  # how often the accepting thread looks whether the agent is ending
AFTER_FAILURE = 60.0  # the worker's pause after a round that raised
MAX_SLEEP = 60.0  # the worker wakes at least this often: a suspended machine's clock jumps
MAX_KEPT_FILE = agent_protocol.MAX_KEPT_FILE
MAX_UNLOCK = agent_protocol.MAX_UNLOCK_SECONDS  # `cclink unlock --for` at most
DEFAULT_UNLOCK = "15m"
CARRY_FILE = "carry.age"  # bittorrent.FILE_NAME: the name the torrent is made under
TRANSFER_FILE = "transfer.json"
HANDOVER_WAIT = 3600.0  # a transfer directory that no agent took (its command is gone) is removed after this
_UNLOCK_UNITS = {"s": 1, "m": 60, "h": 3600}


@dataclass(frozen=True)
class Place:
    """Where one network's agent lives: its socket and lock, its kept list, its log."""

    socket: Path
    lock: Path
    kept: Path
    log: Path
    carry: Path  # a directory per carried session offered

    @classmethod
    def of(cls, network: Network, environ: Mapping[str, str] | None = None) -> Place:
        tag = network_tag(network)
        directory = runtime.socket_dir(environ)
        state = files.state_dir()
        return cls(
            directory / f"agent{tag}.sock",
            directory / f"agent{tag}.lock",
            state / f"kept{tag}.json",
            state / f"agent{tag}.log",
            state / f"carry{tag}",
        )


def network_tag(network: Network) -> str:
    """'' for the public network, else a short hash of how commands join it: one agent per network."""
    from cclink.net.endpoints import PUBLIC

    if network == PUBLIC:
        return ""
    joined = json.dumps(network.environment(), sort_keys=True).encode()
    return "-" + hashlib.sha256(joined).hexdigest()[:12]


def republish_every(network: Network, environ: Mapping[str, str]) -> float | None:
    """CCLINK_AGENT_REPUBLISH_EVERY on a test network; None (the agent's own interval) anywhere else."""
    text = environ.get(REPUBLISH_ENV, "").strip()
    if not network.test or not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        seconds = 0.0
    if not 0 < seconds <= 86400:
        raise UsageError(f"{REPUBLISH_ENV} takes a number of seconds from 0 to 86400, not '{text}'")
    return seconds


def enabled(environ: Mapping[str, str]) -> bool:
    """Whether commands may start and use the agent: not with CCLINK_AGENT=off."""
    return environ.get(AGENT_ENV, "").strip() != OFF


def unlock_seconds(text: str) -> int:
    """`cclink unlock --for`'s DURATION in seconds: 90s, 15m, 2h or plain seconds, 1 second to a day."""
    spelled = text.strip().lower()
    unit = _UNLOCK_UNITS.get(spelled[-1:], 1)
    number = spelled[:-1] if spelled[-1:] in _UNLOCK_UNITS else spelled
    seconds = int(number) * unit if number.isascii() and number.isdigit() else 0
    if not 0 < seconds <= MAX_UNLOCK:
        raise UsageError(f"--for takes a duration such as 90s, 15m or 2h, or seconds, up to a day; not '{text}'")
    return seconds


def log(sentence: str) -> None:
    """A line in the agent's log (its stderr), with the time."""
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {sentence}", file=sys.stderr, flush=True)


# --- the client -----------------------------------------------------------------------


def ask(place: Place, request: Request, *, timeout: float = ASK_TIMEOUT) -> Answer | None:
    """The agent's answer to request; None when no agent of this user answers (or answers nonsense)."""
    try:
        runtime.private_dir(place.socket.parent, create=False)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
            connection.settimeout(timeout)
            connection.connect(str(place.socket))
            if runtime.peer_uid(connection) != os.getuid():
                return None  # not our agent, whoever put a socket there
            connection.sendall(agent_protocol.encode_request(request))
            line = _read_line(connection, agent_protocol.MAX_ANSWER_LINE, time.monotonic() + timeout)
        return agent_protocol.decode_answer(line) if line else None
    except (OSError, ProtocolError):
        return None


class AgentKeeper:
    """What a command hands signed items to (the flows' Keeper): the agent, started when none is running."""

    def __init__(self, network: Network, environ: Mapping[str, str]) -> None:
        self.place = Place.of(network, environ)
        self.environ = environ

    def keep(self, publisher: PublicKey, item: krpc.Item, expires_at: float) -> str | None:
        """Hand item to the agent; None, or a sentence saying why it will not be kept alive."""
        wire_item = Item(publisher.raw, item.seq, item.signature, item.value, int(expires_at))
        answer = ask(self.place, Keep(wire_item))
        if answer is not None:
            return None if answer.ok else f"The agent will not keep it on the DHT: {answer.error}."
        try:
            add_kept(self.place, wire_item)
            start(self.place, self.environ)
        except OSError as error:
            return (
                f"The background agent could not be started ({error.strerror or error}); DHT nodes drop "
                "an item about two hours after it was put, so it may vanish from the DHT before it expires."
            )
        return None

    def carry(self, transfer: Transfer, archive: Path) -> str | None:
        """Have the agent offer the encrypted file at archive; None once it does, else why not (a sentence).

        The file is linked (or copied) into a directory of the agent's own
        first; waits for the agent's answer, starting one if none is running.
        """
        try:
            transfer_id, directory = _link_into(self.place, archive)
        except OSError as error:
            return f"the session could not be handed to the agent ({error.strerror or error})"
        answer = self._ask_to_carry(transfer_id, transfer)
        if answer is None:
            with contextlib.suppress(OSError):
                start(self.place, self.environ)
                wait_for(self.place)
                answer = self._ask_to_carry(transfer_id, transfer)
        if answer is not None and answer.ok:
            return None
        shutil.rmtree(directory, ignore_errors=True)
        if answer is None:
            return f"the background agent did not start (its log is {self.place.log})"
        return f"the agent did not take it: {answer.error}"

    def _ask_to_carry(self, transfer_id: str, transfer: Transfer) -> Answer | None:
        answer = ask(self.place, Carry(transfer_id, transfer))
        if answer is not None and not answer.ok and transfer.port is not None:
            # An agent started before carry requests named a port refuses the field; it offers on a port of its own.
            answer = ask(self.place, Carry(transfer_id, replace(transfer, port=None)))
        return answer

    def resume(self) -> None:
        """Start an agent for a kept list or transfers that no agent is running for (after a reboot, say)."""
        try:
            if not TransferFiles(self.place.carry).saved_ids() and (
                self.place.kept.stat().st_size == 0 or not read_kept(self.place)
            ):
                return
        except OSError:
            return
        if ask(self.place, Status()) is None:
            with contextlib.suppress(OSError):
                start(self.place, self.environ)


def keeper(network: Network, environ: Mapping[str, str] | None = None) -> AgentKeeper | None:
    """The keeper of a command on network, an agent resumed if it has a kept list; None with CCLINK_AGENT=off."""
    environ = os.environ if environ is None else environ
    if not enabled(environ):
        return None
    found = AgentKeeper(network, environ)
    found.resume()
    return found


class UnlockedInAgent:
    """The KeyStore's unlocked source: the key `cclink unlock` gave the agent, if it is of this very key file."""

    def __init__(self, place: Place) -> None:
        self.place = place

    def seed(self, key_file_sha256: bytes) -> bytes | None:
        answer = ask(self.place, GetKey(key_file_sha256))
        return answer.seed if answer is not None and answer.ok else None


def unlocked_keys(network: Network, environ: Mapping[str, str] | None = None) -> UnlockedInAgent | None:
    """Where commands on network find an unlocked key; None with CCLINK_AGENT=off."""
    environ = os.environ if environ is None else environ
    return UnlockedInAgent(Place.of(network, environ)) if enabled(environ) else None


def unlock(place: Place, environ: Mapping[str, str], request: Unlock) -> int:
    """Give the agent the key, starting one if none is running; until when it holds it.

    UsageError when no agent could be started or it refused.
    """
    answer = ask(place, request)
    if answer is None:
        try:
            start(place, environ)
        except OSError as error:
            raise UsageError(f"the agent could not be started ({error.strerror or error})") from None
        wait_for(place)
        answer = ask(place, request)
    if answer is None:
        raise UsageError(f"the agent did not start; its log is {place.log}")
    if not answer.ok or answer.unlocked_until is None:
        raise UsageError(f"the agent did not take the key: {answer.error or 'it did not say until when'}")
    return answer.unlocked_until


def start(place: Place, environ: Mapping[str, str]) -> int:
    """Start an agent in the background, detached from the terminal; its pid. OSError when it cannot be."""
    argv = [sys.executable, "-m", "cclink", "agent", "--foreground"]
    clean = {name: value for name, value in environ.items() if name not in SECRET_ENV}
    return runtime.start_detached(argv, env=clean, log=place.log)


def stop(place: Place) -> bool:
    """Ask the agent to end and wait until it has; False when none was running."""
    if ask(place, Stop()) is None:
        return False
    with files.locked(place.lock, wait=STOP_WAIT):
        pass
    return True


def wait_for(place: Place, *, timeout: float = START_WAIT) -> Answer | None:
    """The status of an agent being started, once it answers; None if it has not within timeout."""
    give_up = time.monotonic() + timeout
    while True:
        answer = ask(place, Status())
        if answer is not None or time.monotonic() >= give_up:
            return answer
        time.sleep(0.05)


# --- the kept list's file -------------------------------------------------------------


def read_kept(place: Place) -> list[Item]:
    data = files.read_bounded(place.kept, MAX_KEPT_FILE)
    return agent_protocol.decode_kept(data) if data is not None else []


def save_kept(place: Place, items: list[Item]) -> None:
    """Replace the kept list (0600, atomically); a file that cannot be written leaves the list to the agent's memory."""
    with contextlib.suppress(OSError), _kept_lock(place):
        files.write_private(place.kept, agent_protocol.encode_kept(items))


def add_kept(place: Place, item: Item) -> None:
    """Add item to the kept list's file for an agent about to start (the oldest go beyond MAX_KEPT)."""
    with _kept_lock(place):
        files.write_private(place.kept, agent_protocol.encode_kept([*read_kept(place), item]))


@contextlib.contextmanager
def _kept_lock(place: Place) -> Iterator[None]:
    with files.locked(place.kept.with_name(place.kept.name + ".lock"), wait=LOCK_WAIT):
        yield


# --- the carry directory --------------------------------------------------------------


def _link_into(place: Place, archive: Path) -> tuple[str, Path]:
    """A new transfer directory holding archive as CARRY_FILE (a hard link, else a copy); its id and path."""
    runtime.private_dir(place.carry, create=True)
    transfer_id = secrets.token_hex(16)
    directory = place.carry / transfer_id
    directory.mkdir(mode=0o700)
    try:
        try:
            os.link(archive, directory / CARRY_FILE, follow_symlinks=False)
        except OSError:  # another file system (a cache elsewhere), or one without hard links
            with open(archive, "rb") as source, files.create_private(directory / CARRY_FILE) as target:
                shutil.copyfileobj(source, target, 1 << 20)
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    return transfer_id, directory


class TransferFiles:
    """The agent's carry directory: a 0700 directory per transfer, with its encrypted file and what it is.

    A request names a transfer by its id only (32 hex digits, checked by
    the protocol), so nothing outside this directory is ever offered.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path(self, transfer_id: str) -> Path:
        return self.directory / agent_protocol.transfer_id(transfer_id) / CARRY_FILE

    def archive(self, transfer_id: str, size: int) -> Path:
        """The transfer's file, once checked: a regular file of ours, of size bytes, in a private directory.

        OSError when it is not.
        """
        path = self.path(transfer_id)
        runtime.private_dir(self.directory, create=False)
        runtime.check_private(path.parent)
        info = os.lstat(path)
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid():
            raise OSError("its file is not a file of this user")  # a link, say: never followed
        if info.st_size != size:
            raise OSError("its file is not of the size the transfer says")
        return path

    def save(self, transfer_id: str, transfer: Transfer) -> None:
        files.write_private(
            self.path(transfer_id).with_name(TRANSFER_FILE), agent_protocol.encode_transfer_file(transfer)
        )

    def saved_ids(self) -> list[str]:
        """The ids of the transfer directories there (at most a few more than the agent offers at once)."""
        try:
            runtime.private_dir(self.directory, create=False)
            names = []
            with os.scandir(self.directory) as entries:
                for entry in entries:
                    if agent_protocol.TRANSFER_ID.fullmatch(entry.name):
                        names.append(entry.name)
                    if len(names) >= 4 * agent_protocol.MAX_TRANSFERS:
                        break
        except OSError:
            return []
        return sorted(names)

    def saved(self, now: float) -> list[tuple[str, Transfer]]:
        """Each transfer directory's id and what it is; one that says nothing readable is removed.

        Except for a while after it was made: a command links its file in
        before it asks, and the agent writes what it is once it takes it.
        """
        found = []
        for transfer_id in self.saved_ids():
            described = self.path(transfer_id).with_name(TRANSFER_FILE)
            data = files.read_bounded(described, agent_protocol.MAX_TRANSFER_FILE)
            try:
                found.append((transfer_id, agent_protocol.decode_transfer_file(data or b"")))
            except ProtocolError:
                if data is not None or self._made_before(transfer_id, now - HANDOVER_WAIT):
                    self.remove(transfer_id)
        return found

    def _made_before(self, transfer_id: str, when: float) -> bool:
        try:
            return os.lstat(self.path(transfer_id).parent).st_mtime < when
        except OSError:
            return False

    def remove(self, transfer_id: str) -> None:
        shutil.rmtree(self.path(transfer_id).parent, ignore_errors=True)


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
            with _kept_lock(place):
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
                line = _read_line(connection, agent_protocol.MAX_CARRY_LINE, time.monotonic() + READ_TIMEOUT)
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


def _read_line(connection: socket.socket, limit: int, deadline: float) -> bytes:
    """Bytes up to and with the first newline; at most limit + 1 (too long: the decoder says so); b'' at EOF."""
    data = b""
    while b"\n" not in data and len(data) <= limit:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no whole line in time")
        connection.settimeout(remaining)
        chunk = connection.recv(min(65536, limit + 1 - len(data)))
        if not chunk:
            break
        data += chunk
    return data.split(b"\n", 1)[0] + b"\n" if b"\n" in data else data
