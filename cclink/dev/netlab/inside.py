"""What the lab runs inside its namespaces, as subcommands of `python -m cclink.dev.netlab`.

- `node --host ADDR`: one DHT node (a Testnet of one) bound to that address;
- `copy-receive` and `copy-send`: the two ends of the plain TCP copy that a --carry is compared with.
"""

from __future__ import annotations

import argparse
import signal
import socket
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from cclink.dev.netlab.lab import PROG


def node_main(argv: Sequence[str]) -> int:
    """`netlab node --host ADDR`: one Testnet node; prints `ready HOST:PORT`, then obeys `join ENDPOINTS` lines."""
    parser = argparse.ArgumentParser(prog=f"{PROG} node")
    parser.add_argument("--host", required=True)
    parser.add_argument("--lab", default="", help="the lab's tag; only there so that ps shows whose node this is")
    args = parser.parse_args(argv)
    # The lab stops its nodes; a Ctrl-C in the terminal reaches them too and should end them quietly.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    # Imported here: the lab's own process never needs libtorrent.
    from cclink.dev.testnet import Testnet
    from cclink.net.endpoints import parse_bootstrap

    with Testnet(1, host=args.host) as net:
        print(f"ready {net.bootstrap}", flush=True)
        for line in _lines(sys.stdin):
            command, _, rest = line.partition(" ")
            if command == "join":
                net.join(parse_bootstrap(rest))
                print("joined", flush=True)
    return 0  # standard input closed: the lab is gone


def copy_receive_main(argv: Sequence[str]) -> int:
    """`netlab copy-receive --host ADDR --out FILE`: take one connection into FILE.

    Prints `listening PORT` before it waits and `copied SECONDS` once the file is written.
    """
    parser = argparse.ArgumentParser(prog=f"{PROG} copy-receive")
    parser.add_argument("--host", required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    with socket.create_server((args.host, 0)) as server:
        print(f"listening {server.getsockname()[1]}", flush=True)
        connection, _ = server.accept()
        started = time.perf_counter()
        with connection, open(args.out, "xb") as out:
            while chunk := connection.recv(1 << 20):
                out.write(chunk)
        print(f"copied {time.perf_counter() - started:.4f}", flush=True)
    return 0


def copy_send_main(argv: Sequence[str]) -> int:
    """`netlab copy-send --to ADDR:PORT --file FILE`: send FILE's bytes over one TCP connection."""
    parser = argparse.ArgumentParser(prog=f"{PROG} copy-send")
    parser.add_argument("--to", required=True)
    parser.add_argument("--file", type=Path, required=True)
    args = parser.parse_args(argv)
    host, _, port = args.to.rpartition(":")
    with socket.create_connection((host, int(port))) as connection, open(args.file, "rb") as source:
        connection.sendfile(source)
    return 0


def _lines(stream: Iterable[str]) -> Iterator[str]:
    for line in stream:
        if line.strip():
            yield line.strip()
