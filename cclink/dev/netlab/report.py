"""The results: every trial of one loss rate (a `Level`), the median and worst of its times, and the table printed.

A `Level`'s summary is also what --json writes.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from cclink.dev.netlab.lab import WORMHOLE_ADDRESS
from cclink.dev.netlab.trials import Trial

# Success rate (percent) wanted at a given loss (percent).
TARGETS = {10: 100.0, 30: 95.0}


@dataclass
class Level:
    """Every trial at one loss rate."""

    loss: float
    trials: list[Trial] = field(default_factory=list)

    @property
    def successes(self) -> int:
        return sum(trial.ok for trial in self.trials)

    @property
    def rate(self) -> float:
        return 100.0 * self.successes / len(self.trials) if self.trials else 0.0

    @property
    def target(self) -> float | None:
        return TARGETS.get(int(self.loss)) if float(self.loss).is_integer() else None

    def summary(self) -> dict:
        return {
            "loss": self.loss,
            "trials": len(self.trials),
            "successes": self.successes,
            "success_rate": self.rate,
            "target": self.target,
            "target_met": None if self.target is None else self.rate >= self.target,
            "publish": _spread([t.publish_seconds for t in self.trials]),
            "pickup": _spread([t.pickup_seconds for t in self.trials if t.pickup_seconds is not None]),
            "total": _spread([t.total_seconds for t in self.trials if t.pickup_seconds is not None]),
            "tcp_copy": _spread([t.copy_seconds for t in self.trials if t.copy_seconds is not None]),
            "wormhole": _spread([t.wormhole_seconds for t in self.trials if t.wormhole_seconds is not None]),
            "runs": [asdict(trial) for trial in self.trials],
        }


def _spread(values: list[float]) -> dict:
    if not values:
        return {"median": None, "worst": None}
    return {"median": statistics.median(values), "worst": max(values)}


def table(levels: Sequence[Level], setup: str) -> str:
    """The results as a text table, with the targets beside them and the failures below."""
    copies = any(t.copy_seconds is not None for level in levels for t in level.trials)
    wormholes = any(t.wormhole_seconds is not None for level in levels for t in level.trials)
    rows = [
        f"netlab: {setup}",
        "",
        f"{'loss':>5}  {'trials':>6}  {'success':>7}  {'target':>7}  {'met':>3}  "
        f"{'publish med/worst':>17}  {'pickup med/worst':>17}  {'total med/worst':>17}"
        + (f"  {'tcp copy med/worst':>18}  {'total/copy':>10}" if copies else "")
        + (f"  {'wormhole med/worst':>18}  {'total/wormhole':>14}" if wormholes else ""),
    ]
    for level in levels:
        s = level.summary()
        target = (
            "-"
            if level.target is None
            else (f"{level.target:.0f}%" if level.target == 100 else f">={level.target:.0f}%")
        )
        met = "-" if s["target_met"] is None else ("yes" if s["target_met"] else "NO")
        rows.append(
            f"{level.loss:>4g}%  {len(level.trials):>6}  {level.rate:>6.1f}%  {target:>7}  {met:>3}  "
            f"{_pair(s['publish']):>17}  {_pair(s['pickup']):>17}  {_pair(s['total']):>17}"
            + (f"  {_pair(s['tcp_copy'], 2):>18}  {_ratio(s['total'], s['tcp_copy']):>10}" if copies else "")
            + (f"  {_pair(s['wormhole'], 2):>18}  {_ratio(s['total'], s['wormhole']):>14}" if wormholes else "")
        )
    failures = [t for level in levels for t in level.trials if not t.ok]
    if failures:
        rows += ["", "failures:"]
        rows += [f"  {t.loss:g}% trial {t.number}: {t.failure}" for t in failures]
    rows += ["", "Times are wall-clock seconds of the whole command (process start to exit); total = publish + pickup."]
    if copies:
        rows += [
            "tcp copy: the same transcript from the publisher's namespace to a new file in the picker's, over one TCP",
            "connection, timed from its connection to its last byte written; total/copy is the ratio of the medians.",
        ]
    if wormholes:
        routes = " and ".join(sorted({t.wormhole_route for level in levels for t in level.trials if t.wormhole_route}))
        rows += [
            "wormhole: magic-wormhole's `wormhole send` of the same transcript in the publisher's namespace and",
            "`wormhole receive` into a new file in the picker's, through its mailbox server and transit relay at",
            f"{WORMHOLE_ADDRESS} (unlimited), from the sender's start to the receiver's exit; route taken: {routes}.",
        ]
    return "\n".join(rows)


def _pair(spread: dict, digits: int = 1) -> str:
    if spread["median"] is None:
        return "-"
    return f"{spread['median']:.{digits}f} / {spread['worst']:.{digits}f} s"


def _ratio(total: dict, copy: dict) -> str:
    if total["median"] is None or not copy["median"]:
        return "-"
    return f"{total['median'] / copy['median']:.1f}x"
