"""magic-wormhole beside `--carry`: a virtual environment of its own, its local servers, one timed transfer.

Issue 17 measures carry against magic-wormhole sending the same session
file (scripts/carrybench.py on loopback, `netlab --carry MB --wormhole`
over a lab link). magic-wormhole is a benchmark dependency only: it is
installed from PyPI, pinned, into a virtual environment of its own
(`.venv-wormhole` in the checkout by default, made on first use), never
into cclink's, and no test needs it. Its mailbox server and transit relay
run locally, so no transfer reaches the public ones.
"""

from __future__ import annotations

import itertools
import re
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import cclink

REQUIREMENTS = (
    "magic-wormhole==0.24.0",
    "magic-wormhole-mailbox-server==0.8.0",
    "magic-wormhole-transit-relay==0.5.0",
)
STAMP = "cclink-requirements.txt"  # written once the install has succeeded
VERSION = REQUIREMENTS[0].split("==")[1]
CODE_SAID = "Wormhole code is:"
SERVER_START_TIMEOUT = 30.0
TRANSFER_TIMEOUT = 300.0
# twist logs each server's port as it starts listening: "PrivacyEnhancedSite starting on 4000".
LISTENING = re.compile(r"starting on (\d+)")
# The wormhole CLI, but offering only 127.0.0.1 for direct connections, as it does on a machine with no
# other address; otherwise it offers this host's other addresses, which carrybench stays off.
LOOPBACK_ONLY = (
    "import sys; from wormhole import ipaddrs; ipaddrs.find_addresses = lambda: ['127.0.0.1']; "
    "from wormhole.cli.cli import wormhole; sys.exit(wormhole())"
)


_NAMEPLATES = itertools.count(secrets.randbelow(10_000) + 100)


class WormholeUnavailable(Exception):
    """magic-wormhole's virtual environment could not be made, or its servers did not start."""


def default_venv() -> Path:
    """`.venv-wormhole` in the checkout that holds this cclink."""
    return Path(cclink.__file__).resolve().parent.parent / ".venv-wormhole"


@dataclass(frozen=True)
class Wormhole:
    """magic-wormhole's virtual environment: its client and its servers' commands."""

    venv: Path

    def client(self, *args: str, loopback_only: bool = False) -> list[str]:
        if loopback_only:
            return [str(self.venv / "bin" / "python"), "-c", LOOPBACK_ONLY, *args]
        return [str(self.venv / "bin" / "wormhole"), *args]

    def server(self, *args: str) -> list[str]:
        return [str(self.venv / "bin" / "twist"), *args]


def ensure_venv(venv: Path) -> Wormhole:
    """The virtual environment at venv, made and filled from PyPI first if it is not complete yet."""
    stamp = venv / STAMP
    wanted = "\n".join(REQUIREMENTS) + "\n"
    if stamp.is_file() and stamp.read_text() == wanted:
        return Wormhole(venv)
    print(f"making {venv} for magic-wormhole {VERSION} (once)", file=sys.stderr, flush=True)
    _setup_step([sys.executable, "-m", "venv", "--clear", str(venv)])
    _setup_step([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", *REQUIREMENTS])
    stamp.write_text(wanted)
    return Wormhole(venv)


def _setup_step(argv: Sequence[str]) -> None:
    try:
        result = subprocess.run(list(argv), capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise WormholeUnavailable(f"{argv[0]}: {error}") from None
    if result.returncode != 0:
        said = (result.stderr or result.stdout).strip().splitlines()
        raise WormholeUnavailable(f"{' '.join(argv[:4])} failed: {said[-1] if said else result.returncode}")


class Servers:
    """A mailbox server and a transit relay listening on host (behind prefix, a namespace); close() ends both."""

    def __init__(self, wormhole: Wormhole, host: str, scratch: Path, prefix: Sequence[str] = ()) -> None:
        self.processes: list[subprocess.Popen] = []
        try:
            database = f"--channel-db={scratch / 'wormhole-mailbox.sqlite'}"
            mailbox = self._start(
                prefix,
                wormhole.server("wormhole-mailbox", f"--port=tcp:0:interface={host}", database),
                scratch / "wormhole-mailbox.log",
            )
            relay = self._start(
                prefix,
                wormhole.server("transitrelay", f"--port=tcp:0:interface={host}"),
                scratch / "wormhole-relay.log",
            )
        except BaseException:
            self.close()
            raise
        self.relay_url = f"ws://{host}:{mailbox}/v1"
        self.transit_helper = f"tcp:{host}:{relay}"

    def _start(self, prefix: Sequence[str], argv: list[str], log: Path) -> int:
        """Start one server, logging to log; its port once it listens."""
        with open(log, "w") as out:
            popen = subprocess.Popen([*prefix, *argv], stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        self.processes.append(popen)
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while time.monotonic() < deadline:
            if found := LISTENING.search(log.read_text()):
                return int(found.group(1))
            if popen.poll() is not None:
                break
            time.sleep(0.05)
        raise WormholeUnavailable(f"{argv[1]} did not start listening: {log.read_text()[-2000:].strip()}")

    def options(self) -> list[str]:
        """The client options that point it at these servers instead of the public ones."""
        return ["--relay-url", self.relay_url, "--transit-helper", self.transit_helper]

    def close(self) -> None:
        from cclink.dev.netlab.lab import stop  # here: lab.py imports this module

        for popen in self.processes:
            stop(popen)
        self.processes.clear()

    def __enter__(self) -> Servers:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


@dataclass(frozen=True)
class Transfer:
    """One wormhole send and receive: seconds from starting the sender to the receiver's exit, and the route taken."""

    seconds: float
    route: str  # "direct" (peer to peer) or "relay" (through the transit relay)


def send_file(
    wormhole: Wormhole,
    servers: Servers,
    source: Path,
    destination: Path,
    *,
    sender_prefix: Sequence[str] = (),
    receiver_prefix: Sequence[str] = (),
    loopback_only: bool = False,
) -> Transfer:
    """`wormhole send` source and `wormhole receive` it into destination, a new file: one process each.

    The receiver starts once the sender has said its code, as cclink's
    picker starts once the publisher offers the session. The time ends when
    the receiver exits, the file written in full (not fsynced).
    """
    destination.unlink(missing_ok=True)
    # A nameplate of its own: one still held by an earlier transfer would make the mailbox refuse this one.
    code = f"{next(_NAMEPLATES)}-cclink-{secrets.token_hex(4)}"
    options = servers.options()
    send = wormhole.client(
        *options, "send", "--hide-progress", "--no-qr", "--code", code, str(source), loopback_only=loopback_only
    )
    receive = wormhole.client(
        *options, "receive", "--hide-progress", "--accept-file", "-o", str(destination), code,
        loopback_only=loopback_only,
    )  # fmt: skip
    started = time.perf_counter()
    sender = subprocess.Popen(
        [*sender_prefix, *send], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    said = _Said(sender)
    try:
        if not said.code.wait(SERVER_START_TIMEOUT):
            raise WormholeUnavailable(f"wormhole send never said its code: {said.text()}")
        receiver = subprocess.Popen(
            [*receiver_prefix, *receive],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            received = _wait_for_receiver(receiver, sender)
            seconds = time.perf_counter() - started
            sender.wait(timeout=TRANSFER_TIMEOUT)
        finally:
            if receiver.poll() is None:
                receiver.kill()
            receiver.communicate()
    finally:
        if sender.poll() is None:
            sender.kill()
            sender.wait()
        said.finish()
    if receiver.returncode != 0 or sender.returncode != 0:
        raise WormholeUnavailable(
            f"wormhole failed: receive exit {receiver.returncode}, send exit {sender.returncode}: "
            f"{received.strip()[-1000:]} / {said.text()}"
        )
    if not destination.is_file() or destination.stat().st_size != source.stat().st_size:
        raise WormholeUnavailable(f"wormhole receive exited 0 but {destination} is not a full copy of {source}")
    return Transfer(seconds, "relay" if "(->relay:" in received else "direct")


def _wait_for_receiver(receiver: subprocess.Popen, sender: subprocess.Popen) -> str:
    """The receiver's stderr once it exits; it waits for a sender for ever, so a failed sender ends it."""
    deadline = time.monotonic() + TRANSFER_TIMEOUT
    while time.monotonic() < deadline:
        try:
            return receiver.communicate(timeout=0.05)[1]
        except subprocess.TimeoutExpired:
            if sender.poll() not in (None, 0):
                receiver.kill()
                return receiver.communicate()[1]
    receiver.kill()
    return receiver.communicate()[1] + f"\n(killed after {TRANSFER_TIMEOUT:.0f} s)"


class _Said:
    """The sender's stderr, read on a thread; `code` is set once it has said its code."""

    def __init__(self, sender: subprocess.Popen) -> None:
        assert sender.stderr is not None  # started with stderr=PIPE
        self.lines: list[str] = []
        self.code = threading.Event()
        self._thread = threading.Thread(target=self._read, args=(sender.stderr,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.append(line)
            if CODE_SAID in line:
                self.code.set()

    def finish(self) -> None:
        self._thread.join(timeout=10)

    def text(self) -> str:
        return "".join(self.lines).strip()[-1000:]
