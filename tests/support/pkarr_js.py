"""npm pkarr (scripts/pkarr-js), one DHT operation per node process, for the interoperability tests.

scripts/test installs the package there with `npm ci` when node and npm are
present; where either is missing, `pkarr_js` skips the test and says why.
Each operation runs scripts/pkarr-js/pkarr-op.mjs and returns its one line
of JSON; an operation that fails fails the test with node's own words.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from cclink.net.endpoints import COMMAND_ADDRESS
from cclink.wire import payload
from cclink.wire.keys import Identity
from cclink.wire.payload import Payload
from cclink.wire.record import Record, new_record

DIRECTORY = Path(__file__).resolve().parents[2] / "scripts" / "pkarr-js"
OPERATION = DIRECTORY / "pkarr-op.mjs"
INSTALLED = DIRECTORY / "node_modules" / "pkarr" / "package.json"
TIMEOUT = 120.0  # seconds: a guard against hangs, never a measurement


class PkarrJs:
    """npm pkarr on one DHT swarm, with its routing table and its HOME in `state`."""

    def __init__(self, node: str, bootstrap: str, state: Path) -> None:
        self.node = node
        self.bootstrap = bootstrap
        self.state = state
        state.mkdir(parents=True, exist_ok=True)
        self._files = 0

    def publish(self, seed: bytes, txt: bytes) -> dict[str, Any]:
        """Put a pkarr packet holding txt as the `_cclink` TXT record, signed by seed; seq is pkarr's clock."""
        return self._on_swarm("publish", "--seed", seed.hex(), "--txt-file", str(self._file(txt)))

    def resolve(self, z32: str) -> dict[str, Any]:
        """The newest packet under z32, from pkarr's whole lookup: names, TXT, DNS bytes, seq; `found` false if none."""
        return self._on_swarm("resolve", "--key", z32, "--full")

    def encode(self, seed: bytes, txt: bytes) -> dict[str, Any]:
        """The DNS message pkarr would sign for txt under seed, without the network."""
        return self._run("encode", "--seed", seed.hex(), "--txt-file", str(self._file(txt)))

    def _on_swarm(self, *args: str) -> dict[str, Any]:
        # Like cclink's commands, pkarr binds the command address and never asks it:
        # finished commands linger in the swarm's routing tables there, answering nothing.
        where = ["--bootstrap", self.bootstrap, "--state", str(self.state / "dht")]
        return self._run(*args, *where, "--bind", COMMAND_ADDRESS, "--skip", COMMAND_ADDRESS)

    def _run(self, *args: str) -> dict[str, Any]:
        result = subprocess.run(
            [self.node, str(OPERATION), *args],
            cwd=DIRECTORY,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.state), "LANG": "C.UTF-8"},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
        answer = _last_json_line(result.stdout)
        assert answer is not None and answer.get("ok") is True, (
            f"pkarr-op.mjs {args[0]} failed (exit {result.returncode}):\n{result.stdout}\n{result.stderr}"
        )
        return answer

    def _file(self, data: bytes) -> Path:
        self._files += 1
        path = self.state / f"txt-{self._files}"
        path.write_bytes(data)
        return path


def _last_json_line(stdout: str) -> dict[str, Any] | None:
    lines = stdout.strip().splitlines()
    try:
        answer = json.loads(lines[-1]) if lines else None
    except ValueError:
        return None
    return answer if isinstance(answer, dict) else None


def pkarr_js(bootstrap: str, state: Path) -> PkarrJs:
    """npm pkarr on the swarm at bootstrap, or skip the test, saying what is missing."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed, so npm pkarr cannot run")
    if not INSTALLED.exists():
        pytest.skip(
            "npm pkarr is not installed in scripts/pkarr-js/node_modules "
            "(scripts/test runs `npm ci` there when node and npm are present)"
        )
    return PkarrJs(node, bootstrap, state)


# --- cclink's side of what pkarr carries ---------------------------------------------------


def cclink_record(identity: Identity, session_id: str) -> bytes:
    """The TXT of a handoff of session_id, signed by identity and sealed to it, as `cclink <session-id>` makes it."""
    body = Payload(session_id=session_id, hostname="pkarr-js", project="/home/someone/app")
    sealed = payload.seal(body, identity.public_key.age_recipient())
    return new_record(identity, sealed, ttl=86400, now=time.time()).to_json()


def opened_session(txt: str | None, identity: Identity) -> str:
    """The session id in a handoff TXT, once its signature verified under identity's key and it decrypted."""
    assert txt is not None, "the packet holds no _cclink TXT record"
    record = Record.from_json(txt.encode())
    record.verify(identity.public_key)
    return payload.open_payload(record.blob, identity.age_identity()).session_id
