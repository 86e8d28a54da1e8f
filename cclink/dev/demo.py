"""`cclink demo`: a whole handoff between two throwaway homes on a local DHT."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import textwrap
import uuid
from pathlib import Path

from cclink.dev.testnet import Testnet
from cclink.local import claude
from cclink.net.record_store import RecordStore
from cclink.net.seq_memory import SeqMemory
from cclink.wire import packet
from cclink.wire.keys import PublicKey
from cclink.wire.record import Record

CARRY_READY = "Offering the session"
STAND_IN = """#!/bin/sh
echo "  [stand-in for claude] would now run: claude $* (in $(pwd))"
"""


def run() -> None:
    with tempfile.TemporaryDirectory(prefix="cclink-demo-") as scratch, Testnet(8) as net:
        root = Path(scratch)
        laptop, desktop = _machine(root, "laptop", net), _machine(root, "desktop", net)
        _step(f"A local DHT of {net.size} libtorrent nodes is running on {net.bootstrap}.")

        _step("The laptop creates its key (unencrypted here; `cclink init` asks for a passphrase by default).")
        laptop.cclink("init", "--no-passphrase")
        _step("The desktop imports the same key: that is what lets a plain `cclink pickup` find and open the handoff.")
        desktop.cclink("init", "--import", str(laptop.home / ".pubky" / "secret_key"), "--no-passphrase")

        project = laptop.home / "work" / "my-app"
        session_id = _write_sample_session(laptop.home, project)
        _step(f"Claude Code on the laptop has a session {session_id} for {project}.")
        # This version hands over the session id only; the session file must
        # already be on the desktop (as with a synced ~/.claude).
        _write_sample_session(desktop.home, desktop.home / "work" / "my-app", session_id)

        _step("On the laptop, in the project directory: `cclink`")
        laptop.cclink(cwd=project)

        _step("What the DHT now holds, readable by anyone: a signed record whose only secret part is an age blob.")
        print(textwrap.indent(_public_view(laptop, net), "    "))

        _step("On the desktop: `cclink pickup -y` resolves, verifies, decrypts and resumes.")
        desktop.cclink("pickup", "-y", cwd=desktop.home)

        _step("Without a synced ~/.claude: the desktop's copy is gone, so the laptop sends the session itself.")
        shutil.rmtree(desktop.home / ".claude")
        _step("On the laptop: `cclink --carry` publishes, then seeds the encrypted session until it is fetched.")
        publisher = laptop.start("--carry", cwd=project)
        publisher.show_until(CARRY_READY)
        desktop_project = desktop.home / "work" / "my-app"
        _step(
            f"On the desktop: `cclink pickup -y --project-dir {desktop_project}` "
            "downloads, checks, decrypts and places it."
        )
        desktop.cclink("pickup", "-y", "--project-dir", str(desktop_project), cwd=desktop.home)
        _step("Back on the laptop, cclink saw the download complete and stopped seeding:")
        publisher.show_rest()
        _step("Done. The scratch homes and the local DHT are removed now.")


class _Machine:
    """A throwaway HOME that runs the real cclink command."""

    def __init__(self, home: Path, env: dict[str, str]) -> None:
        self.home = home
        self.env = env

    def cclink(self, *args: str, cwd: Path | None = None, quiet: bool = False) -> str:
        if not quiet:
            print(f"  $ cclink {shlex.join(args)}".rstrip())
        result = subprocess.run(
            [sys.executable, "-m", "cclink", *args],
            cwd=cwd or self.home,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,  # keep the order a terminal would show
            text=True,
        )
        output = result.stdout.rstrip()
        if output and not quiet:
            print(textwrap.indent(output, "    "))
        if result.returncode != 0:
            raise SystemExit(f"demo stopped: cclink {' '.join(args)} exited with {result.returncode}")
        return result.stdout

    def start(self, *args: str, cwd: Path) -> _Running:
        """Start cclink in the background, as in a second terminal."""
        print(f"  $ cclink {shlex.join(args)}")
        process = subprocess.Popen(
            [sys.executable, "-m", "cclink", *args],
            cwd=cwd,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        return _Running(process, args)


class _Running:
    """A cclink command running in the background; its output is shown in order."""

    def __init__(self, process: subprocess.Popen, args: tuple[str, ...]) -> None:
        assert process.stdout is not None  # started with stdout=PIPE
        self.process = process
        self.output = process.stdout
        self.args = args

    def show_until(self, marker: str) -> None:
        for line in self.output:
            print(f"    {line.rstrip()}", flush=True)
            if marker in line:
                return
        self._stopped()

    def show_rest(self) -> None:
        for line in self.output:
            print(f"    {line.rstrip()}", flush=True)
        if self.process.wait() != 0:
            self._stopped()

    def _stopped(self) -> None:
        code = self.process.wait()
        raise SystemExit(f"demo stopped: cclink {' '.join(self.args)} exited with {code}")


def _machine(root: Path, name: str, net: Testnet) -> _Machine:
    home = root / name
    bin_dir = home / "bin"
    bin_dir.mkdir(parents=True)
    stand_in = bin_dir / "claude"
    stand_in.write_text(STAND_IN)
    stand_in.chmod(0o755)
    env = dict(os.environ)
    for variable in ("CCLINK_PASSPHRASE", "CCLINK_PIN", "XDG_CACHE_HOME", "XDG_STATE_HOME"):
        env.pop(variable, None)
    env.update(HOME=str(home), CCLINK_BOOTSTRAP=net.bootstrap, PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}")
    return _Machine(home, env)


def _write_sample_session(home: Path, project: Path, session_id: str | None = None) -> str:
    session_id = session_id or str(uuid.uuid4())
    project.mkdir(parents=True, exist_ok=True)
    folder = home / ".claude" / "projects" / claude.project_dir_name(str(project))
    folder.mkdir(parents=True, exist_ok=True)
    lines = [
        {
            "type": "user",
            "cwd": str(project),
            "sessionId": session_id,
            "message": {"role": "user", "content": "Add a README"},
        },
        {
            "type": "assistant",
            "cwd": str(project),
            "sessionId": session_id,
            "message": {"role": "assistant", "content": "Done."},
        },
    ]
    (folder / f"{session_id}.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return session_id


def _public_view(machine: _Machine, net: Testnet) -> str:
    """The record as any DHT node sees it, fetched the way pickup does."""
    whoami = json.loads(machine.cclink("whoami", "--json", quiet=True))
    publisher = PublicKey.parse(whoami["public_key"])
    item = RecordStore(net.endpoints, seen=SeqMemory.in_memory()).find_item(publisher)
    if item is None:
        return "(nothing found)"
    record = Record.from_json(packet.record_from_message(item.value, publisher) or b"{}")
    shown = json.loads(record.to_json())
    shown["blob"] = shown["blob"][:40] + "...  (age ciphertext of session id, host and path)"
    return f"seq {item.seq}, {len(item.value)} bytes of signed DNS; TXT _cclink:\n" + json.dumps(shown, indent=2)


def _step(text: str) -> None:
    print(f"\n* {text}", flush=True)
