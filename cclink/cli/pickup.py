"""`cclink pickup`: find, verify and decrypt a handoff, then resume it."""

from __future__ import annotations

from pathlib import Path

import typer

from cclink.cli import names, render
from cclink.cli.group import PICKUP, app, environment

# `pickup --wait` alone waits as long as a handoff published now lives by default.
WAIT_ALONE = 86400
MAX_WAIT = 365 * 86400.0


@app.command(PICKUP)
def pickup_command(
    pubkey: str | None = typer.Argument(
        None,
        metavar="[PUBKEY|NAME]",
        help="Publisher's public key, or a paired device's or contact's name "
        "(default: your own key and every paired device's).",
    ),
    yes: bool = typer.Option(False, "-y", "--yes", help="Do not ask before resuming."),
    qr: bool = typer.Option(False, "--qr", help="Show the session id as a QR code instead of resuming."),
    as_json: bool = typer.Option(False, "--json", help="Print the handoff as JSON instead of resuming."),
    fetch: bool = typer.Option(False, "--fetch", help="Download a carried session even if a copy is here."),
    project_dir: Path | None = typer.Option(
        None, "--project-dir", metavar="DIR", help="Put a carried session in DIR's project and resume there."
    ),
    fetch_timeout: float = typer.Option(
        60, "--fetch-timeout", metavar="SECS", help="Give up on a carried session after this long without data."
    ),
    lan: bool = typer.Option(
        False,
        "--lan",
        help="The publisher is on this network: also connect to its private address for a carried session.",
    ),
    wait: float | None = typer.Option(
        None,
        "--wait",
        metavar="[SECONDS]",
        help="Start before the publisher: wait for a handoff newer than the last one picked up here "
        "(up to SECONDS; alone, up to a day).",
    ),
) -> None:
    """Find, verify and decrypt a handoff, then resume it."""
    from cclink.cli import console
    from cclink.errors import UsageError
    from cclink.flows import pickup
    from cclink.local import claude

    if fetch_timeout <= 0:
        raise UsageError("--fetch-timeout takes a positive number of seconds")
    if fetch and (qr or as_json):
        raise UsageError("--fetch resumes the session; it cannot be combined with --qr or --json")
    if wait is not None and not 0 < wait <= MAX_WAIT:
        raise UsageError(f"--wait takes a number of seconds from 1 to {MAX_WAIT:.0f}")
    launching = not (qr or as_json)
    env = environment()
    publisher = names.key_or_name(pubkey, env.contacts) if pubkey is not None else None
    outcome = pickup.pickup(
        publisher,
        console,
        env,
        assume_yes=yes,
        confirm=launching,
        force_fetch=fetch,
        project_dir=project_dir,
        wait=wait,
    )
    for note in outcome.notes:
        console.say(f"Note: {note}")
    if as_json:
        render.print_json(render.pickup_json(outcome))
    elif qr:
        console.show_qr(outcome.payload.session_id)
        console.out(f"Session: {outcome.payload.session_id}")
    else:
        if outcome.revoked:
            console.say("Burn-after-read: the handoff was revoked.")
        resumption = pickup.resume(
            outcome, console, env, project_dir=project_dir, assume_yes=yes, fetch_timeout=fetch_timeout, lan=lan
        )
        claude.resume(resumption.session_id, resumption.directory)
