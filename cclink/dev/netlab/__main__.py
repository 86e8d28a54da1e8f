"""`python -m cclink.dev.netlab`: the command line, the run from preflight to table, signals and cleanup.

The subcommands `node`, `copy-receive` and `copy-send` are what the lab runs
inside its namespaces (inside.py); everything else is a measurement run.
Exit codes: 0, 1 (the lab failed), 2 (bad arguments), 77 (this machine
cannot build the lab: a test skips on it), 130 (interrupted, cleaned up).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from cclink.dev.netlab import wormhole as magic_wormhole
from cclink.dev.netlab.inside import copy_receive_main, copy_send_main, node_main
from cclink.dev.netlab.lab import PROG, WORMHOLE_ADDRESS, CannotRun, Lab, LabError, preflight, say
from cclink.dev.netlab.report import Level, table
from cclink.dev.netlab.trials import run_trial

PREFIX = "cclab"
MAX_NODES = 200
# Exit code for "this machine cannot build the lab": a test skips on it.
CANNOT_RUN = 77
INTERRUPTED = 130


class Interrupted(Exception):
    """SIGTERM or SIGHUP arrived; unwinds like Ctrl-C so that cleanup runs."""


# --- the command line -------------------------------------------------------------------


def parse_loss(text: str) -> list[float]:
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--loss takes percentages like 0,10,30, not '{text}'") from None
    if not values or any(not 0 <= v < 100 for v in values):
        raise argparse.ArgumentTypeError(f"--loss takes percentages from 0 to 99, not '{text}'")
    return values


def parse_trials(text: str) -> list[int]:
    try:
        counts = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--trials takes counts like 20 or 3,1, not '{text}'") from None
    if any(count < 1 for count in counts):
        raise argparse.ArgumentTypeError("--trials counts must be at least 1")
    return counts


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Measure cclink publish + pickup across a lab network with packet loss (needs root, ip, iptables).",
    )
    parser.add_argument(
        "--loss",
        type=parse_loss,
        default=[0.0, 10.0, 30.0],
        metavar="P[,P...]",
        help="loss rates in percent (default 0,10,30)",
    )
    parser.add_argument(
        "--trials", type=parse_trials, default=[20], metavar="N[,N...]",
        help="publish+pickup trials per loss rate, one number for all or one per --loss rate (default 20)",
    )  # fmt: skip
    parser.add_argument(
        "--nodes", type=int, default=8, help=f"DHT nodes, one namespace each (default 8, at most {MAX_NODES})"
    )
    parser.add_argument(
        "--cold", action="store_true", help="forget the clients' cached routing tables before every trial"
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write every result as JSON to PATH")
    parser.add_argument(
        "--check", action="store_true", help="only check that this machine can build the lab, then exit"
    )
    parser.add_argument("--keep", action="store_true", help="keep the lab's scratch folder (logs, homes) after the run")
    parser.add_argument(
        "--debug", action="store_true", help="run cclink with CCLINK_DEBUG=1: internal errors show a traceback"
    )
    parser.add_argument(
        "--carry", type=float, default=0, metavar="MB",
        help="carry the session itself (cclink --carry): a transcript of MB megabytes that the picker does not have",
    )  # fmt: skip
    parser.add_argument(
        "--rate", type=float, default=0, metavar="MBIT",
        help="limit both clients' links to MBIT megabits per second, each way (needs tc; default: unlimited)",
    )  # fmt: skip
    parser.add_argument(
        "--wormhole", type=Path, nargs="?", const=magic_wormhole.default_venv(), metavar="VENV",
        help="with --carry: also send the transcript with magic-wormhole, from its own virtual environment VENV "
        f"(default {magic_wormhole.default_venv()}, made from PyPI on first use)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.wormhole and not args.carry:
        parser.error("--wormhole compares with a carry: it needs --carry MB")
    if not 0 <= args.carry <= 1000:
        parser.error("--carry takes megabytes from 0 to 1000")
    if not 0 <= args.rate <= 100_000:
        parser.error("--rate takes megabits per second from 0 (unlimited) to 100000")
    if len(args.trials) == 1:
        args.trials = args.trials * len(args.loss)
    elif len(args.trials) != len(args.loss):
        parser.error(f"--trials names {len(args.trials)} counts for {len(args.loss)} loss rates")
    if not 1 <= args.nodes <= MAX_NODES:
        parser.error(f"--nodes must be between 1 and {MAX_NODES}")
    return args


def describe(args: argparse.Namespace) -> str:
    """The run's setup, as the table's first line and the JSON's "setup" say it."""
    return (
        f"{args.nodes} DHT nodes, one per namespace; loss dropped on INPUT in every endpoint namespace; "
        f"{'cold' if args.cold else 'warm'} routing-table cache"
        + (
            f"; --carry of a {args.carry:g} MB transcript (publish = until the session is offered)"
            if args.carry
            else ""
        )
        + (f"; clients' links limited to {args.rate:g} Mbit/s each way" if args.rate else "")
        + (
            f"; magic-wormhole {magic_wormhole.VERSION} after each carry (its servers at {WORMHOLE_ADDRESS})"
            if args.wormhole
            else ""
        )
    )


# --- the run ------------------------------------------------------------------------------


def main(argv: Sequence[str]) -> int:
    if argv[:1] == ["node"]:
        return node_main(argv[1:])
    if argv[:1] == ["copy-receive"]:
        return copy_receive_main(argv[1:])
    if argv[:1] == ["copy-send"]:
        return copy_send_main(argv[1:])
    args = parse_args(argv)
    tag = f"{PREFIX}{os.getpid()}"
    try:
        tools = preflight(tag, shaping=args.rate > 0)
    except CannotRun as why:
        say(f"cannot build the lab here: {why}")
        return CANNOT_RUN
    except LabError as error:
        say(f"error: {error}")
        return 1
    if args.check:
        say("this machine can build the lab (root, ip, iptables, namespaces, veth pairs, statistic match)")
        return 0
    try:
        wormhole = magic_wormhole.ensure_venv(args.wormhole) if args.wormhole else None
    except magic_wormhole.WormholeUnavailable as why:
        say(f"error: magic-wormhole: {why}")
        return 1
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)
    workdir = Path(tempfile.mkdtemp(prefix=f"{tag}-"))
    lab = Lab(tools, tag, args.nodes, workdir)
    lab.publisher.debug = lab.picker.debug = args.debug
    levels: list[Level] = []
    setup = describe(args)
    try:
        measure(lab, args, levels, wormhole)
    except (KeyboardInterrupt, Interrupted):
        say("interrupted; cleaning up")
        if any(level.trials for level in levels):
            print(table([level for level in levels if level.trials], setup + " (interrupted)"), flush=True)
        return INTERRUPTED
    except LabError as error:
        say(f"error: {error}")
        return 1
    finally:
        _cleanup(lab, workdir, keep=args.keep)
    print(table(levels, setup), flush=True)
    if args.json:
        args.json.write_text(
            json.dumps({"lab": tag, "setup": setup, "levels": [level.summary() for level in levels]}, indent=2)
        )
    return 0


def measure(lab: Lab, args: argparse.Namespace, levels: list[Level], wormhole: magic_wormhole.Wormhole | None) -> None:
    """Build the lab and run every trial, adding results to `levels` as they come."""
    say(f"building lab {lab.tag}: {args.nodes} DHT node namespaces, clients a and b, scratch folder {lab.workdir}")
    lab.build()
    lab.start_swarm()
    lab.prepare_clients()
    if args.rate:
        lab.set_rate(args.rate)
    if wormhole:
        lab.start_wormhole(wormhole)
    say(f"swarm ready: {', '.join(lab.endpoints)}")
    published: dict[str, str] = {}  # session id -> which trial published it
    for loss, trials in zip(args.loss, args.trials, strict=True):
        lab.set_loss(loss)
        level = Level(loss)
        levels.append(level)
        for number in range(1, trials + 1):
            trial = run_trial(lab, loss, number, args.cold, published, carry=int(args.carry * 1_000_000))
            level.trials.append(trial)
            pickup = "-" if trial.pickup_seconds is None else f"{trial.pickup_seconds:.1f} s"
            verdict = "ok" if trial.ok else f"FAILED ({trial.failure})"
            say(
                f"loss {loss:g}% trial {number}/{trials}: {verdict}; "
                f"publish {trial.publish_seconds:.1f} s, pickup {pickup}"
                + ("" if trial.wormhole_seconds is None else f"; wormhole {trial.wormhole_seconds:.1f} s")
            )


def _interrupt(signum: int, _frame: object) -> None:
    raise Interrupted(signal.Signals(signum).name)


def _cleanup(lab: Lab, workdir: Path, *, keep: bool) -> None:
    """Remove the lab whatever happened; a second Ctrl-C must not cut this short."""
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        lab.close()
        if keep:
            say(f"kept the scratch folder {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
