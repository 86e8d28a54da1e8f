"""Fixtures for end-to-end tests: a local DHT and machines that run the real `cclink` command.

A `Machine` is a HOME directory of its own (key, ~/.claude, cache) with a fake
`claude` first on PATH; the fake records its argv and cwd so a test can see
what cclink launched. Every machine of a test shares one local DHT swarm.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import terminal

from cclink.dev.testnet import Testnet

SWARM_NODES = 8
COMMAND_TIMEOUT = 120

FAKE_CLAUDE = """#!/bin/sh
# Stand-in for Claude Code: record how cclink started us, then exit 0.
exec "{python}" - "$@" <<'EOF'
import json, os, sys
with open(os.environ["FAKE_CLAUDE_LOG"], "a") as log:
    log.write(json.dumps({{"argv": sys.argv[1:], "cwd": os.getcwd()}}) + "\\n")
EOF
"""


def cclink_command() -> list[str]:
    """The installed console script beside this interpreter, else `python -m cclink`."""
    script = Path(sys.executable).parent / "cclink"
    return [str(script)] if script.exists() else [sys.executable, "-m", "cclink"]


@dataclass
class Launch:
    """One run of the fake claude."""

    argv: list[str]
    cwd: str


class Machine:
    """A separate HOME that runs the real cclink command against the test swarm."""

    def __init__(self, root: Path, name: str, bootstrap: str) -> None:
        self.name = name
        self.home = root / name
        self.home.mkdir(parents=True)
        bin_dir = root / f"{name}-bin"
        bin_dir.mkdir()
        fake = bin_dir / "claude"
        fake.write_text(FAKE_CLAUDE.format(python=sys.executable))
        fake.chmod(0o755)
        self.claude_log = root / f"{name}-claude.log"
        self.env = {
            "HOME": str(self.home),
            "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
            "CCLINK_BOOTSTRAP": bootstrap,
            "FAKE_CLAUDE_LOG": str(self.claude_log),
            "LANG": "C.UTF-8",
        }

    # --- running cclink -------------------------------------------------------------

    def run(
        self,
        *args: str,
        cwd: Path | None = None,
        input: str | bytes | None = None,
        env: dict[str, str] | None = None,
        timeout: float = COMMAND_TIMEOUT,
    ) -> subprocess.CompletedProcess:
        """Run `cclink args...` with no terminal; output is text unless input is bytes."""
        text = not isinstance(input, bytes)
        return subprocess.run(
            [*cclink_command(), *args],
            cwd=cwd or self.home,
            env={**self.env, **(env or {})},
            input=input if input is not None else ("" if text else b""),
            capture_output=True,
            text=text,
            timeout=timeout,
        )

    def spawn(self, *args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.Popen:
        """Start `cclink args...` in the background (text pipes, no stdin); the caller waits for it."""
        return subprocess.Popen(
            [*cclink_command(), *args],
            cwd=cwd or self.home,
            env={**self.env, **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def on_terminal(self, *args: str, exchanges: list[tuple[str, bytes]], cwd: Path | None = None) -> tuple[int, str]:
        """Run `cclink args...` on a pseudo-terminal, typing each reply once its prompt shows; (exit status, output)."""
        return terminal.on_terminal([*cclink_command(), *args], exchanges, env=self.env, cwd=cwd or self.home)

    def ok(self, *args: str, **kwargs) -> subprocess.CompletedProcess:
        """Run cclink and insist that it succeeded."""
        result = self.run(*args, **kwargs)
        assert result.returncode == 0, (
            f"cclink {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
        )
        return result

    def init(self, *, import_from: Path | None = None) -> str:
        """Create (or import) an unencrypted key; return the public key's z32."""
        args = ["init", "--no-passphrase"]
        if import_from is not None:
            args += ["--import", str(import_from)]
        self.ok(*args)
        return self.public_key_z32()

    def public_key_z32(self) -> str:
        return json.loads(self.ok("whoami", "--json").stdout)["public_key"].removeprefix("pk:")

    @property
    def key_file(self) -> Path:
        return self.home / ".pubky" / "secret_key"

    # --- Claude Code sessions -----------------------------------------------------

    def project(self, *parts: str) -> Path:
        path = self.home.joinpath("work", *parts) if parts else self.home / "work" / "app"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def sessions_folder(self, project: Path) -> Path:
        """Where Claude Code keeps this machine's sessions of project (spelled out here, not taken from cclink)."""
        return self.home / ".claude" / "projects" / "".join(c if c.isalnum() else "-" for c in str(project))

    def add_session(self, project: Path, session_id: str | None = None, *, age: float = 0) -> str:
        """Write a session file as Claude Code would, `age` seconds old; return its id."""
        session_id = session_id or str(uuid.uuid4())
        folder = self.sessions_folder(project)
        folder.mkdir(parents=True, exist_ok=True)
        file = folder / f"{session_id}.jsonl"
        lines = [
            {"type": "summary", "summary": "a test session"},
            {
                "type": "user",
                "cwd": str(project),
                "sessionId": session_id,
                "message": {"role": "user", "content": "hi"},
            },
        ]
        file.write_text("".join(json.dumps(line) + "\n" for line in lines))
        if age:
            stamp = time.time() - age
            os.utime(file, (stamp, stamp))
        return session_id

    def launches(self) -> list[Launch]:
        """Every start of the fake claude, oldest first."""
        if not self.claude_log.exists():
            return []
        return [Launch(**json.loads(line)) for line in self.claude_log.read_text().splitlines()]


@pytest.fixture(autouse=True)
def private_state_dir(tmp_path_factory, monkeypatch):
    """In-process code remembers what it saw in a folder of the test's own, never in the developer's."""
    state = tmp_path_factory.mktemp("state")
    monkeypatch.setenv("XDG_STATE_HOME", str(state))
    if sys.platform == "darwin":  # where files.state_dir does not read XDG_STATE_HOME
        from cclink.local import files

        monkeypatch.setattr(files, "state_dir", lambda: state / "cclink")


@pytest.fixture(scope="session")
def swarm():
    """One local DHT for the whole test session."""
    with Testnet(SWARM_NODES) as net:
        yield net


@pytest.fixture
def machines(tmp_path, swarm):
    """A factory of Machines on the shared swarm: machines("laptop"), machines("desktop")."""

    def make(name: str) -> Machine:
        return Machine(tmp_path, name, swarm.bootstrap)

    return make


@pytest.fixture
def laptop(machines) -> Machine:
    return machines("laptop")


@pytest.fixture
def desktop(machines) -> Machine:
    return machines("desktop")


@pytest.fixture
def paired(laptop, desktop) -> tuple[Machine, Machine]:
    """Two machines holding the same key, as after `cclink init --import` on the second."""
    laptop.init()
    desktop.init(import_from=laptop.key_file)
    return laptop, desktop


def require(program: str) -> str:
    """The path of an external program, or skip the test that needs it."""
    path = shutil.which(program)
    if path is None:
        pytest.skip(f"{program} is not installed")
    return path
