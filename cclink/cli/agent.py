"""`cclink agent`, `unlock`, `lock` and `status`: the background agent."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from cclink import text
from cclink.cli import render
from cclink.cli.group import app

if TYPE_CHECKING:
    from cclink.net.agent import Place
    from cclink.net.endpoints import Network


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
    from cclink.net import agent, agent_server, relays
    from cclink.net.transfer_files import TransferFiles

    agent_server.without_core_dumps()  # it may be handed the key
    every = agent.republish_every(network, os.environ)
    items = relays.items_for(network)
    service = keeping.Keeping(items, functools.partial(agent.save_kept, place), every=every or keeping.REPUBLISH_EVERY)
    # Given after: a burn's revocation, once the agent put it, goes to this keeping to be kept alive.
    service.offers = seeding.Transfers(
        TransferFiles(place.carry),
        network,
        items,
        service.keep,
        clock=time.time,
        renew_every=every or seeding.RENEW_EVERY,
        note=agent_server.log,
    )
    other = agent_server.serve(place, service)
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
    from cclink.net.transfer_files import TransferFiles
    from cclink.wire.agent_protocol import Status

    place = agent.Place.of(Network.from_environment())
    answer = agent.ask(place, Status())
    # With no agent, what the next one takes up: kept items and carried sessions.
    waiting = render.Waiting(0, 0)
    if answer is None:
        waiting = render.Waiting(len(agent.read_kept(place)), len(TransferFiles(place.carry).saved_ids()))
    if as_json:
        render.print_json(render.status_json(answer, waiting))
        return
    for line in render.status_lines(answer, waiting, time.time()):
        console.out(line)
