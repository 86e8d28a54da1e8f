"""`cclink pair` and `cclink devices`: pair with another machine through a short code, and manage what was paired."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from cclink import text
from cclink.cli import render
from cclink.cli.group import app, environment

if TYPE_CHECKING:
    from cclink.wire.contacts import Contact

DEFAULT_TIMEOUT = 600  # wire.pairing.DEFAULT_TIMEOUT, written out so that help needs no import


@app.command("pair")
def pair_command(
    code: str | None = typer.Argument(
        None, metavar="[CODE]", help="The code the other machine shows; without it, this machine shows one."
    ),
    join: bool = typer.Option(
        False, "--join", help="Type the code at a prompt, or take it from CCLINK_PAIR_CODE (out of sight in argv)."
    ),
    colleague: bool = typer.Option(
        False, "--colleague", help="Pair with someone else's machine: it gets only what you --share with it."
    ),
    name: str | None = typer.Option(
        None, "--name", help="What to call the other machine here (default: its hostname)."
    ),
    timeout: int = typer.Option(DEFAULT_TIMEOUT, "--timeout", metavar="SECS", help="How long the code stays good."),
    qr: bool = typer.Option(False, "--qr", help="Also show the code as a QR code."),
    yes: bool = typer.Option(False, "-y", "--yes", help="Pair without asking (needed without a terminal)."),
) -> None:
    """Pair with another machine: `cclink pair` here shows a code, `cclink pair CODE` there completes it."""
    import os

    from cclink.cli import console
    from cclink.flows import pairing

    request = pairing.PairRequest("contact" if colleague else "device", name, timeout, yes)
    env = environment()
    if code is not None or join or os.environ.get(pairing.CODE_ENV):
        outcome = pairing.join(console, env, request, code)
        console.out(_paired(outcome.peer))
        return
    offer = pairing.offer(console, env, request)
    # The code alone on stdout, at once: a script reads it while this side waits.
    console.out(str(offer.code), flush=True)
    if qr:
        console.show_qr(str(offer.code), on_stderr=True)
    console.say(
        f"On the other machine, run: cclink pair {offer.code}   (good for {text.format_duration(request.timeout)})"
    )
    outcome = pairing.complete(console, env, offer, request)
    console.say(_paired(outcome.peer))


def _paired(peer: Contact) -> str:
    what = "a device of yours" if peer.is_device else "a colleague"
    return f"Paired with {peer.name} ({peer.key.display}) as {what}."


devices_app = typer.Typer(
    help="List your paired devices and colleagues; rename or remove them.",
    invoke_without_command=True,
    no_args_is_help=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(devices_app, name="devices")


@devices_app.callback()
def devices_command(
    ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="Print the list as JSON.")
) -> None:
    """List your paired devices and colleagues (`cclink devices rename OLD NEW`, `cclink devices remove NAME`)."""
    if ctx.invoked_subcommand is not None:
        return
    from cclink.cli import console
    from cclink.wire.contacts import ContactBook

    contacts = ContactBook.default().all()
    if as_json:
        render.print_json({"devices": [_as_json(contact) for contact in contacts]})
        return
    if not contacts:
        console.say("Nothing is paired yet: run `cclink pair` here and `cclink pair CODE` on the other machine.")
        return
    width = max(len(contact.name) for contact in contacts)
    for contact in contacts:
        kind = "device" if contact.is_device else "colleague"
        added = render.utc(contact.added)
        console.out(f"{contact.name:<{width}}  {kind:<9}  {contact.key.display}  added {added}")


def _as_json(contact: Contact) -> dict[str, object]:
    return {"name": contact.name, "kind": contact.kind, "key": contact.key.display, "added": contact.added}


@devices_app.command("rename")
def rename_command(
    old: str = typer.Argument(..., metavar="OLD", help="The name (or key) of a device or colleague."),
    new: str = typer.Argument(..., metavar="NEW", help="Its new name."),
) -> None:
    """Give a device or colleague another name."""
    from cclink.cli import console
    from cclink.flows import pairing
    from cclink.wire.contacts import ContactBook

    renamed = pairing.rename(ContactBook.default(), old, new)
    console.out(f"Renamed to {renamed.name} ({renamed.key.display}).")


@devices_app.command("remove")
def remove_command(
    name: str = typer.Argument(..., metavar="NAME", help="The name (or key) of a device or colleague."),
    yes: bool = typer.Option(False, "-y", "--yes", help="Do not ask first."),
) -> None:
    """Forget a device or colleague: it gets nothing you publish from now on."""
    from cclink.cli import console
    from cclink.flows import pairing
    from cclink.wire.contacts import ContactBook

    removed = pairing.remove(console, ContactBook.default(), name, assume_yes=yes)
    console.out(f"Removed {removed.name} ({removed.key.display}).")
