"""The command line: parse arguments, call a flow, show its result.

This is the only place that turns errors into messages and exit codes.
Modules are imported inside commands so `cclink --help` starts fast.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer
import typer.main

from cclink import text
from cclink.cli import exits, render

if TYPE_CHECKING:
    from cclink.errors import UnknownSession
    from cclink.flows import keystore
    from cclink.flows.environment import Environment
    from cclink.flows.publish import PublishOutcome
    from cclink.net.agent import Place
    from cclink.net.endpoints import Network

app = typer.Typer(
    add_completion=True,
    no_args_is_help=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
    help="Hand a Claude Code session to another machine over the Mainline DHT, end-to-end encrypted.\n\n"
    "Run `cclink` in a project to publish its session, then `cclink pickup` on the other machine. "
    "`-V` prints the version; `--no-color`, anywhere, or NO_COLOR in the environment turns colour off.",
)
# Options of the group itself: they come before a command, and say nothing about publishing.
GROUP_OPTIONS = ("--help", "-h", "--install-completion", "--show-completion")
NO_COLOR = "--no-color"

PUBLISH = "publish"
PICKUP = "pickup"
# `pickup --wait` alone waits as long as a handoff published now lives by default.
WAIT_ALONE = 86400
MAX_WAIT = 365 * 86400.0


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
    from cclink.cli import console
    from cclink.errors import UnknownSession, UsageError
    from cclink.flows import publish
    from cclink.wire.keys import PublicKey

    if carry_timeout is not None and (not carry or carry_timeout <= 0):
        raise UsageError("--carry-timeout takes a positive number of seconds, and only with --carry")
    request = publish.PublishRequest(
        session_id=session_id,
        ttl=ttl,
        burn=burn,
        pin=pin,
        share=PublicKey.parse(share) if share is not None else None,
        carry=carry,
        allow_missing=missing_ok,
    )
    try:
        publication = publish.publish(request, console, _environment())
    except UnknownSession as error:
        raise UnknownSession(_unknown_session_advice(error), error.session_id) from None
    with publication:
        _show_published(publication.outcome, qr, as_json)
        if publication.carrying:
            sys.stdout.flush()
            result = publication.serve_carry(console, carry_timeout or ttl)
            if result.revoked:
                console.say("Burn-after-read: the handoff was revoked.")


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
    console.out(expires + render.mode_line(outcome))
    if qr:
        console.out(console.qr_text(outcome.pickup_command))


@app.command(PICKUP)
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
    from cclink.wire.keys import PublicKey

    if fetch_timeout <= 0:
        raise UsageError("--fetch-timeout takes a positive number of seconds")
    if fetch and (qr or as_json):
        raise UsageError("--fetch resumes the session; it cannot be combined with --qr or --json")
    if wait is not None and not 0 < wait <= MAX_WAIT:
        raise UsageError(f"--wait takes a number of seconds from 1 to {MAX_WAIT:.0f}")
    publisher = PublicKey.parse(pubkey) if pubkey is not None else None
    launching = not (qr or as_json)
    env = _environment()
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
        console.out(console.qr_text(outcome.payload.session_id))
        console.out(f"Session: {outcome.payload.session_id}")
    else:
        if outcome.revoked:
            console.say("Burn-after-read: the handoff was revoked.")
        resumption = pickup.resume(
            outcome, console, env, project_dir=project_dir, assume_yes=yes, fetch_timeout=fetch_timeout, lan=lan
        )
        claude.resume(resumption.session_id, resumption.directory)


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

    outcome = keystore.init(console, keystore.KeyStore.default(), import_from, no_passphrase, yes)
    verb = "Imported" if outcome.imported else "Created"
    console.out(f"{verb} key {outcome.public_key.display}")
    console.out(f"Saved to {outcome.path} ({'passphrase-protected' if outcome.encrypted else 'unencrypted'}).")


@app.command("whoami")
def whoami_command(as_json: bool = typer.Option(False, "--json", help="Print as JSON.")) -> None:
    """Show your public key, its fingerprint and the key file."""
    from cclink.cli import console
    from cclink.flows import keystore

    public_key, path = keystore.whoami(console, keystore.KeyStore.default(unlocked=_unlocked_keys()))
    if as_json:
        render.print_json(
            {"public_key": public_key.display, "fingerprint": public_key.fingerprint, "key_file": str(path)}
        )
        return
    console.out(f"Public Key:  {public_key.display}")
    console.out(f"Fingerprint: {public_key.fingerprint}")
    console.out(f"Key file:    {path}")


@app.command("list")
def list_command(as_json: bool = typer.Option(False, "--json", help="Print as JSON.")) -> None:
    """Show your active handoff on the DHT."""
    import time

    from cclink.cli import console
    from cclink.flows import manage

    outcome = manage.list_active(console, _environment())
    now = time.time()
    record = outcome.record
    if as_json:
        render.print_json(render.list_json(outcome, now))
        return
    if record is None:
        revoked = " (the last one was revoked)" if outcome.revoked else ""
        console.out(f"No handoff is published under {outcome.publisher.display}{revoked}.")
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


@app.command("revoke")
def revoke_command(yes: bool = typer.Option(False, "-y", "--yes", help="Do not ask first.")) -> None:
    """Revoke your active handoff."""
    from cclink.cli import console
    from cclink.flows import manage

    manage.revoke(console, _environment(), assume_yes=yes)
    console.out("Revoked.")


@app.command("relay")
def relay_command(
    listen: str = typer.Option(
        "127.0.0.1:6881",
        "--listen",
        metavar="HOST:PORT",
        help="Where to accept HTTP requests (default: this machine only, on pkarr's relay port); port 0 picks one.",
    ),
) -> None:
    """Run a pkarr HTTP relay to the DHT, for machines that cannot reach it, until interrupted."""
    from cclink.cli import console
    from cclink.net import relay_server
    from cclink.net.endpoints import Network
    from cclink.net.record_store import DhtItems

    network = Network.from_environment()
    endpoint = relay_server.parse_listen(listen)

    def ready(url: str) -> None:
        console.out(f"export CCLINK_RELAYS={url}", flush=True)
        wildcard = endpoint[0] in ("0.0.0.0", "::")
        where = " (put this machine's address in place of the wildcard)" if wildcard else ""
        console.say(
            f"A pkarr relay to the DHT of {network.scope.value} at {url}{where}; "
            "run the line above on the machines that use it. Ctrl-C stops."
        )

    relay_server.serve(DhtItems(network), endpoint, ready, lambda line: console.say(f"relay: {line}"))
    console.say("Relay stopped.")


@app.command("agent")
def agent_command(
    action: str | None = typer.Argument(None, metavar="[stop]", help="stop: end the running agent."),
    foreground: bool = typer.Option(
        False, "--foreground", help="Be the agent in this process (what commands start in the background)."
    ),
) -> None:
    """Start the background agent that keeps your handoffs on the DHT; `cclink agent stop` ends it."""
    import os

    from cclink.cli import console
    from cclink.errors import UsageError
    from cclink.net import agent
    from cclink.net.endpoints import Network
    from cclink.wire.agent_protocol import Status

    network = Network.from_environment()
    place = agent.Place.of(network)
    if action == "stop":
        console.out("Stopped the agent." if agent.stop(place) else "No agent is running.")
        return
    if action is not None:
        raise UsageError(f"`cclink agent` takes only `stop`, not '{action}'")
    if foreground:
        _be_the_agent(network, place)
        return
    running = agent.ask(place, Status())
    if running is not None:
        console.out(f"An agent is already running (pid {running.pid}).")
        return
    agent.start(place, os.environ)
    started = agent.wait_for(place)
    if started is None:
        raise UsageError(f"the agent did not start; its log is {place.log}")
    console.out(f"Started the agent (pid {started.pid}); `cclink status` shows what it keeps.")


def _be_the_agent(network: Network, place: Place) -> None:
    """Keep what the kept list holds and what commands hand over, until stopped or nothing is left."""
    import functools
    import os

    from cclink.cli import console
    from cclink.flows import keeping
    from cclink.net import agent, relays

    agent.without_core_dumps()  # it may be handed the key
    every = agent.republish_every(network, os.environ) or keeping.REPUBLISH_EVERY
    service = keeping.Keeping(relays.items_for(network), functools.partial(agent.save_kept, place), every=every)
    other = agent.serve(place, service)
    if other is not None:
        console.out(f"An agent is already running (pid {other}); it was handed the kept list.")


@app.command("unlock")
def unlock_command(
    duration: str = typer.Option(
        "15m", "--for", metavar="DURATION", help="How long: 90s, 15m, 2h or seconds, up to a day (default 15m)."
    ),
) -> None:
    """Open your key once and let the agent hold it in memory; until then commands ask no passphrase."""
    import os

    from cclink.cli import console
    from cclink.errors import UsageError
    from cclink.flows import keystore
    from cclink.net import agent
    from cclink.net.endpoints import Network
    from cclink.wire.agent_protocol import Unlock

    if not agent.enabled(os.environ):
        raise UsageError(f"the agent is off ({agent.AGENT_ENV}={agent.OFF}), so nothing can hold the key unlocked")
    seconds = agent.unlock_seconds(duration)
    place = agent.Place.of(Network.from_environment())
    keys = keystore.KeyStore.default(unlocked=agent.UnlockedInAgent(place))
    opened = keys.open(console)
    if not opened.encrypted:
        console.out(f"The key at {keys.path} has no passphrase; there is nothing to unlock.")
        return
    until = agent.unlock(place, os.environ, Unlock(bytearray(opened.identity.seed), opened.key_file_sha256, seconds))
    console.out(
        f"Unlocked {opened.identity.public_key.display} for {text.format_duration(seconds)} "
        f"(until {render.utc(until)}); `cclink lock` forgets it sooner."
    )


@app.command("lock")
def lock_command() -> None:
    """Make the agent forget the key `cclink unlock` gave it."""
    from cclink.cli import console
    from cclink.errors import CclinkError
    from cclink.net import agent
    from cclink.net.endpoints import Network
    from cclink.wire.agent_protocol import Lock

    answer = agent.ask(agent.Place.of(Network.from_environment()), Lock())
    if answer is None:
        console.out("No agent is running; nothing to lock.")
    elif not answer.ok:
        raise CclinkError(f"the agent did not lock: {answer.error}")
    elif answer.forgot:
        console.out("Locked: the agent forgot the key; commands ask for the passphrase again.")
    else:
        console.out("The key was not unlocked; nothing to lock.")


def _unlocked_keys() -> keystore.UnlockedKeys | None:
    """The agent as a KeyStore's unlocked source, on the network of the environment (None if it is malformed)."""
    from cclink.errors import UsageError
    from cclink.net import agent
    from cclink.net.endpoints import Network

    try:
        return agent.unlocked_keys(Network.from_environment())
    except UsageError:
        return None


@app.command("status")
def status_command(as_json: bool = typer.Option(False, "--json", help="Print as JSON.")) -> None:
    """Show what the background agent keeps alive on the DHT, and whether it holds your key unlocked."""
    import time

    from cclink.cli import console
    from cclink.net import agent
    from cclink.net.endpoints import Network
    from cclink.wire.agent_protocol import Status

    place = agent.Place.of(Network.from_environment())
    answer = agent.ask(place, Status())
    waiting = len(agent.read_kept(place)) if answer is None else 0
    if as_json:
        render.print_json(render.status_json(answer, waiting))
        return
    for line in render.status_lines(answer, waiting, time.time()):
        console.out(line)


@app.command("testnet")
def testnet_command(
    nodes: int = typer.Option(8, "--nodes", help="How many DHT nodes to run."),
    port: int = typer.Option(0, "--port", help="Port of the first (bootstrap) node; 0 picks a free one."),
    ipv6: bool = typer.Option(False, "--ipv6", help="Listen on ::1 (IPv6) instead of 127.0.0.1."),
) -> None:
    """Run a local DHT on 127.0.0.1 (or ::1) until interrupted."""
    import threading

    from cclink.cli import console
    from cclink.dev.testnet import HOST, HOST6, Testnet

    stop = threading.Event()
    # Both signals only set the event: a KeyboardInterrupt could land anywhere,
    # even in the middle of printing the bootstrap line.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    host = HOST6 if ipv6 else HOST
    with Testnet(nodes, port, host) as net:
        console.out(net.export_line(), flush=True)
        console.say(
            f"{nodes} DHT node{'s' if nodes != 1 else ''} on {host}, a test network; "
            "run the line above in other shells. Ctrl-C stops."
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
        console.out(_publish_options(group_ctx))
        return
    chosen = group_ctx.command.get_command(group_ctx, command)  # type: ignore[attr-defined]
    if chosen is None:
        raise UsageError(f"there is no command '{command}'; `cclink help` lists them")
    with chosen.make_context(command, ["--help"], parent=group_ctx, resilient_parsing=True) as command_ctx:
        console.out(chosen.get_help(command_ctx))


def _publish_options(group_ctx: typer._click.Context) -> str:
    """The default command's options, for the overall help: `cclink` alone is how most people publish."""
    publish = group_ctx.command.get_command(group_ctx, PUBLISH)  # type: ignore[attr-defined]
    with publish.make_context(PUBLISH, ["--help"], parent=group_ctx, resilient_parsing=True) as publish_ctx:
        formatter = publish_ctx.make_formatter()
        publish.format_options(publish_ctx, formatter)
    lines = [
        line
        for line in formatter.getvalue().splitlines()
        if line.strip() and line not in ("Arguments:", "Options:") and not line.lstrip().startswith("-h, --help")
    ]
    return "\n".join(["", "Publishing (cclink [SESSION_ID] [OPTIONS], the same as cclink publish):", *lines])


# --- entry point ----------------------------------------------------------------------


def _with_default_command(args: list[str]) -> list[str]:
    """`cclink [SESSION_ID] [options]` means `cclink publish ...`; `cclink --help` shows the help command's text."""
    names = set(typer.main.get_command(app).commands)  # type: ignore[attr-defined]
    if args in (["--help"], ["-h"]):
        return ["help"]
    if args and (args[0] in names or args[0] in GROUP_OPTIONS):
        return args
    return [PUBLISH, *args]


def _without_no_color(args: list[str]) -> list[str]:
    """--no-color may come anywhere before `--`: it turns colour off and leaves the command's own arguments."""
    from cclink.cli import console

    end = args.index("--") if "--" in args else len(args)
    if NO_COLOR not in args[:end]:
        return args
    console.no_colour()
    return [arg for arg in args[:end] if arg != NO_COLOR] + args[end:]


def _with_wait_alone(args: list[str]) -> list[str]:
    """`cclink pickup --wait` without a number means up to WAIT_ALONE seconds.

    (click's options cannot take an optional value, so it is written in here.)
    """
    if not args or args[0] != PICKUP:
        return args
    written = list(args)
    for index, arg in enumerate(args):
        if arg == "--":
            break
        following = args[index + 1] if index + 1 < len(args) else ""
        if arg == "--wait" and not _is_number(following):
            written[index] = f"--wait={WAIT_ALONE}"
    return written


def _is_number(word: str) -> bool:
    try:
        float(word)
    except ValueError:
        return False
    return True


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; every failure becomes one sentence on stderr and an exit code."""
    args = _with_wait_alone(_with_default_command(_without_no_color(list(sys.argv[1:] if argv is None else argv))))
    exits.unwind_on_termination_signals()
    try:
        # Typer reports its own usage errors (exit 2) and exits; ours land here.
        typer.main.get_command(app).main(args, prog_name="cclink", standalone_mode=True)
    except BaseException as error:  # noqa: BLE001 - every way out is decided in exits.leave
        exits.leave(error)


def _environment() -> Environment:
    from cclink.flows.environment import Environment
    from cclink.net.endpoints import Network

    return Environment.of_this_process(Network.from_environment())
