"""`cclink demo`: two throwaway homes on a local DHT pair, then hand a session over, by id and carried."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import tempfile
import textwrap
from pathlib import Path

from cclink.dev.machine import Machine
from cclink.dev.testnet import Testnet
from cclink.net.endpoints import format_bootstrap
from cclink.net.record_store import RecordStore
from cclink.net.seq_memory import SeqMemory
from cclink.wire import packet
from cclink.wire.keys import PublicKey
from cclink.wire.record import Record

CARRY_READY = "Offering the session"
STAND_IN_SAYS = "  [stand-in for claude] would now run: claude {args} (in {cwd})"
SAMPLE_MESSAGES = (("user", "Add a README"), ("assistant", "Done."))


def run() -> None:
    with tempfile.TemporaryDirectory(prefix="cclink-demo-") as scratch, Testnet(8) as net:
        root = Path(scratch)
        laptop, desktop = _machine(root, "laptop", net), _machine(root, "desktop", net)
        _step(f"A local DHT of {net.size} libtorrent nodes is running on {format_bootstrap(net.network.bootstrap)}.")

        _step("Each machine creates its own key (unencrypted here; `cclink init` asks for a passphrase by default).")
        laptop.cclink("init", "--no-passphrase")
        desktop.cclink("init", "--no-passphrase", quiet=True)
        _step(
            "The laptop offers to pair and shows a code; the desktop types it "
            "(-y: there is no terminal to confirm the three words on here; --name: both run on this one host)."
        )
        offer = laptop.start("pair", "-y", "--name", "desktop", cwd=laptop.home)
        code = offer.first_line()
        desktop.cclink("pair", code, "-y", "--name", "laptop", cwd=desktop.home)
        offer.show_rest()

        project = laptop.machine.project("my-app")
        session_id = laptop.add_session(project)
        _step(f"Claude Code on the laptop has a session {session_id} for {project}.")
        # This version hands over the session id only; the session file must
        # already be on the desktop (as with a synced ~/.claude).
        desktop.add_session(desktop.machine.project("my-app"), session_id)

        _step("On the laptop, in the project directory: `cclink`")
        laptop.cclink(cwd=project)

        _step("What the DHT now holds, readable by anyone: a signed record whose only secret part is an age blob.")
        print(textwrap.indent(_public_view(laptop, net), "    "))

        _step("On the desktop: `cclink pickup -y` resolves, verifies, decrypts and resumes.")
        desktop.cclink("pickup", "-y", cwd=desktop.home)

        _step("Without a synced ~/.claude: the desktop's copy is gone, so the laptop sends the session itself.")
        shutil.rmtree(desktop.home / ".claude")
        _step(
            "On the laptop: `cclink --carry` publishes, then offers the encrypted session until it is fetched "
            "(from the command itself here; by default the background agent does, and the command returns)."
        )
        publisher = laptop.start("--carry", cwd=project)
        publisher.show_until(CARRY_READY)
        desktop_project = desktop.home / "work" / "my-app"
        _step(
            f"On the desktop: `cclink pickup -y --project-dir {desktop_project}` "
            "downloads, checks, decrypts and places it."
        )
        desktop.cclink("pickup", "-y", "--project-dir", str(desktop_project), cwd=desktop.home)
        _step("Back on the laptop, cclink saw the recipient's acknowledgement and stopped seeding:")
        publisher.show_rest()
        _step("Done. The scratch homes and the local DHT are removed now.")


class _Shown:
    """A machine (cclink.dev.machine) whose cclink commands are shown as typed, with their output."""

    def __init__(self, machine: Machine) -> None:
        self.machine = machine
        self.home = machine.home

    def add_session(self, project: Path, session_id: str | None = None) -> str:
        """Claude Code's session of project, as the demo shows it: one question, one answer."""
        return self.machine.add_session(project, session_id, summary=None, messages=SAMPLE_MESSAGES)

    def cclink(self, *args: str, cwd: Path | None = None, quiet: bool = False) -> str:
        if not quiet:
            print(f"  $ cclink {shlex.join(args)}".rstrip())
        # stderr into stdout: keep the order a terminal would show
        result = self.machine.run(*args, cwd=cwd, stderr=subprocess.STDOUT, timeout=None)
        output = result.stdout.rstrip()
        if output and not quiet:
            print(textwrap.indent(output, "    "))
        if result.returncode != 0:
            raise SystemExit(f"demo stopped: cclink {' '.join(args)} exited with {result.returncode}")
        return result.stdout

    def start(self, *args: str, cwd: Path) -> _Running:
        """Start cclink in the background, as in a second terminal."""
        print(f"  $ cclink {shlex.join(args)}")
        return _Running(self.machine.spawn(*args, cwd=cwd, stderr=subprocess.STDOUT), args)


class _Running:
    """A cclink command running in the background; its output is shown in order."""

    def __init__(self, process: subprocess.Popen, args: tuple[str, ...]) -> None:
        assert process.stdout is not None  # started with stdout=PIPE
        self.process = process
        self.output = process.stdout
        self.args = args

    def first_line(self) -> str:
        """The first line of output, shown: for `cclink pair`, the code."""
        line = self.output.readline()
        if not line:
            self._stopped()
        print(f"    {line.rstrip()}", flush=True)
        return line.strip()

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


def _machine(root: Path, name: str, net: Testnet) -> _Shown:
    return _Shown(Machine(root, name, net.network, log_claude=False, claude_says=STAND_IN_SAYS))


def _public_view(machine: _Shown, net: Testnet) -> str:
    """The record as any DHT node sees it, fetched the way pickup does."""
    whoami = json.loads(machine.cclink("whoami", "--json", quiet=True))
    publisher = PublicKey.parse(whoami["public_key"])
    item = RecordStore.on_dht(net.network, seen=SeqMemory.in_memory()).find_item(publisher)
    if item is None:
        return "(nothing found)"
    record = Record.from_json(packet.record_from_message(item.value, publisher) or b"{}")
    shown = json.loads(record.to_json())
    shown["blob"] = shown["blob"][:40] + "...  (age ciphertext of session id, host and path)"
    return f"seq {item.seq}, {len(item.value)} bytes of signed DNS; TXT _cclink:\n" + json.dumps(shown, indent=2)


def _step(text: str) -> None:
    print(f"\n* {text}", flush=True)
