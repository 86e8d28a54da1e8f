"""pkarr relays for the tests: npm pkarr's relay server on the local swarm, and relays of our own that lie.

`pkarr_relay` runs scripts/pkarr-js/pkarr-relay.mjs (npm pkarr 1.3.0's
`Server`, its DHT node on the test swarm) on 127.0.0.1 and gives its URL;
without node or the npm package it skips the test, as pkarr_js does.
`LyingRelay` is an http.server on 127.0.0.1 that answers every request as
its `answer` says: a genuine payload for another key, a bad signature, an
old item, garbage, a huge body, a redirect, a stall. `DEAD_RELAY` is a
loopback port nothing listens on.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from cclink.net.endpoints import COMMAND_ADDRESS
from support.pkarr_js import DIRECTORY, pkarr_js

RELAY_SCRIPT = DIRECTORY / "pkarr-relay.mjs"
START_TIMEOUT = 30.0  # seconds: a guard against hangs, never a measurement


_HELD: list[socket.socket] = []  # open for as long as the tests run, so that no one else gets their ports


def dead_port(kind: socket.SocketKind = socket.SOCK_STREAM) -> int:
    """A loopback port that answers nothing: bound by this process and held, never listened or read on.

    TCP connections to it are refused; UDP datagrams to it go unanswered (as where a firewall drops them).
    """
    held = socket.socket(socket.AF_INET, kind)
    held.bind(("127.0.0.1", 0))
    _HELD.append(held)
    return held.getsockname()[1]


DEAD_RELAY = f"http://127.0.0.1:{dead_port()}"


@contextlib.contextmanager
def pkarr_relay(bootstrap: str, state: Path) -> Iterator[str]:
    """npm pkarr's relay server on the swarm at bootstrap, on 127.0.0.1: its URL, until the block ends."""
    js = pkarr_js(bootstrap, state)  # skips when node or npm pkarr is missing
    command = [js.node, str(RELAY_SCRIPT), "--bootstrap", bootstrap, "--state", str(state / "dht")]
    command += ["--bind", COMMAND_ADDRESS, "--skip", COMMAND_ADDRESS]
    process = subprocess.Popen(
        command, cwd=DIRECTORY, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        line = _first_line(process, START_TIMEOUT)
        started = json.loads(line) if line.startswith("{") else {}
        assert started.get("ok") is True, f"pkarr-relay.mjs did not start: {line}{process.stderr.read()}"  # type: ignore[union-attr]
        # The relay's log lines go to a pipe no one reads: drain it so that the relay never blocks on it.
        threading.Thread(target=process.stdout.read, daemon=True).start()
        yield f"http://127.0.0.1:{started['port']}"
    finally:
        process.kill()
        process.wait()


def _first_line(process: subprocess.Popen, timeout: float) -> str:
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.append(process.stdout.readline()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    reader.join(timeout)
    return lines[0] if lines else ""


# --- a relay that lies ----------------------------------------------------------------------


@dataclass
class Answer:
    """What a LyingRelay sends: a status, headers and a body, optionally slowly (stall seconds before anything)."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    stall: float = 0.0
    drip: bool = False  # one byte of the body at a time, a second apart
    length: bool = True  # a Content-Length header; without one the body ends when the connection closes


class LyingRelay:
    """An HTTP server on 127.0.0.1 whose every answer to GET and PUT is `answer(method, path, body)`."""

    def __init__(self, answer: Callable[[str, str, bytes], Answer]) -> None:
        self.answer = answer
        self.requests: list[tuple[str, str]] = []
        relay = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self._reply("GET", b"")

            def do_PUT(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self._reply("PUT", self.rfile.read(min(length, 4096)))

            def _reply(self, method: str, body: bytes) -> None:
                relay.requests.append((method, self.path))
                answer = relay.answer(method, self.path, body)
                try:
                    time.sleep(answer.stall)
                    self.send_response(answer.status)
                    for name, value in answer.headers.items():
                        self.send_header(name, value)
                    if answer.length and "Content-Length" not in answer.headers:
                        self.send_header("Content-Length", str(len(answer.body)))
                    self.end_headers()
                    if answer.drip:
                        for byte in answer.body:
                            self.wfile.write(bytes([byte]))
                            self.wfile.flush()
                            time.sleep(1.0)
                    else:
                        self.wfile.write(answer.body)
                except OSError:
                    pass  # the client gave up on us, as it should

            def log_message(self, *_: object) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        # A short poll, so that shutdown() at the end of a test returns at once.
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.01,), daemon=True)

    def __enter__(self) -> LyingRelay:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()


class HonestRelay(LyingRelay):
    """A relay that keeps the newest payload PUT under each key (409 for an older one) and serves it; 404 if none.

    It checks nothing else: what it serves is only as good as what was put.
    """

    def __init__(self) -> None:
        self.held: dict[str, bytes] = {}
        super().__init__(self._answer)

    def hold(self, z32: str, payload: bytes) -> None:
        """Hold payload under z32 as if it had been put (an item from another machine, say)."""
        self.held[f"/{z32}"] = payload

    def _answer(self, method: str, path: str, body: bytes) -> Answer:
        if method == "PUT":
            current = self.held.get(path)
            if current is not None and _seq(current) > _seq(body):
                return Answer(409)
            self.held[path] = body
            return Answer(204)
        return Answer(200, self.held[path]) if path in self.held else Answer(404)


def _seq(payload: bytes) -> int:
    return int.from_bytes(payload[64:72], "big")
