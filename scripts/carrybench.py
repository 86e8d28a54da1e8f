"""Benchmark of `cclink --carry` against a plain TCP copy of the same bytes, on loopback.

Run by scripts/bench (or alone: `.venv/bin/python scripts/carrybench.py [--sizes 1,20,200] [--runs 3]`).
For each size it writes a realistic Claude Code transcript, then measures, in
the same run on one local DHT:

- carry: from starting `cclink --carry` on machine A to `cclink pickup` on
  machine B reaching the point where it starts `claude` (packing, encryption,
  seeding, download, SHA-256 check, decryption, unpacking, cwd rewrite and
  placement all included; each command is one process, as a user runs it);
- tcp: sending the transcript's bytes over one TCP connection on 127.0.0.1
  from a reader of the source file into a new destination file;
- wormhole (issue 17): magic-wormhole's `wormhole send` of the session file
  and `wormhole receive` of it into a new file, one process each, through a
  mailbox server and a transit relay of its own on 127.0.0.1, the receiver
  started once the sender has said its code (as the picker starts once the
  publisher offers the session). magic-wormhole lives in a virtual
  environment of its own, made from PyPI on first use
  (cclink/dev/netlab/wormhole.py); where that fails, or with --no-wormhole,
  the column is skipped with a note.

All end when the bytes are in the destination file, in the page cache: cclink
does not fsync the session it places, and neither do cp, scp or nc. Each is
then also timed until an fsync of that file returns (durable), so the
comparison is like for like either way.

It prints median, min and max of each, the ratios of the medians, and the
peak memory (max RSS) of the publishing and the picking process, which must not grow with size.
Last, lower bounds for a carry on this machine: parts no carry can skip, each timed alone.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import pyrage  # noqa: E402
import zstandard  # noqa: E402

from cclink.dev.machine import Machine  # noqa: E402
from cclink.dev.netlab import wormhole as magic_wormhole  # noqa: E402
from cclink.dev.testnet import Testnet  # noqa: E402
from cclink.dev.transcript import write_transcript  # noqa: E402
from cclink.net.endpoints import Network  # noqa: E402
from cclink.wire import archive  # noqa: E402

READY = "Offering the session"


# What `cclink --carry` and `cclink pickup` import before they work.
CARRY_MODULES = (
    "cclink.cli.app, cclink.flows.publish, cclink.flows.pickup, "
    "cclink.flows.carry, cclink.flows.acknowledgement, cclink.flows.placing"
)


def new_machine(root: Path, name: str, network: Network) -> Machine:
    """A HOME of its own whose claude only exits 0 (cclink.dev.machine)."""
    return Machine(root, name, network, log_claude=False)


def cclink_ok(machine: Machine, *args: str) -> None:
    result = machine.run(*args, timeout=None)
    if result.returncode != 0:
        raise subprocess.CalledProcessError(result.returncode, result.args, result.stdout, result.stderr)


@dataclass
class Timing:
    """Seconds until the copy is in its file, and until it is also on disk (after an fsync)."""

    done: float
    durable: float


def measure_carry(
    laptop: Machine, desktop: Machine, project: Path, session_id: str, scratch: Path
) -> tuple[Timing, int, int]:
    """Time from starting the publisher to the picker's exit, and the peak RSS (KiB) of publisher and picker."""
    incoming = desktop.home / ".claude"
    shutil.rmtree(incoming, ignore_errors=True)
    publisher_peak, picker_peak = scratch / "publisher.rss", scratch / "picker.rss"
    target = desktop.home / "work"
    target.mkdir(exist_ok=True)
    placed = desktop.sessions_folder(target) / f"{session_id}.jsonl"
    start = time.perf_counter()
    publisher = laptop.spawn(
        "--carry", session_id, cwd=project, wrap=with_peak(publisher_peak), stdout=subprocess.DEVNULL
    )
    for line in publisher.stderr:
        if READY in line:
            break
    else:
        raise RuntimeError(f"the publisher stopped: exit {publisher.wait()}")
    picker = desktop.run("pickup", "-y", "--project-dir", str(target), wrap=with_peak(picker_peak), timeout=None)
    done = time.perf_counter() - start
    if picker.returncode != 0:
        publisher.kill()
        raise RuntimeError(f"pickup failed: {picker.stderr.strip()}")
    fsync_file(placed)
    durable = time.perf_counter() - start
    publisher.communicate(timeout=60)
    return Timing(done, durable), read_peak(publisher_peak), read_peak(picker_peak)


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# A child's peak RSS as the kernel counts it for this process's children
# includes this (large) process: fork and exec carry the parent's high-water
# mark over. GNU time's child is forked from a small process instead.
GNU_TIME = shutil.which("time")


def with_peak(report: Path) -> list[str]:
    """A command prefix that writes the command's peak RSS in KiB to report (nothing when GNU time is missing)."""
    return [GNU_TIME, "-f", "%M", "-o", str(report)] if GNU_TIME else []


def read_peak(report: Path) -> int:
    try:
        return int(report.read_text().split()[-1])
    except (OSError, ValueError, IndexError):
        return 0


def measure_tcp(source: Path, destination: Path) -> Timing:
    """Time to copy source's bytes over one loopback TCP connection into a new file, destination."""
    destination.unlink(missing_ok=True)  # truncating the last copy would be timed too
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    done: list[float] = []

    def receive() -> None:
        connection, _ = server.accept()
        with connection, open(destination, "wb") as out:
            while chunk := connection.recv(1 << 20):
                out.write(chunk)
            out.flush()
            done.append(time.perf_counter())
            os.fsync(out.fileno())

    start = time.perf_counter()
    receiver = threading.Thread(target=receive)
    receiver.start()
    with socket.create_connection(("127.0.0.1", port)) as sender, open(source, "rb") as f:
        sender.sendfile(f)
    receiver.join()
    durable = time.perf_counter() - start
    server.close()
    return Timing(done[0] - start, durable)


def measure_floor(session_file: Path) -> tuple[float, float, float]:
    """Seconds for two cclink start-ups (imports only), zstd alone as cclink runs it, and age alone without zstd."""
    start = time.perf_counter()
    for _ in range(2):
        # os._exit: pickup replaces itself with claude, so no interpreter shutdown is on a carry's path
        subprocess.run(
            [sys.executable, "-c", f"import {CARRY_MODULES}, os; os._exit(0)"],
            check=True,
        )
    startups = time.perf_counter() - start
    with open(session_file, "rb") as source, open(os.devnull, "wb") as sink:
        start = time.perf_counter()
        zstandard.ZstdCompressor(level=archive.COMPRESS_LEVEL, threads=-1).copy_stream(
            source, sink, read_size=archive.CHUNK, write_size=archive.CHUNK
        )
        compress = time.perf_counter() - start
    recipient = pyrage.x25519.Identity.generate().to_public()
    with open(session_file, "rb", buffering=archive.CHUNK) as source, open(os.devnull, "wb") as sink:
        start = time.perf_counter()
        pyrage.encrypt_io(source, sink, [recipient])
        encrypt = time.perf_counter() - start
    return startups, compress, encrypt


def rss(peaks: list[int]) -> str:
    return f"{max(peaks) / 1024:.0f} MiB" if all(peaks) else "? (needs GNU time)"


def summary(values: list[float]) -> str:
    return f"{statistics.median(values):5.2f} s ({min(values):.2f}-{max(values):.2f})"


def ratio(carry: list[float], tcp: list[float]) -> str:
    return f"{statistics.median(carry) / statistics.median(tcp):5.1f}x"


def floor_line(size_mb: int, floors: list[tuple[float, float, float]], tcp: list[float]) -> str:
    copy = statistics.median(tcp)
    parts = [statistics.median(values) for values in zip(*floors, strict=True)]
    return f"{size_mb:>5} MB  " + "".join(f"{f'{part:.2f} s ({part / copy:.1f}x)':<21}" for part in parts)


def new_session(laptop: Machine, root: Path, name: str, size_mb: int) -> tuple[Path, str, Path]:
    """A project folder and a transcript of size_mb in laptop's ~/.claude: (project, session id, session file)."""
    project = root / name
    project.mkdir()
    session_id = str(uuid.uuid4())
    session_file = laptop.session_file(project, session_id)
    write_transcript(session_file, str(project), session_id, size_mb * 1024 * 1024)
    return project, session_id, session_file


def warm_up(laptop: Machine, desktop: Machine, root: Path, wormhole: WormholeSide | None) -> None:
    """A carry (and a wormhole) not counted: a new swarm is busy meeting itself, and first commands read cold files."""
    project, session_id, session_file = new_session(laptop, root, "warm-up", 1)
    measure_carry(laptop, desktop, project, session_id, root)
    if wormhole:
        wormhole.measure(session_file, root / "wormhole-copy")
    session_file.unlink()


@dataclass
class WormholeSide:
    """magic-wormhole's virtual environment and its local servers, for the run."""

    wormhole: magic_wormhole.Wormhole
    servers: magic_wormhole.Servers
    routes: set[str]

    def measure(self, source: Path, destination: Path) -> Timing:
        """Time wormhole send and receive of source into destination, and again until an fsync of it returns."""
        transfer = magic_wormhole.send_file(self.wormhole, self.servers, source, destination, loopback_only=True)
        self.routes.add(transfer.route)
        start = time.perf_counter()
        fsync_file(destination)
        return Timing(transfer.seconds, transfer.seconds + time.perf_counter() - start)


def start_wormhole(root: Path) -> tuple[WormholeSide | None, str]:
    """magic-wormhole with its servers on 127.0.0.1, or None and why not."""
    try:
        wormhole = magic_wormhole.ensure_venv(magic_wormhole.default_venv())
        servers = magic_wormhole.Servers(wormhole, "127.0.0.1", root)
    except magic_wormhole.WormholeUnavailable as why:
        return None, str(why)
    return WormholeSide(wormhole, servers, set()), ""


def run(sizes_mb: list[int], runs: int, *, wormhole: bool = True) -> list[str]:
    lines, floor_lines, wormhole_lines = [], [], []
    with (
        tempfile.TemporaryDirectory(prefix="cclink-carrybench-", dir="/tmp") as scratch,
        Testnet(8) as net,
        contextlib.ExitStack() as stack,
    ):
        root = Path(scratch)
        laptop, desktop = new_machine(root, "laptop", net.network), new_machine(root, "desktop", net.network)
        cclink_ok(laptop, "init", "--no-passphrase")
        cclink_ok(desktop, "init", "--no-passphrase", "--import", str(laptop.key_file))
        side, skipped = start_wormhole(root) if wormhole else (None, "--no-wormhole")
        if side:
            stack.callback(side.servers.close)
        lines.append(
            f"carry vs TCP copy on 127.0.0.1, {runs} runs per size, local DHT of {net.size} nodes; median (min-max)"
        )
        lines.append(
            f"{'':8}  {'until the copy is in its file (page cache)':<54}  {'until it is on disk too (fsync)':<54}"
        )
        lines.append(
            f"{'size':>8}  {'carry':<21}{'tcp copy':<21}{'ratio':>6}      "
            f"{'carry':<21}{'tcp copy':<21}{'ratio':>6}      max RSS publisher / picker"
        )
        warm_up(laptop, desktop, root, side)
        for size_mb in sizes_mb:
            project, session_id, session_file = new_session(laptop, root, f"p{size_mb}", size_mb)
            carry, tcp, wormholes, publisher_peaks, picker_peaks, floors = [], [], [], [], [], []
            for _ in range(runs):
                # Each measurement starts with nothing left for the disk to write
                # back, which would otherwise slow whichever comes next.
                os.sync()
                timing, publisher_peak, picker_peak = measure_carry(laptop, desktop, project, session_id, root)
                carry.append(timing)
                publisher_peaks.append(publisher_peak)
                picker_peaks.append(picker_peak)
                os.sync()
                tcp.append(measure_tcp(session_file, root / "tcp-copy"))
                if side:
                    os.sync()
                    wormholes.append(side.measure(session_file, root / "wormhole-copy"))
                floors.append(measure_floor(session_file))
            done = [t.done for t in carry], [t.done for t in tcp]
            durable = [t.durable for t in carry], [t.durable for t in tcp]
            lines.append(
                f"{size_mb:>5} MB  {summary(done[0]):<21}{summary(done[1]):<21}{ratio(*done)}      "
                f"{summary(durable[0]):<21}{summary(durable[1]):<21}{ratio(*durable)}      "
                f"{rss(publisher_peaks)} / {rss(picker_peaks)}"
            )
            if side:
                wormhole_lines.append(wormhole_line(size_mb, carry, wormholes))
            floor_lines.append(floor_line(size_mb, floors, done[1]))
            session_file.unlink()
    lines.extend(CARRY_NOTES)
    lines.extend(wormhole_table(runs, wormhole_lines, side, skipped))
    lines.append("Lower bounds on this machine: each part timed alone (median, and its ratio to the plain tcp copy)")
    lines.append(f"{'size':>8}  {'two start-ups':<21}{'zstd, all cores':<21}{'age alone':<21}")
    lines.extend(floor_lines)
    lines.extend(FLOOR_NOTES)
    return lines


def wormhole_line(size_mb: int, carry: list[Timing], wormholes: list[Timing]) -> str:
    """One size: carry beside wormhole, both ways of timing, and whether carry is at most as slow (issue 17)."""
    done = [t.done for t in carry], [t.done for t in wormholes]
    durable = [t.durable for t in carry], [t.durable for t in wormholes]
    met = statistics.median(done[0]) <= statistics.median(done[1])
    return (
        f"{size_mb:>5} MB  {summary(done[0]):<21}{summary(done[1]):<21}{ratio(*done)}      "
        f"{summary(durable[0]):<21}{summary(durable[1]):<21}{ratio(*durable)}      {'met' if met else 'NOT met'}"
    )


def wormhole_table(runs: int, rows: list[str], side: WormholeSide | None, skipped: str) -> list[str]:
    if side is None:
        return [f"carry vs magic-wormhole: skipped ({skipped})"]
    routes = " and ".join(sorted(side.routes))
    return [
        f"carry vs magic-wormhole {magic_wormhole.VERSION} on 127.0.0.1, the same {runs} runs; median (min-max)",
        f"{'':8}  {'until the file is complete (page cache)':<54}  {'until it is on disk too (fsync)':<54}",
        f"{'size':>8}  {'carry':<21}{'wormhole':<21}{'ratio':>6}      "
        f"{'carry':<21}{'wormhole':<21}{'ratio':>6}      carry at most as slow",
        *rows,
        "  wormhole: `wormhole send --code` and `wormhole receive --accept-file`, one process each, through a mailbox",
        "    server and a transit relay of its own on 127.0.0.1, offering only 127.0.0.1 for direct connections;",
        f"    route taken: {routes}. It sends the file as it is (no compression), encrypted with NaCl's secretbox.",
    ]


FLOOR_NOTES = [
    "  Two start-ups: the interpreter and cclink's imports, once for `cclink --carry` and once for `cclink pickup`.",
    "  zstd: compressing the transcript as cclink does (level 3, all cores). age alone: encrypting it uncompressed",
    "    instead (pyrage, one core). A carry needs the start-ups and one of the other two, and more: the record,",
    "    the transfer, two hashes, decryption, decompression, the rewrite and the write of the session.",
]

CARRY_NOTES = [
    "  Max RSS is GNU time's, file-backed pages included (libtorrent maps the file it seeds or fetches). The",
    (
        "    publisher's grows with size only until zstd's multi-threaded buffers reach their cap "
        "(93 / 66 MiB at 600 MB, 2026-11-23)."
    ),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,20,200", help="transcript sizes in MB, comma-separated")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-wormhole", action="store_true", help="skip magic-wormhole (and its first-use install)")
    args = parser.parse_args()
    for line in run([int(s) for s in args.sizes.split(",")], args.runs, wormhole=not args.no_wormhole):
        print(line, flush=True)


if __name__ == "__main__":
    main()
