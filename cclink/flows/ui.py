"""What a flow may ask of the person running it: the UI a flow is given instead of a terminal.

The CLI passes its console (cli/console.py); tests pass a scripted one
(tests/support/ui.py). A flow never prints or reads by itself.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Protocol

from cclink.errors import Declined, NoInput

# Tries at a secret typed at a terminal: a PIN or passphrase that the rules refuse, or that is wrong.
SECRET_TRIES = 3


class Progress(Protocol):
    def update(self, message: str) -> None:
        """Replace the message shown while the work goes on."""


class UI(Protocol):
    def is_interactive(self) -> bool:
        """Whether there is a person to ask."""
        ...

    def say(self, message: str) -> None:
        """One line for the person: progress or a note."""

    def secret(
        self, prompt: str, env_var: str, *, confirm: bool = False, check: Callable[[str], None] | None = None
    ) -> str:
        """A secret from env_var when set, else typed (twice with confirm); NoInput when neither can be.

        check (which raises WeakSecret) judges it before it is typed again,
        and a person may type another after a refusal.
        """
        ...

    def can_retype(self, env_var: str) -> bool:
        """Whether a secret found wrong can be asked for again: typed by a person, not taken from env_var."""
        ...

    def confirm(self, question: str, *, assume_yes: bool, when_not_interactive: bool) -> bool:
        """A yes/no answer; assume_yes answers yes, and without a person to ask, when_not_interactive."""
        ...

    def choose(self, title: str, options: list[str], *, when_not_interactive: int) -> int:
        """The index of the option the person picks; without a person to ask, when_not_interactive."""
        ...

    def progress(self, message: str) -> AbstractContextManager[Progress]:
        """Show message while the `with` block runs (a spinner on a terminal, nothing elsewhere)."""
        ...


def go_ahead(ui: UI, question: str, *, assume_yes: bool, otherwise: str, unattended: bool) -> None:
    """Return on a yes; unattended is the answer when there is nobody to ask.

    A person's no raises Declined(otherwise): nothing is done, and that is
    no failure. A no for want of a person raises NoInput, naming -y.
    """
    if assume_yes or (not ui.is_interactive() and unattended):
        return
    if not ui.is_interactive():
        raise NoInput(f"{otherwise}: there is no terminal to ask on; pass -y to go ahead")
    if not ui.confirm(question, assume_yes=False, when_not_interactive=unattended):
        raise Declined(otherwise)
