"""Machines for the tests: cclink.dev.machine's Machine, with the checks a test makes on what it runs."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from cclink.dev import machine
from cclink.net.endpoints import Network
from support import terminal

SWARM_NODES = 8


def sessions_folder_name(project: str) -> str:
    """The folder Claude Code keeps project's sessions in: spelled out here, not taken from cclink."""
    return "".join(c if c.isalnum() else "-" for c in project)


class Machine(machine.Machine):
    """A separate HOME that runs the real cclink command against a test swarm; its claude records each launch."""

    def __init__(self, root: Path, name: str, network: Network) -> None:
        super().__init__(root, name, network, folder_name=sessions_folder_name)

    def on_terminal(self, *args: str, exchanges: list[tuple[str, bytes]], cwd: Path | None = None) -> tuple[int, str]:
        """Run `cclink args...` on a pseudo-terminal, typing each reply once its prompt shows; (exit status, output)."""
        return terminal.on_terminal(self.command(*args), exchanges, env=self.env, cwd=cwd or self.home)

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


def require(program: str) -> str:
    """The path of an external program, or skip the test that needs it."""
    path = shutil.which(program)
    if path is None:
        pytest.skip(f"{program} is not installed")
    return path
