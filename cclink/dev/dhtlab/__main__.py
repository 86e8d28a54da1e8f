"""`python -m cclink.dev.dhtlab`: run a lab until interrupted, and print the line that makes cclink use it.

Exit codes: 0 (stopped by Ctrl-C or SIGTERM), 1 (this machine cannot hold
the lab: addresses, ports, open files), 2 (bad arguments).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from collections.abc import Sequence

from cclink.dev.dhtlab.lab import DEFAULT_PORT, Lab, LabError
from cclink.errors import UsageError

PROG = "python -m cclink.dev.dhtlab"


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="A simulated Mainline DHT of many nodes on loopback addresses, in one process. "
        "Prints the line that makes cclink in another shell use it, then serves until Ctrl-C.",
    )
    parser.add_argument("--nodes", type=int, default=5000, help="live nodes (default 5000)")
    parser.add_argument(
        "--dead", type=float, default=0.3, help="share of routing-table entries where nothing answers (default 0.3)"
    )
    parser.add_argument(
        "--loss", type=float, default=0.02, help="probability a datagram is lost, each way (default 0.02)"
    )
    parser.add_argument("--rtt", type=float, default=80, help="median round trip in milliseconds (default 80)")
    parser.add_argument("--slow", type=float, default=0.05, help="share of nodes 10x slower than drawn (default 0.05)")
    parser.add_argument("--seed", type=int, default=None, help="the seed the whole lab follows (default: random)")
    parser.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help=f"the nodes' UDP port (default {DEFAULT_PORT}; 0: any free one each)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    started = time.monotonic()
    try:
        lab = Lab(
            args.nodes,
            dead=args.dead,
            loss=args.loss,
            median_rtt=args.rtt / 1000,
            slow=args.slow,
            seed=args.seed,
            port=args.port,
        )
    except UsageError as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return 2
    try:
        lab.start()
    except LabError as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return 1
    try:
        print(lab.export_line(), flush=True)
        print(f"{lab.describe()}; started in {time.monotonic() - started:.1f} s.", file=sys.stderr)
        print("Run the line above in other shells. Ctrl-C stops.", file=sys.stderr, flush=True)
        # Short waits: a signal handler runs only when the main thread wakes.
        while not stop.wait(0.5):
            pass
        stats = lab.stats()
    finally:
        lab.stop()
    queries = ", ".join(f"{method} {count}" for method, count in stats.queries.most_common())
    print(f"Queries received: {queries or 'none'}; {stats.lost_in + stats.lost_out} datagrams lost.", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
