"""The command line: parse arguments, call a flow, show its result.

This is the only place that turns errors into messages and exit codes.
Modules are imported inside commands so `cclink --help` starts fast.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import NoReturn

import typer
import typer.main

from cclink import text

app = typer.Typer(
    add_completion=False,
    no_args_is_help=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
    help="Hand a Claude Code session to another machine over the Mainline DHT, end-to-end encrypted.\n\n"
    "Run `cclink` in a project to publish its session, then `cclink pickup` on the other machine.",
)

PUBLISH = "publish"
INTERNAL_ERROR_EXIT = 70
INTERRUPTED_EXIT = 130


# --- commands ---------------------------------------------------------------------


@app.command(PUBLISH)
def publish_command(
    session_id: str | None = typer.Argument(
        None, help="Session to publish (default: the newest one for this directory)."
    ),
    ttl: int = typer.Option(86400, "--ttl", help="Seconds until the handoff expires."),
    burn: bool = typer.Option(False, "--burn", help="Revoke the handoff when it is picked up with your key."),
    pin: bool = typer.Option(False, "--pin", help="Encrypt to a PIN instead of a key (asked for, or CCLINK_PIN)."),
    share: str | None = typer.Option(None, "--share", metavar="PUBKEY", help="Encrypt to someone else's public key."),
    carry: bool = typer.Option(
        False, "--carry", help="Send the session itself, peer to peer; stay running until it is fetched."
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
    import time

    from cclink.cli import console
    from cclink.errors import UnknownSession, UsageError
    from cclink.flows import handoff
    from cclink.wire.keys import PublicKey

    if carry_timeout is not None and (not carry or carry_timeout <= 0):
        raise UsageError("--carry-timeout takes a positive number of seconds, and only with --carry")
    request = handoff.PublishRequest(
        session_id=session_id,
        ttl=ttl,
        burn=burn,
        pin=pin,
        share=PublicKey.parse(share) if share is not None else None,
        carry=carry,
        allow_missing=missing_ok,
    )
    rendezvous = _rendezvous()
    try:
        outcome = handoff.publish(request, rendezvous, time.time())
    except UnknownSession as error:
        raise UnknownSession(_unknown_session_advice(error), error.session_id) from None
    try:
        _show_published(outcome, qr, as_json)
        if outcome.outgoing is not None:
            _serve_carry(outcome, rendezvous, carry_timeout or ttl)
    except KeyboardInterrupt:
        # From here on the record is out, whenever the Ctrl-C comes.
        if outcome.outgoing is not None:
            console.say("Stopped offering the session; the handoff stays published until it expires.")
        raise
    finally:
        if outcome.outgoing is not None:
            outcome.outgoing.close()


def _unknown_session_advice(error) -> str:
    """The error's sentence, ending with the command a typo was probably meant to be, or with --missing-ok."""
    import difflib

    # `cclink pikcup` is `cclink publish pikcup`: the id is what was typed as a command.
    names = sorted(typer.main.get_command(app).commands)  # type: ignore[attr-defined]
    close = difflib.get_close_matches(error.session_id.lower(), names, n=1)
    if close:
        return f"{error.message}; did you mean `cclink {close[0]}`?"
    return f"{error.message}; to publish the id of a session on another machine (a synced ~/.claude), add --missing-ok"


def _show_published(outcome, qr: bool, as_json: bool) -> None:
    from cclink.cli import console

    if as_json:
        _print_json(_publish_json(outcome))
        return
    for note in outcome.notes:
        console.say(f"Note: {note}")
    record = outcome.record
    console.out(f"Session: {outcome.session_id} in {_home_relative(outcome.project)}")
    console.out(
        f"Published! Stored on {outcome.published.nodes} DHT node{'s' if outcome.published.nodes != 1 else ''}."
    )
    console.out("  Run on another machine:")
    console.out(f"  {outcome.pickup_command}")
    console.out(f"Expires in {text.format_duration(record.ttl)} ({_utc(record.expires_at)}).{_mode_line(outcome)}")
    if qr:
        console.out(console.qr_text(outcome.pickup_command))


def _serve_carry(outcome, rendezvous, timeout: int) -> None:
    from cclink.cli import console
    from cclink.flows import handoff

    size = text.format_bytes(outcome.outgoing.seeder.size)
    console.say(f"Offering the session ({size} encrypted) until it is fetched; keep this running. Ctrl-C stops.")
    sys.stdout.flush()

    def show(status) -> None:
        spin.update(text.seeding_status(status.peers, status.uploaded, status.upload_rate))

    with console.spinner("Seeding: waiting for the other machine") as spin:
        result = handoff.serve_carry(outcome, rendezvous, timeout, show)
    console.say(f"The session was fetched ({text.format_bytes(result.uploaded)} sent).")
    if result.revoked:
        console.say("Burn-after-read: the handoff was revoked.")


@app.command("pickup")
def pickup_command(
    pubkey: str | None = typer.Argument(None, help="Publisher's public key (default: your own)."),
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
) -> None:
    """Find, verify and decrypt a handoff, then resume it."""
    import time

    from cclink.cli import console
    from cclink.errors import UsageError
    from cclink.flows import handoff
    from cclink.wire.keys import PublicKey

    if fetch_timeout <= 0:
        raise UsageError("--fetch-timeout takes a positive number of seconds")
    if fetch and (qr or as_json):
        raise UsageError("--fetch resumes the session; it cannot be combined with --qr or --json")
    publisher = PublicKey.parse(pubkey) if pubkey is not None else None
    launching = not (qr or as_json)
    rendezvous = _rendezvous()
    outcome = handoff.pickup(
        publisher,
        rendezvous,
        time.time(),
        assume_yes=yes,
        confirm=launching,
        force_fetch=fetch,
        project_dir=project_dir,
    )
    for note in outcome.notes:
        console.say(f"Note: {note}")
    if as_json:
        _print_json(_pickup_json(outcome))
    elif qr:
        console.out(console.qr_text(outcome.payload.session_id))
        console.out(f"Session: {outcome.payload.session_id}")
    else:
        if outcome.revoked:
            console.say("Burn-after-read: the handoff was revoked.")
        handoff.resume(
            outcome, rendezvous, project_dir=project_dir, assume_yes=yes, fetch_timeout=fetch_timeout, lan=lan
        )


@app.command("init")
def init_command(
    import_from: str | None = typer.Option(
        None, "--import", metavar="PATH|-", help="Import a key file (or - for standard input)."
    ),
    no_passphrase: bool = typer.Option(False, "--no-passphrase", help="Store the key unencrypted."),
    yes: bool = typer.Option(False, "-y", "--yes", help="Replace an existing key without asking."),
) -> None:
    """Create or import your key (passphrase-protected by default)."""
    from cclink.cli import console
    from cclink.flows import keystore

    outcome = keystore.init(import_from, no_passphrase, yes)
    verb = "Imported" if outcome.imported else "Created"
    console.out(f"{verb} key {outcome.public_key.display}")
    console.out(f"Saved to {outcome.path} ({'passphrase-protected' if outcome.encrypted else 'unencrypted'}).")


@app.command("whoami")
def whoami_command(as_json: bool = typer.Option(False, "--json", help="Print as JSON.")) -> None:
    """Show your public key, its fingerprint and the key file."""
    from cclink.cli import console
    from cclink.flows import keystore

    public_key, path = keystore.whoami()
    if as_json:
        _print_json({"public_key": public_key.display, "fingerprint": public_key.fingerprint, "key_file": str(path)})
        return
    console.out(f"Public Key:  {public_key.display}")
    console.out(f"Fingerprint: {public_key.fingerprint}")
    console.out(f"Key file:    {path}")


@app.command("list")
def list_command(as_json: bool = typer.Option(False, "--json", help="Print as JSON.")) -> None:
    """Show your active handoff on the DHT."""
    import time

    from cclink.cli import console
    from cclink.flows import handoff

    outcome = handoff.list_active(_rendezvous())
    now = time.time()
    record = outcome.record
    if as_json:
        _print_json(_list_json(outcome, now))
        return
    status = "expired" if record.is_expired(now) else f"{text.format_duration(record.expires_at - now)} left"
    console.out(f"Handoff by {outcome.publisher.display}")
    console.out(f"  Published: {text.format_duration(max(0, now - record.created_at))} ago ({_utc(record.created_at)})")
    console.out(f"  TTL:       {text.format_duration(record.ttl)}, {status}")
    console.out(f"  Burn:      {'yes' if record.burn else 'no'}")
    console.out(f"  For:       {_audience(record)}")
    if outcome.payload is not None:
        console.out(f"  Session:   {outcome.payload.session_id}")
        console.out(f"  Project:   {_home_relative(outcome.payload.project)}")


@app.command("revoke")
def revoke_command(yes: bool = typer.Option(False, "-y", "--yes", help="Do not ask first.")) -> None:
    """Revoke your active handoff."""
    import time

    from cclink.cli import console
    from cclink.flows import handoff

    handoff.revoke(_rendezvous(), time.time(), assume_yes=yes)
    console.out("Revoked.")


@app.command("testnet")
def testnet_command(
    nodes: int = typer.Option(8, "--nodes", help="How many DHT nodes to run."),
    port: int = typer.Option(0, "--port", help="Port of the first (bootstrap) node; 0 picks a free one."),
) -> None:
    """Run a local DHT on 127.0.0.1 until interrupted."""
    import threading

    from cclink.cli import console
    from cclink.dev.testnet import Testnet

    stop = threading.Event()
    # Both signals only set the event: a KeyboardInterrupt could land anywhere,
    # even in the middle of printing the bootstrap line.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    with Testnet(nodes, port) as net:
        console.out(f"CCLINK_BOOTSTRAP={net.bootstrap}", flush=True)
        console.say(
            f"{nodes} DHT node{'s' if nodes != 1 else ''} on 127.0.0.1; "
            "export the line above in other shells. Ctrl-C stops."
        )
        # Short waits: a signal handler runs only when the main thread wakes.
        while not stop.wait(0.5):
            pass


@app.command("demo")
def demo_command() -> None:
    """Show a whole handoff on a local DHT, in throwaway homes."""
    from cclink.dev import demo

    demo.run()


@app.command("help")
def help_command(
    ctx: typer.Context,
    command: str | None = typer.Argument(None, help="The command to explain (default: list them all)."),
) -> None:
    """Show this help, or one command's (`cclink help pickup`)."""
    from cclink.cli import console
    from cclink.errors import UsageError

    group_ctx = ctx.parent
    assert group_ctx is not None  # a subcommand always runs inside the group
    if command is None:
        console.out(group_ctx.get_help())
        return
    chosen = group_ctx.command.get_command(group_ctx, command)  # type: ignore[attr-defined]
    if chosen is None:
        raise UsageError(f"there is no command '{command}'; `cclink help` lists them")
    with chosen.make_context(command, ["--help"], parent=group_ctx, resilient_parsing=True) as command_ctx:
        console.out(chosen.get_help(command_ctx))


# --- presentation helpers -------------------------------------------------------------


def _rendezvous():
    from cclink.net import endpoints
    from cclink.net.record_store import RecordStore

    return RecordStore(endpoints.bootstrap_from_environment())


def _print_json(data: dict) -> None:
    from cclink.cli import console

    console.out(console.safe_json(data))


def _utc(timestamp: float) -> str:
    import datetime

    return datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _home_relative(path: str) -> str:
    home = os.path.expanduser("~")
    if path == home or path.startswith(home + os.sep):
        return "~" + path[len(home) :]
    return path


def _audience(record) -> str:
    if record.pin_salt is not None:
        return "anyone with the PIN"
    if record.recipient is not None:
        return record.recipient_key().display
    return "your own key"


def _mode_line(outcome) -> str:
    parts = []
    if outcome.mode == "pin":
        parts.append("PIN-protected")
    elif outcome.mode == "share":
        parts.append(f"Shared with {outcome.record.recipient_key().display}")
    if outcome.record.burn:
        parts.append("burn after read")
    if not parts:
        return ""
    text = ", ".join(parts)
    return f" {text[:1].upper()}{text[1:]}."


def _record_json(record) -> dict:
    recipient = record.recipient_key()
    return {
        "created_at": record.created_at,
        "expires_at": record.expires_at,
        "ttl": record.ttl,
        "burn": record.burn,
        "pin": record.pin_salt is not None,
        "recipient": recipient.display if recipient else None,
    }


def _publish_json(outcome) -> dict:
    return {
        "session_id": outcome.session_id,
        "project": outcome.project,
        "publisher": outcome.publisher.display,
        "mode": outcome.mode,
        **_record_json(outcome.record),
        "seq": outcome.published.seq,
        "nodes": outcome.published.nodes,
        "pickup_command": outcome.pickup_command,
        "carry": _carry_json(outcome.outgoing.info()) if outcome.outgoing else None,
    }


def _carry_json(info) -> dict:
    return {
        "size": info.size,
        "sha256": info.sha256.hex(),
        "info_hash": info.info_hash.hex(),
        "hints": list(info.hints),
    }


def _pickup_json(outcome) -> dict:
    return {
        "session_id": outcome.payload.session_id,
        "project": outcome.payload.project,
        "hostname": outcome.payload.hostname,
        "publisher": outcome.publisher.display,
        **_record_json(outcome.record),
        "revoked": outcome.revoked,
        "session_on_this_machine": outcome.session is not None,
        "resume_directory": str(outcome.project_dir) if outcome.project_dir else None,
        "carry": _carry_json(outcome.payload.carry) if outcome.payload.carry else None,
    }


def _list_json(outcome, now: float) -> dict:
    data = {"publisher": outcome.publisher.display, **_record_json(outcome.record), "seq": outcome.seq}
    data["expired"] = outcome.record.is_expired(now)
    if outcome.payload is not None:
        data["session_id"] = outcome.payload.session_id
        data["project"] = outcome.payload.project
    return data


# --- entry point ----------------------------------------------------------------------


def _with_default_command(args: list[str]) -> list[str]:
    """`cclink [SESSION_ID] [options]` means `cclink publish ...`."""
    names = set(typer.main.get_command(app).commands)  # type: ignore[attr-defined]
    if args and (args[0] in names or args[0] in ("--help", "-h")):
        return args
    return [PUBLISH, *args]


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; every failure becomes one sentence on stderr and an exit code."""
    args = _with_default_command(list(sys.argv[1:] if argv is None else argv))
    _unwind_on_termination_signals()
    try:
        # Typer reports its own usage errors (exit 2) and exits; ours land here.
        typer.main.get_command(app).main(args, prog_name="cclink", standalone_mode=True)
    except BaseException as error:  # noqa: BLE001 - every way out is decided in _leave
        _leave(error)


def _leave(error: BaseException) -> NoReturn:
    """Exit as the way the command ended calls for: a failure is one sentence on stderr, never a traceback."""
    from cclink.errors import CclinkError

    stopped_by = _stopped_by[:1]
    _ignore_termination_signals()
    if stopped_by:
        # Whatever the signal became while unwinding (Typer's exit 130, or an
        # error of a library that caught it), the signal is why cclink stops.
        _fail(f"stopped by {signal.Signals(stopped_by[0]).name}", 128 + stopped_by[0])
    if isinstance(error, SystemExit):
        # Typer turns Ctrl-C inside a command into a silent exit 130.
        if _caused_by(error, KeyboardInterrupt):
            _fail("interrupted", INTERRUPTED_EXIT)
        written = _flush(sys.stdout)
        _flush(sys.stderr)
        if not written and error.code in (0, None):
            sys.exit(1)  # the result did not get out
        raise error
    if isinstance(error, CclinkError):
        _fail(str(error), error.exit_code)
    if isinstance(error, KeyboardInterrupt):
        _fail("interrupted", INTERRUPTED_EXIT)
    if isinstance(error, Exception) and not os.environ.get("CCLINK_DEBUG"):
        # The last line of defence against tracebacks.
        _fail(f"internal error ({type(error).__name__}); rerun with CCLINK_DEBUG=1 and report it", INTERNAL_ERROR_EXIT)
    raise error


# --- SIGTERM and SIGHUP -------------------------------------------------------------------


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised in the main thread so that every cleanup written for Ctrl-C runs."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


_TERMINATION_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
# The first termination signal received: set before Terminated is raised, so
# the exit code stays right even where a library turns that exception into another.
_stopped_by: list[int] = []


def _unwind_on_termination_signals() -> None:
    """Make SIGTERM and SIGHUP (a closed terminal) unwind like Ctrl-C instead of killing cclink mid-way."""
    for signum in _TERMINATION_SIGNALS:
        # An ignored SIGHUP (nohup) stays ignored: whoever started cclink wants it to outlive the terminal.
        if signal.getsignal(signum) != signal.SIG_IGN:
            signal.signal(signum, _on_termination_signal)


def _on_termination_signal(signum: int, frame: object) -> None:
    if _stopped_by:
        return  # already unwinding: a second signal must not cut the cleanup short
    _stopped_by.append(signum)
    raise Terminated(signum)


def _ignore_termination_signals() -> None:
    """While cclink writes its last words and exits, a late signal must not raise in the middle of them."""
    for signum in _TERMINATION_SIGNALS:
        if signal.getsignal(signum) is _on_termination_signal:
            signal.signal(signum, signal.SIG_IGN)


# --- the way out ----------------------------------------------------------------------------


def _flush(stream) -> bool:
    """Write out what stream holds.

    False when it cannot be (its reader or terminal is gone), and the rest is dropped.
    """
    try:
        stream.flush()
        return True
    except (AttributeError, OSError, ValueError):
        _discard(stream)
        return False


def _discard(stream) -> None:
    # Python flushes both streams once more at exit, and would report the same failure there (exit 120).
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)
    except (AttributeError, OSError, ValueError):
        pass


def _caused_by(error: BaseException, kind: type[BaseException]) -> bool:
    """Whether kind is among the exceptions that led to error (its causes and contexts)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, kind):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def _fail(message: str, code: int) -> NoReturn:
    """One error line on stderr (best effort: the terminal may be gone), then exit with code."""
    from cclink.cli import console

    # One line whatever the message holds: a line break from a hostile name could fake a second message.
    console.say(f"cclink: error: {text.printable(_sentence(message))}")
    _flush(sys.stdout)
    _flush(sys.stderr)
    sys.exit(code)


def _sentence(message: str) -> str:
    message = message.strip()
    message = message[:1].upper() + message[1:]
    return message if message.endswith((".", "!", "?")) else message + "."
