"""`cclink list` and `cclink revoke`: your handoff on the DHT."""

from __future__ import annotations

import typer

from cclink import text
from cclink.cli import render
from cclink.cli.group import app, environment


@app.command("list")
def list_command(as_json: bool = typer.Option(False, "--json", help="Print as JSON.")) -> None:
    """Show your active handoff on the DHT."""
    import time

    from cclink.cli import console
    from cclink.flows import manage

    outcome = manage.list_active(console, environment())
    now = time.time()
    record = outcome.record
    if as_json:
        render.print_json(render.list_json(outcome, now))
        return
    if record is None:
        revoked = " (the last one was revoked)" if outcome.revoked else ""
        console.out(f"No handoff is published under {outcome.publisher.display}{revoked}.")
        if outcome.device_items:
            console.out(
                f"  {render.copies(outcome.device_items)} left for paired devices still live; "
                "`cclink revoke` withdraws them."
            )
        return
    console.out(f"Handoff by {outcome.publisher.display}")
    age = text.format_duration(max(0, now - record.created_at))
    console.out(f"  Published: {age} ago ({render.utc(record.created_at)})")
    console.out(f"  Expires:   {render.expiry(record, now)}")
    console.out(f"  Burn:      {'yes' if record.burn else 'no'}")
    console.out(f"  For:       {render.audience(record)}")
    if outcome.payload is not None:
        console.out(f"  Session:   {outcome.payload.session_id}")
        console.out(f"  Project:   {render.home_relative(outcome.payload.project)}")
    if outcome.device_items:
        console.out(f"  Copies:    {render.copies(outcome.device_items)} for paired devices the record had no room for")


@app.command("revoke")
def revoke_command(yes: bool = typer.Option(False, "-y", "--yes", help="Do not ask first.")) -> None:
    """Revoke your active handoff, and the copies left for paired devices."""
    from cclink.cli import console
    from cclink.flows import manage

    outcome = manage.revoke(console, environment(), assume_yes=yes)
    copies = f", and the copies left for {', '.join(outcome.devices)}" if outcome.devices else ""
    console.out(f"Revoked{copies}.")
