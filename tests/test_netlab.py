"""netlab (cclink.dev.netlab), shortened: publish and pickup across a lab network of namespaces, with and without loss.

The lab-building logic lives only in cclink.dev.netlab; these tests run it as
`python -m cclink.dev.netlab` with small options and read its JSON. They need
root, `ip` and `iptables` (scripts/test installs it); where namespaces cannot
be made netlab says exactly why (exit 77) and the tests skip with that reason.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.netlab]

NETLAB = [sys.executable, "-m", "cclink.dev.netlab"]
SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
CANNOT_RUN = 77
INTERRUPTED = 130
# A trial at 30 % loss takes seconds, or about 20 s when a pickup's first lookups all miss; this is a hang guard.
RUN_TIMEOUT = 600
READY_TIMEOUT = 120


def netlab(*args: str, timeout: float) -> subprocess.CompletedProcess:
    """Run netlab with this interpreter (the .venv one), no terminal."""
    return subprocess.run([*NETLAB, *args], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def lab_possible() -> None:
    """Skip, with netlab's own reason, where this machine cannot build the lab."""
    result = netlab("--check", timeout=60)
    if result.returncode == CANNOT_RUN:
        pytest.skip(result.stderr.strip())
    assert result.returncode == 0, f"netlab --check exited {result.returncode}:\n{result.stderr}"


def namespaces_of(tag: str) -> list[str]:
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return [line.split()[0] for line in listing.splitlines() if line.startswith(f"{tag}-")]


def processes_of(tag: str) -> list[int]:
    """Live processes whose command line names the lab (its DHT nodes carry --lab TAG)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue  # gone meanwhile
        if tag.encode() in argv:
            found.append(int(entry.name))
    return found


def assert_cleaned_up(tag: str) -> None:
    assert namespaces_of(tag) == [], f"namespaces of {tag} left behind"
    assert processes_of(tag) == [], f"processes of {tag} left behind"


def test_lossless_trials_all_succeed_and_a_lossy_run_reports(lab_possible, tmp_path: Path) -> None:
    results = tmp_path / "netlab.json"
    result = netlab("--loss", "0,30", "--trials", "3,1", "--json", str(results), "--debug", timeout=RUN_TIMEOUT)
    assert result.returncode == 0, f"netlab exited {result.returncode}:\n{result.stdout}\n{result.stderr}"

    report = json.loads(results.read_text())
    levels = {level["loss"]: level for level in report["levels"]}
    assert sorted(levels) == [0, 30]
    lossless = levels[0]
    failures = [run["failure"] for run in lossless["runs"] if not run["ok"]]
    assert (lossless["trials"], lossless["successes"]) == (3, 3), failures
    # At 30 % loss only completion is asserted: its success rate is what netlab measures.
    assert levels[30]["trials"] == 1
    # The table names every level and its target.
    rows = {line.split()[0]: line for line in result.stdout.splitlines() if re.match(r"\s*\d+%\s+\d+\s", line)}
    assert set(rows) == {"0%", "30%"}, result.stdout
    assert ">=95%" in rows["30%"]
    assert_cleaned_up(report["lab"])


def test_a_carried_session_crosses_a_limited_link_and_is_compared_with_a_tcp_copy(lab_possible, tmp_path: Path) -> None:
    """The real-network path of --carry: lab addresses, not loopback; the picker never had the session."""
    results = tmp_path / "netlab.json"
    result = netlab(
        "--carry",
        "1",
        "--rate",
        "100",
        "--loss",
        "0",
        "--trials",
        "2",
        "--json",
        str(results),
        "--debug",
        timeout=RUN_TIMEOUT,
    )
    if result.returncode == CANNOT_RUN:
        pytest.skip(result.stderr.strip())  # --rate also needs tc's token bucket filter
    assert result.returncode == 0, f"netlab exited {result.returncode}:\n{result.stdout}\n{result.stderr}"

    report = json.loads(results.read_text())
    (level,) = report["levels"]
    failures = [run["failure"] for run in level["runs"] if not run["ok"]]
    assert (level["trials"], level["successes"]) == (2, 2), failures
    assert "--carry of a 1 MB transcript" in report["setup"]
    assert "limited to 100 Mbit/s" in report["setup"]
    # 1 MB at 100 Mbit/s takes 80 ms, less the token bucket's first 10 ms; unlimited, a few ms.
    assert all(run["copy_seconds"] >= 0.05 for run in level["runs"]), level["runs"]
    assert "total/copy" in result.stdout
    assert_cleaned_up(report["lab"])


class Progress:
    """netlab's stderr, read line by line on a thread, and whether its swarm is up yet."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.lines: list[str] = []
        self.ready = threading.Event()
        self._thread = threading.Thread(target=self._read, args=(process.stderr,), daemon=True)
        self._thread.start()

    def _read(self, stream) -> None:
        for line in stream:
            self.lines.append(line)
            if line.startswith("netlab: swarm ready"):
                self.ready.set()

    def finish(self) -> str:
        self._thread.join(timeout=30)
        return "".join(self.lines)

    @property
    def tag(self) -> str:
        building = next(line for line in self.lines if line.startswith("netlab: building lab "))
        return building.split()[3].rstrip(":")


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_an_interrupted_lab_removes_its_namespaces_and_processes(lab_possible, stop: signal.Signals) -> None:
    process = subprocess.Popen(
        [*NETLAB, "--trials", "100", "--loss", "0"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    progress = Progress(process)
    try:
        assert progress.ready.wait(READY_TIMEOUT), f"netlab never said its swarm was ready:\n{progress.finish()}"
        tag = progress.tag
        assert namespaces_of(tag), "the lab had no namespaces while running"
        process.send_signal(stop)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    said = progress.finish()
    assert process.returncode == INTERRUPTED, said
    assert "interrupted; cleaning up" in said
    assert_cleaned_up(tag)


def test_refuses_a_loss_rate_out_of_range() -> None:
    result = netlab("--loss", "0,150", timeout=60)
    assert result.returncode == 2
    assert "--loss takes percentages from 0 to 99" in result.stderr


def test_refuses_a_wormhole_comparison_without_a_carry() -> None:
    result = netlab("--wormhole", "--loss", "0", timeout=60)
    assert result.returncode == 2
    assert "--wormhole compares with a carry: it needs --carry MB" in result.stderr


def test_refuses_clearly_when_not_root() -> None:
    # As root, run it in a user namespace of its own, where it is not root (and keeps read access to the venv).
    prefix: list[str] = []
    if os.geteuid() == 0:
        unshare = shutil.which("unshare")
        if unshare is None:
            pytest.skip("unshare (util-linux) is not installed, and this test runs as root")
        prefix = [unshare, "--user"]
    result = subprocess.run(
        [*prefix, *NETLAB, "--check"],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == CANNOT_RUN, result.stderr
    assert "cannot build the lab here: not root" in result.stderr


@pytest.mark.parametrize("command", [NETLAB, [str(SCRIPTS / "bench")]], ids=["netlab", "bench"])
def test_netlab_and_the_bench_run_from_anywhere(command: list[str], tmp_path: Path) -> None:
    """netlab as a module of the installed package, the bench by its own first line, from a folder of neither."""
    result = subprocess.run([*command, "--help"], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "usage" in result.stdout.lower()
