"""The command line: parse arguments, call a flow, show its result.

Each command lives in a module of its own, which registers it with the group
(cli/group.py); this module adds `help` and the entry point, the only place
that turns errors into messages and exit codes.
"""

from __future__ import annotations

import sys

import typer
import typer.main

from cclink.cli import exits

# The command modules register their commands as they are imported: in the order help lists them.
# isort: off
from cclink.cli import publish as _publish, pickup as _pickup, keys as _keys, pair as _pair  # noqa: F401
from cclink.cli import manage as _manage  # noqa: F401
from cclink.cli import agent as _agent, dev as _dev  # noqa: F401

# isort: on
from cclink.cli.group import PICKUP, PUBLISH, app
from cclink.cli.pickup import WAIT_ALONE

# Options of the group itself: they come before a command, and say nothing about publishing.
GROUP_OPTIONS = ("--help", "-h", "--install-completion", "--show-completion")
NO_COLOR = "--no-color"


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
