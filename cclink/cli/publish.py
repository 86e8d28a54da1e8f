"""`cclink [SESSION_ID]` / `cclink publish`: publish this directory's session."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import typer
import typer.main

from cclink import text
from cclink.cli import names, render
from cclink.cli.group import PUBLISH, app, environment

if TYPE_CHECKING:
    from cclink.errors import UnknownSession
    from cclink.flows.environment import Keeper
    from cclink.flows.publish import PublishOutcome
    from cclink.flows.seeding import Publication


@app.command(PUBLISH)
def publish_command(
    session_id: str | None = typer.Argument(
        None, help="Session to publish (default: the newest one for this directory)."
    ),
    ttl: int = typer.Option(86400, "--ttl", help="Seconds until the handoff expires."),
    burn: bool = typer.Option(False, "--burn", help="Revoke the handoff when it is picked up with your key."),
    pin: bool = typer.Option(False, "--pin", help="Encrypt to a PIN instead of a key (asked for, or CCLINK_PIN)."),
    share: str | None = typer.Option(
        None,
        "--share",
        metavar="PUBKEY|NAME",
        help="Encrypt to someone else's public key, or a paired device's or colleague's name.",
    ),
    carry: bool = typer.Option(
        False,
        "--carry",
        help="Send the session itself, peer to peer: the background agent offers it until it is fetched.",
    ),
    foreground: bool = typer.Option(
        False,
        "--foreground",
        help="With --carry: offer the session from this command, showing its progress, instead of the agent.",
    ),
    carry_timeout: int | None = typer.Option(
        None,
        "--carry-timeout",
        metavar="SECS",
        help="With --carry: stop offering the session after this long (default: the TTL).",
    ),
    qr: bool = typer.Option(False, "--qr", help="Also show the pickup command as a QR code."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    missing_ok: bool = typer.Option(
        False, "--missing-ok", help="Publish a SESSION_ID that is not on this machine (e.g. when ~/.claude is synced)."
    ),
) -> None:
    """Publish this directory's session (the default command)."""
    from cclink.cli import console
    from cclink.errors import UnknownSession, UsageError
    from cclink.flows import publish

    if carry_timeout is not None and (not carry or carry_timeout <= 0):
        raise UsageError("--carry-timeout takes a positive number of seconds, and only with --carry")
    if foreground and not carry:
        raise UsageError("--foreground is for --carry: a handoff without it is never offered from here")
    request = publish.PublishRequest(
        session_id=session_id,
        ttl=ttl,
        burn=burn,
        pin=pin,
        share=names.share_key(share) if share is not None else None,
        carry=carry,
        allow_missing=missing_ok,
    )
    env = environment()
    try:
        publication = publish.publish(request, console, env)
    except UnknownSession as error:
        raise UnknownSession(_unknown_session_advice(error), error.session_id) from None
    with publication:
        _show_published(publication.outcome, qr, as_json)
        if publication.carrying:
            sys.stdout.flush()
            if not foreground and _handed_to_agent(publication, env.keeper, carry_timeout or ttl):
                return
            result = publication.serve_carry(console, carry_timeout or ttl)
            if result.revoked:
                copies = result.items_revoked
                also = f", and the copies left for {copies} paired device{'s' if copies != 1 else ''}" if copies else ""
                console.say(f"Burn-after-read: the handoff was revoked{also}.")


def _handed_to_agent(publication: Publication, keeper: Keeper, timeout: int) -> bool:
    """Whether the agent now offers the carried session; if not, why not is said (unless the agent is off)."""
    import time

    from cclink.cli import console

    refusal = publication.hand_over(keeper, time.time() + timeout)
    if refusal is None:
        assert publication.outcome.carry is not None  # a carrying publication's record says what it carries
        size = text.format_bytes(publication.outcome.carry.size)
        console.say(
            f"The background agent offers the session ({size} encrypted) until it is fetched, "
            f"for {text.format_duration(timeout)} at most; `cclink status` shows the transfer."
        )
        return True
    if refusal:
        console.say(f"Note: {refusal}; offering the session from here instead.")
    return False


def _unknown_session_advice(error: UnknownSession) -> str:
    """The error's sentence, ending with the command a typo was probably meant to be, or with --missing-ok."""
    import difflib

    # `cclink pikcup` is `cclink publish pikcup`: the id is what was typed as a command.
    names = sorted(typer.main.get_command(app).commands)  # type: ignore[attr-defined]
    close = difflib.get_close_matches(error.session_id.lower(), names, n=1)
    if close:
        return f"{error.message}; did you mean `cclink {close[0]}`?"
    return f"{error.message}; to publish the id of a session on another machine (a synced ~/.claude), add --missing-ok"


def _show_published(outcome: PublishOutcome, qr: bool, as_json: bool) -> None:
    from cclink.cli import console

    if as_json:
        render.print_json(render.publish_json(outcome))
        return
    for note in outcome.notes:
        console.say(f"Note: {note}")
    record = outcome.record
    console.out(f"Session: {outcome.session_id} in {render.home_relative(outcome.project)}")
    console.out(f"Published! Stored on {render.stored_on(outcome.published)}.")
    console.out("  Run on another machine:")
    console.out(f"  {outcome.pickup_command}")
    expires = f"Expires in {text.format_duration(record.ttl)} ({render.utc(record.expires_at)})."
    if record.burn or outcome.mode == "pin":
        console.out_marked(expires, render.mode_line(outcome))
    else:
        console.out(expires + render.mode_line(outcome))
    if qr:
        console.show_qr(outcome.qr_command)  # the full command: a phone holds no key to default to
