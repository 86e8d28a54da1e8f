"""The client every command uses to reach the agent, and what the agent's process shares with it.

(docs/design.md, "The agent".) One agent per user and network, reached over
a Unix socket in runtime.socket_dir(); it serves whoever runs as the same
user and no one else (peer_uid). The agent's process is agent_server.py,
which imports this module, never the other way round: commands that only
talk to the agent do not load the server.

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
id; the agent offers nothing from anywhere else (`TransferFiles`,
transfer_files.py). Unlike a keep, the command waits for the agent's
answer (starting one if needed), since it offers the session itself when
the agent does not take it.

Files, per network (the public network's names carry no tag): the socket
`agent.sock` and the lock `agent.lock` held for the agent's life, in the
socket directory; the kept list `kept.json` (docs/wire.md §11), the log
`agent.log` and the carry directory `carry/` (one 0700 directory per
transfer: `carry.age` and `transfer.json`) in the state directory.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import socket
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from cclink.errors import UsageError
from cclink.local import files, runtime
from cclink.net.transfer_files import TransferFiles, link_into
from cclink.wire import agent_protocol
from cclink.wire.agent_protocol import (
    Answer,
    Carry,
    GetKey,
    Item,
    Keep,
    ProtocolError,
    Request,
    Status,
    Stop,
    Transfer,
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
ASK_TIMEOUT = 5.0  # a command waits this long for an agent's answer before going on without it
LOCK_WAIT = 5.0  # a starting agent waits this long for one that is ending to let go of the lock
START_WAIT = 10.0  # `cclink agent` waits this long for the agent it started to answer
STOP_WAIT = 10.0  # `cclink agent stop` waits this long for the agent to end
MAX_KEPT_FILE = agent_protocol.MAX_KEPT_FILE
MAX_UNLOCK = agent_protocol.MAX_UNLOCK_SECONDS  # `cclink unlock --for` at most
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
            line = read_line(connection, agent_protocol.MAX_ANSWER_LINE, time.monotonic() + timeout)
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
            transfer_id, directory = link_into(self.place.carry, archive)
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
    with contextlib.suppress(OSError), kept_lock(place):
        files.write_private(place.kept, agent_protocol.encode_kept(items))


def add_kept(place: Place, item: Item) -> None:
    """Add item to the kept list's file for an agent about to start (the oldest go beyond MAX_KEPT)."""
    with kept_lock(place):
        files.write_private(place.kept, agent_protocol.encode_kept([*read_kept(place), item]))


@contextlib.contextmanager
def kept_lock(place: Place) -> Iterator[None]:
    with files.locked(place.kept.with_name(place.kept.name + ".lock"), wait=LOCK_WAIT):
        yield


# --- the socket, both sides -----------------------------------------------------------


def read_line(connection: socket.socket, limit: int, deadline: float) -> bytes:
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
