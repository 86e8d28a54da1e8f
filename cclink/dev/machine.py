"""A throwaway machine that runs the real `cclink` command: for the tests, the demo, the bench and the lab.

A `Machine` is a HOME directory of its own (key, ~/.claude, cache) with a
stand-in `claude` first on PATH, and the environment to run cclink in: HOME,
PATH, the network (CCLINK_NETWORK, CCLINK_BOOTSTRAP), LANG and a runtime
directory of its own (XDG_RUNTIME_DIR), nothing else inherited that could
steer cclink. Its commands start no background agent (CCLINK_AGENT=off)
unless it is made with `agent=True`; whoever makes one so stops its agent
(`cclink agent stop`), so that nothing outlives a test, the demo or the bench.
The stand-in can record how cclink started it (argv and cwd, one JSON line
each time: `launches()`) and say a line of its own; without either it only
exits 0, which costs no interpreter start-up (what the bench times).

Where cclink must run under something else, inside a network namespace or
under a timer, that is a `prefix` of the machine (every command) or a `wrap`
of one command, never another copy of this class.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cclink.local import claude
from cclink.net.agent import AGENT_ENV
from cclink.net.agent import OFF as AGENT_OFF
from cclink.net.endpoints import PUBLIC, Network

COMMAND_TIMEOUT = 120.0  # seconds: a guard against hangs, never a measurement

STAND_IN = """#!/bin/sh
# Stand-in for Claude Code: note how cclink started us (log), say a line (say), exit 0.
exec "{python}" - "$@" <<'EOF'
import json, os, sys
argv, cwd = sys.argv[1:], os.getcwd()
log, say = {log!r}, {say!r}
if log:
    with open(log, "a") as out:
        out.write(json.dumps({{"argv": argv, "cwd": cwd}}) + "\\n")
if say:
    print(say.format(args=" ".join(argv), cwd=cwd), flush=True)
EOF
"""
SILENT_STAND_IN = "#!/bin/sh\nexit 0\n"


def cclink_command() -> list[str]:
    """The installed console script beside this interpreter, else `python -m cclink`."""
    script = Path(sys.executable).parent / "cclink"
    return [str(script)] if script.exists() else [sys.executable, "-m", "cclink"]


@dataclass
class Launch:
    """One run of the stand-in claude."""

    argv: list[str]
    cwd: str


def session_line(project: Path, session_id: str, role: str, content: str) -> dict[str, Any]:
    """One message of a session file, as Claude Code writes it."""
    return {"type": role, "cwd": str(project), "sessionId": session_id, "message": {"role": role, "content": content}}


class Machine:
    """A separate HOME under root that runs the real cclink command on one DHT (network; a Testnet's, say).

    Its files: root/name (HOME), root/name-bin/claude (the stand-in),
    root/name-claude.log (the stand-in's record, with `log_claude`).
    `claude_says` is a line the stand-in prints, with {args} and {cwd} in it.
    `folder_name` names a project's sessions folder (Claude Code's rule;
    tests pass a spelling of their own). `extra_env` is added to the
    environment and `prefix` goes before every cclink command. `agent`
    lets its commands start the background agent, whose socket goes in
    `runtime_dir` (root/name-run unless given; a short one keeps the
    socket's own path under AF_UNIX's limit).
    """

    def __init__(
        self,
        root: Path,
        name: str,
        network: Network = PUBLIC,
        *,
        log_claude: bool = True,
        claude_says: str | None = None,
        folder_name: Callable[[str], str] = claude.project_dir_name,
        extra_env: Mapping[str, str] | None = None,
        prefix: Sequence[str] = (),
        agent: bool = False,
        runtime_dir: Path | None = None,
    ) -> None:
        self.name = name
        self.root = root
        self.home = root / name
        self.home.mkdir(parents=True)
        self.bin_dir = root / f"{name}-bin"
        self.bin_dir.mkdir()
        self.claude_log = root / f"{name}-claude.log"
        self.network = network
        self.folder_name = folder_name
        self.extra_env = dict(extra_env or {})
        self.prefix = list(prefix)
        self.agent = agent
        self.runtime_dir = runtime_dir or root / f"{name}-run"
        self.runtime_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        stand_in = self.bin_dir / "claude"
        if log_claude or claude_says:
            log = str(self.claude_log) if log_claude else ""
            stand_in.write_text(STAND_IN.format(python=sys.executable, log=log, say=claude_says or ""))
        else:
            stand_in.write_text(SILENT_STAND_IN)
        stand_in.chmod(0o755)

    @property
    def env(self) -> dict[str, str]:
        """The environment cclink runs in: built from scratch, so the caller's CCLINK_* and XDG_* stay out."""
        return {
            "HOME": str(self.home),
            "PATH": f"{self.bin_dir}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
            **self.network.environment(),
            "LANG": "C.UTF-8",
            "XDG_RUNTIME_DIR": str(self.runtime_dir),
            **({} if self.agent else {AGENT_ENV: AGENT_OFF}),
            **self.extra_env,
        }

    # --- running cclink -------------------------------------------------------------

    def command(self, *args: str) -> list[str]:
        """The argv that runs `cclink args...` on this machine (behind its prefix)."""
        return [*self.prefix, *cclink_command(), *args]

    def run(
        self,
        *args: str,
        cwd: Path | None = None,
        input: str | bytes | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = COMMAND_TIMEOUT,
        wrap: Sequence[str] = (),
        stderr: int = subprocess.PIPE,
    ) -> subprocess.CompletedProcess:
        """Run `cclink args...` with no terminal; output is text unless input is bytes.

        `wrap` goes before the command (a timer, prlimit); `stderr=subprocess.STDOUT` keeps the order a terminal shows.
        """
        text = not isinstance(input, bytes)
        return subprocess.run(
            [*wrap, *self.command(*args)],
            cwd=cwd or self.home,
            env={**self.env, **(env or {})},
            input=input if input is not None else ("" if text else b""),
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=text,
            timeout=timeout,
        )

    def spawn(
        self,
        *args: str,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
        wrap: Sequence[str] = (),
        stdout: int = subprocess.PIPE,
        stderr: int = subprocess.PIPE,
        text: bool = True,
    ) -> subprocess.Popen:
        """Start `cclink args...` in the background (pipes, no stdin); the caller waits for it."""
        return subprocess.Popen(
            [*wrap, *self.command(*args)],
            cwd=cwd or self.home,
            env={**self.env, **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            text=text,
        )

    @property
    def key_file(self) -> Path:
        return self.home / ".pubky" / "secret_key"

    # --- Claude Code sessions -----------------------------------------------------

    def project(self, *parts: str) -> Path:
        """A project directory below ~/work (~/work/app unless named), created."""
        path = self.home.joinpath("work", *parts) if parts else self.home / "work" / "app"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def sessions_folder(self, project: Path) -> Path:
        """Where Claude Code keeps this machine's sessions of project."""
        return self.home / ".claude" / "projects" / self.folder_name(str(project))

    def session_file(self, project: Path, session_id: str) -> Path:
        """The file of session_id of project (its folder created, the file not)."""
        folder = self.sessions_folder(project)
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f"{session_id}.jsonl"

    def add_session(
        self,
        project: Path,
        session_id: str | None = None,
        *,
        age: float = 0,
        summary: str | None = "a test session",
        messages: Sequence[tuple[str, str]] = (("user", "hi"),),
    ) -> str:
        """Write a session file as Claude Code would (a summary line, then messages), `age` seconds old; its id."""
        session_id = session_id or str(uuid.uuid4())
        file = self.session_file(project, session_id)
        lines = [{"type": "summary", "summary": summary}] if summary is not None else []
        lines += [session_line(project, session_id, role, content) for role, content in messages]
        file.write_text("".join(json.dumps(line) + "\n" for line in lines))
        if age:
            stamp = time.time() - age
            os.utime(file, (stamp, stamp))
        return session_id

    def launches(self) -> list[Launch]:
        """Every start of the stand-in claude, oldest first (with `log_claude`)."""
        if not self.claude_log.exists():
            return []
        return [Launch(**json.loads(line)) for line in self.claude_log.read_text().splitlines()]
