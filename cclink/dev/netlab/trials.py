"""One trial across the lab and how it ended: a handoff (publish, then pickup -y) or, with --carry, a carried session.

A trial succeeds only when the picker resumed exactly the session the
publisher just published; a carry trial also needs the publisher to see the
picker's acknowledgement and exit 0, and is then compared with a plain TCP
copy of the same transcript over the same path, and with --wormhole with
magic-wormhole sending it.
"""

from __future__ import annotations

import selectors
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass

from cclink.dev.netlab.lab import COMMAND_TIMEOUT, Lab, stop

CARRY_READY = "Offering the session"  # what `cclink --carry` says once the record is out
SEEDING_AFTER_PICKUP = 30.0  # seconds a carry publisher may take to notice that the picker has the session


@dataclass
class Trial:
    """One trial at one loss rate: whether it worked, what each command took, and why it failed."""

    loss: float
    number: int
    ok: bool
    publish_seconds: float
    pickup_seconds: float | None
    failure: str = ""
    stderr: str = ""  # the failing command's, for the JSON report
    copy_seconds: float | None = None  # with --carry: a plain TCP copy of the same transcript, same path
    wormhole_seconds: float | None = None  # with --wormhole: magic-wormhole's send and receive of it
    wormhole_route: str = ""  # "direct" or "relay" (through its transit relay)

    @property
    def total_seconds(self) -> float:
        return self.publish_seconds + (self.pickup_seconds or 0.0)


def run_trial(lab: Lab, loss: float, number: int, cold: bool, earlier: dict[str, str], carry: int = 0) -> Trial:
    if carry:
        return run_carry_trial(lab, loss, number, cold, carry)
    return run_handoff_trial(lab, loss, number, cold, earlier)


def run_carry_trial(lab: Lab, loss: float, number: int, cold: bool, size: int) -> Trial:
    """`cclink --carry` a fresh session of `size` bytes on a; b, which never had it, picks it up and resumes it.

    publish time is until the publisher offers the session; the trial also
    needs the publisher to see the picker's acknowledgement and exit 0.
    """
    session_id = str(uuid.uuid4())
    a, b = lab.publisher, lab.picker
    a.add_session(session_id, only=True, size=size)
    shutil.rmtree(b.home / ".claude", ignore_errors=True)
    if cold:
        a.forget_routing_table()
        b.forget_routing_table()
    started = time.monotonic()
    publisher = lab.spawn(a, ["--carry", session_id], cwd=a.project)
    try:
        offered, said = _wait_for_line(publisher, CARRY_READY, started + COMMAND_TIMEOUT)
        publish_seconds = time.monotonic() - started
        if not offered:
            stop(publisher)
            return Trial(
                loss, number, False, publish_seconds, None, f"publish: {said or f'exit {publisher.returncode}'}"
            )
        picked = lab.cclink(b, ["pickup", "-y", "--project-dir", str(b.project)])
        trial = Trial(loss, number, False, publish_seconds, picked.seconds)
        placed = b.sessions_folder() / f"{session_id}.jsonl"
        if picked.code != 0:
            trial.failure, trial.stderr = f"pickup: {picked.error}", picked.stderr[-4000:]
        elif b.last_launch() != f"--resume={session_id}" or not placed.exists():
            trial.failure = f"pickup resumed {b.last_launch()!r}, placed: {placed.exists()}"
        elif (code := _exit_code(publisher, SEEDING_AFTER_PICKUP)) != 0:
            trial.failure = (
                f"publisher: exit {code}"
                if code is not None
                else f"publisher: still seeding {SEEDING_AFTER_PICKUP:.0f} s after the pickup"
            )
        else:
            trial.ok = True
            session_file = a.sessions_folder() / f"{session_id}.jsonl"
            trial.copy_seconds = lab.tcp_copy(session_file, b.root / "tcp-copy")
            if lab.wormhole is not None:
                transfer = lab.wormhole_copy(session_file, b.root / "wormhole-copy")
                trial.wormhole_seconds, trial.wormhole_route = transfer.seconds, transfer.route
        return trial
    finally:
        stop(publisher)


def _wait_for_line(popen: subprocess.Popen, text: str, deadline: float) -> tuple[bool, str]:
    """Read popen's stderr until a line holding text, its end or the deadline: (found, the last line read)."""
    assert popen.stderr is not None  # started with stderr=PIPE
    last = ""
    with selectors.DefaultSelector() as selector:
        selector.register(popen.stderr, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if not selector.select(timeout=max(0.0, deadline - time.monotonic())):
                continue
            line = popen.stderr.readline()
            if not line:
                return False, last
            last = line.strip() or last
            if text in line:
                return True, last
    return False, last


def _exit_code(popen: subprocess.Popen, timeout: float) -> int | None:
    try:
        return popen.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        return None


def run_handoff_trial(lab: Lab, loss: float, number: int, cold: bool, earlier: dict[str, str]) -> Trial:
    """Publish a fresh session on a, pick it up with -y on b, and check that b resumed exactly that session.

    a holds only the new session, so a plain `cclink` publishes it; b keeps
    every session published so far (`earlier` names their trials), so a pickup
    that finds an older record resumes it, and that shows as stale.
    """
    session_id = str(uuid.uuid4())
    a, b = lab.publisher, lab.picker
    a.add_session(session_id, only=True)
    b.add_session(session_id, only=False)
    earlier[session_id] = f"{loss:g}% trial {number}"
    if cold:
        a.forget_routing_table()
        b.forget_routing_table()
    published = lab.cclink(a, [], cwd=a.project)
    if published.code != 0:
        return Trial(
            loss, number, False, published.seconds, None, f"publish: {published.error}", published.stderr[-4000:]
        )
    picked = lab.cclink(b, ["pickup", "-y"])
    trial = Trial(loss, number, False, published.seconds, picked.seconds)
    launched = b.last_launch().removeprefix("--resume=")
    if picked.code != 0:
        trial.failure, trial.stderr = f"pickup: {picked.error}", picked.stderr[-4000:]
    elif launched != session_id:
        # The new record was not found, or did not supersede the old one everywhere.
        trial.failure = f"stale: pickup resumed the session of {earlier.get(launched, repr(launched))}"
    else:
        trial.ok = True
    return trial
