"""Machines whose commands start the background agent, and making sure none outlives its test.

An `AgentMachine` is a test Machine with the agent allowed and a runtime
directory of its own under /tmp (short, so that the socket's path stays
within AF_UNIX's limit). `stop_agent` ends its agent whatever state it is
in: one still starting (a command starts it without waiting) is ended
too, and one that will not stop is killed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import time
from pathlib import Path

from cclink.local import runtime
from cclink.net import agent
from cclink.net.endpoints import Network
from support.machines import Machine

ENDING_WAIT = 15.0  # a guard against hangs, never a measurement


class AgentMachine(Machine):
    def __init__(self, root: Path, name: str, network: Network) -> None:
        super().__init__(root, name, network)
        self.agent = True
        self.runtime_dir = Path(tempfile.mkdtemp(prefix="ccrun", dir="/tmp"))

    @property
    def place(self) -> agent.Place:
        """Where this machine's agent lives, as its commands find it."""
        tag = agent.network_tag(self.network)
        directory = runtime.socket_dir(self.env)
        state = self.home / ".local" / "state" / "cclink"
        return agent.Place(
            directory / f"agent{tag}.sock",
            directory / f"agent{tag}.lock",
            state / f"kept{tag}.json",
            state / f"agent{tag}.log",
            state / f"carry{tag}",
        )

    def agent_pid(self, *, wait: float = 0.0) -> int | None:
        """The pid of this machine's agent once it answers (within wait seconds), else None."""
        answer = agent.wait_for(self.place, timeout=wait)
        return answer.pid if answer is not None else None

    def stop_agent(self) -> None:
        """End every agent this machine's commands started, answering or still starting; remove its runtime directory.

        They are found by their environment (this HOME), since a command starts its agent without waiting for it.
        """
        if self.agent_pid() is not None:
            agent.stop(self.place)
        for pid in self.agent_processes():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)  # one still starting, before it could be asked
            if not _ended(pid, ENDING_WAIT):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.runtime_dir, ignore_errors=True)

    def agent_processes(self) -> list[int]:
        """The running `cclink agent --foreground` processes whose HOME is this machine's."""
        home = f"HOME={self.home}".encode()
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
                environ = (entry / "environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"agent" in argv and b"--foreground" in argv and home in environ and not _is_zombie(int(entry.name)):
                found.append(int(entry.name))
        return found


def _ended(pid: int, timeout: float) -> bool:
    give_up = time.monotonic() + timeout
    while time.monotonic() < give_up:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        if _is_zombie(pid):  # ended, and not yet reaped by whoever its parent is now
            return True
        time.sleep(0.05)
    return False


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[:1] == ["Z"]
