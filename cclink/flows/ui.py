"""What a flow may ask of the person running it: the UI a flow is given instead of a terminal.

The CLI passes its console (cli/console.py); tests pass a scripted one
(tests/support/ui.py). A flow never prints or reads by itself.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Protocol


class Progress(Protocol):
    def update(self, message: str) -> None:
        """Replace the message shown while the work goes on."""


class UI(Protocol):
    def say(self, message: str) -> None:
        """One line for the person: progress or a note."""

    def secret(self, prompt: str, env_var: str, *, confirm: bool = False) -> str:
        """A secret from env_var when set, else typed (twice with confirm); NoInput when neither can be."""
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
