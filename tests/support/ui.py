"""A UI for flows under test (cclink.flows.ui.UI): answers given in advance, every question and line kept."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field


@dataclass
class ScriptedUI:
    """Secrets, yes/no answers and menu choices handed out in order; running out of any is the test's mistake."""

    secrets: list[str] = field(default_factory=list)
    answers: list[bool] = field(default_factory=list)
    interactive: bool = True
    choices: list[int] = field(default_factory=list)
    said: list[str] = field(default_factory=list)
    asked: list[str] = field(default_factory=list)
    menus: list[list[str]] = field(default_factory=list)
    shown: list[str] = field(default_factory=list)  # progress messages, updates included

    @classmethod
    def answering(
        cls,
        *,
        secrets: Iterable[str] = (),
        answers: Iterable[bool] = (),
        choices: Iterable[int] = (),
        interactive: bool = True,
    ) -> ScriptedUI:
        return cls(list(secrets), list(answers), interactive, list(choices))

    def is_interactive(self) -> bool:
        return self.interactive

    def say(self, message: str) -> None:
        self.said.append(message)

    def secret(
        self, prompt: str, env_var: str, *, confirm: bool = False, check: Callable[[str], None] | None = None
    ) -> str:
        """The next scripted secret, judged by check as console.secret does (without the second chances)."""
        self.asked.append(prompt)
        assert self.secrets, f"the flow asked for a secret the test did not give: {prompt!r}"
        value = self.secrets.pop(0)
        if check is not None:
            check(value)
        return value

    def can_retype(self, env_var: str) -> bool:
        return self.interactive

    def confirm(self, question: str, *, assume_yes: bool, when_not_interactive: bool) -> bool:
        if assume_yes:
            return True
        if not self.interactive:
            return when_not_interactive
        self.asked.append(question)
        assert self.answers, f"the flow asked a question the test did not answer: {question!r}"
        return self.answers.pop(0)

    def choose(self, title: str, options: list[str], *, when_not_interactive: int) -> int:
        if not self.interactive:
            return when_not_interactive
        self.asked.append(title)
        self.menus.append(list(options))
        assert self.choices, f"the flow offered a menu the test did not choose from: {title!r}"
        return self.choices.pop(0)

    @contextmanager
    def progress(self, message: str) -> Iterator[ScriptedUI]:
        self.shown.append(message)
        yield self

    def update(self, message: str) -> None:
        """A progress message replaced while the work goes on (the Progress side of progress())."""
        self.shown.append(message)
