"""`cclink init` and `cclink whoami`: your key."""

from __future__ import annotations

import typer

from cclink.cli import render
from cclink.cli.group import app, unlocked_keys


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
    saved = f"Saved to {outcome.path} ({'passphrase-protected' if outcome.encrypted else 'unencrypted'})."
    console.out(saved, flush=True)  # before the next steps on stderr, also where both go to one pipe
    # For the person, on stderr: a script reading the key from stdout gets only the result.
    for line in IMPORTED_NEXT if outcome.imported else CREATED_NEXT:
        console.say(line)


# What to run next: a new user's first question after init. An imported key is
# shared with the machine it came from, which therefore needs no pairing.
CREATED_NEXT = (
    "Next:",
    "  here, in a project:     cclink          hands off its newest session",
    "  for another machine:    cclink pair     here, then `cclink init` and `cclink pair CODE` there",
    "  then on that machine:   cclink pickup   resumes what you handed off",
)
IMPORTED_NEXT = (
    "Next:",
    "  here, in a project:     cclink          hands off its newest session",
    "  to resume one here:     cclink pickup   from a machine with this key or paired with it",
)


@app.command("whoami")
def whoami_command(as_json: bool = typer.Option(False, "--json", help="Print as JSON.")) -> None:
    """Show your public key, its fingerprint and the key file."""
    from cclink.cli import console
    from cclink.flows import keystore

    public_key, path = keystore.whoami(console, keystore.KeyStore.default(unlocked=unlocked_keys()))
    if as_json:
        render.print_json(
            {"public_key": public_key.display, "fingerprint": public_key.fingerprint, "key_file": str(path)}
        )
        return
    console.out(f"Public Key:  {public_key.display}")
    console.out(f"Fingerprint: {public_key.fingerprint}")
    console.out(f"Key file:    {path}")
