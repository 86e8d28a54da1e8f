"""`cclink agent`, `unlock`, `lock` and `status`: the background agent."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from cclink import text
from cclink.cli import render
from cclink.cli.group import app

if TYPE_CHECKING:
    from cclink.cli.render import Json
    from cclink.net.agent import Place
    from cclink.net.endpoints import Network
    from cclink.wire.agent_protocol import TransferEntry


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
    import time

    from cclink.cli import console
    from cclink.flows import keeping, seeding
    from cclink.net import agent, relays

    agent.without_core_dumps()  # it may be handed the key
    every = agent.republish_every(network, os.environ)
    items = relays.items_for(network)
    service = keeping.Keeping(items, functools.partial(agent.save_kept, place), every=every or keeping.REPUBLISH_EVERY)
    # Given after: a burn's revocation, once the agent put it, goes to this keeping to be kept alive.
    service.offers = seeding.Transfers(
        agent.TransferFiles(place.carry),
        network,
        items,
        service.keep,
        clock=time.time,
        renew_every=every or seeding.RENEW_EVERY,
        note=agent.log,
    )
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


@app.command("status")
def status_command(as_json: bool = typer.Option(False, "--json", help="Print as JSON.")) -> None:
    """Show what the background agent keeps alive on the DHT, the sessions it carries, and whether it holds your key."""
    import time

    from cclink.cli import console
    from cclink.net import agent
    from cclink.net.endpoints import Network
    from cclink.wire.agent_protocol import Status

    place = agent.Place.of(Network.from_environment())
    answer = agent.ask(place, Status())
    # With no agent, what the next one takes up: kept items and carried sessions alike.
    waiting = len(agent.read_kept(place)) + len(agent.TransferFiles(place.carry).saved_ids()) if answer is None else 0
    transfers = answer.transfers or () if answer is not None else ()
    if as_json:
        shown = render.status_json(answer, waiting)
        assert isinstance(shown, dict)
        shown["transfers"] = [_transfer_json(entry) for entry in transfers]
        render.print_json(shown)
        return
    lines = render.status_lines(answer, waiting, time.time())
    if transfers:
        lines[-1:-1] = _transfer_lines(transfers, time.time())  # before the key's line
    for line in lines:
        console.out(line)


_STATES = {
    "offering": "offering",
    "fetched": "fetched",
    "revoked": "stopped: the handoff was revoked or replaced elsewhere",
    "timed out": "stopped: nobody fetched it in time",
    "failed": "stopped: its file was not what the handoff promises",
}


def _transfer_lines(transfers: tuple[TransferEntry, ...], now: float) -> list[str]:
    """`cclink status`'s carried sessions: session, size, peers, bytes sent, state."""
    lines = [f"It offers {len(transfers)} carried session{'' if len(transfers) == 1 else 's'}:"]
    for entry in transfers:
        state = _STATES[entry.state] + ("; the burn-after-read handoff was revoked" if entry.revoked else "")
        lines.append(f"  Session {entry.session_id} ({text.format_bytes(entry.size)} encrypted): {state}")
        sent = f"{entry.peers} peer{'' if entry.peers == 1 else 's'}, {text.format_bytes(entry.uploaded)} sent"
        until = f"; offered for another {text.format_duration(max(0.0, entry.deadline - now))}"
        lines.append(f"    {sent}{until if entry.state == 'offering' else ''}")
    return lines


def _transfer_json(entry: TransferEntry) -> Json:
    from cclink.wire import z32

    return {
        "session_id": entry.session_id,
        "publisher": "pk:" + z32.encode(entry.publisher),
        "size": entry.size,
        "peers": entry.peers,
        "uploaded": entry.uploaded,
        "state": entry.state,
        "revoked": entry.revoked,
        "deadline": entry.deadline,
    }
