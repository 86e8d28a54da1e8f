"""The command group every command module registers with, and what commands share.

Modules are imported inside commands so `cclink --help` starts fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from cclink.flows import keystore
    from cclink.flows.environment import Environment

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

PUBLISH = "publish"
PICKUP = "pickup"


def environment() -> Environment:
    """This process's machine, on the network the environment variables name."""
    from cclink.flows.environment import Environment
    from cclink.net.endpoints import Network

    return Environment.of_this_process(Network.from_environment())


def unlocked_keys() -> keystore.UnlockedKeys | None:
    """The agent as a KeyStore's unlocked source, on the network of the environment (None if it is malformed)."""
    from cclink.errors import UsageError
    from cclink.net import agent
    from cclink.net.endpoints import Network

    try:
        return agent.unlocked_keys(Network.from_environment())
    except UsageError:
        return None
