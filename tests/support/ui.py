"""A UI for flows under test (cclink.flows.ui.UI): answers given in advance, every question and line kept."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass
class ScriptedUI:
    """Secrets and yes/no answers handed out in order; running out of either is the test's mistake."""

    secrets: list[str] = field(default_factory=list)
    answers: list[bool] = field(default_factory=list)
    interactive: bool = True
    said: list[str] = field(default_factory=list)
    asked: list[str] = field(default_factory=list)

    @classmethod
    def answering(
        cls, *, secrets: Iterable[str] = (), answers: Iterable[bool] = (), interactive: bool = True
    ) -> ScriptedUI:
        return cls(list(secrets), list(answers), interactive)

    def say(self, message: str) -> None:
        self.said.append(message)

    def secret(self, prompt: str, env_var: str, *, confirm: bool = False) -> str:
        self.asked.append(prompt)
        assert self.secrets, f"the flow asked for a secret the test did not give: {prompt!r}"
        return self.secrets.pop(0)

    def confirm(self, question: str, *, assume_yes: bool, when_not_interactive: bool) -> bool:
        if assume_yes:
            return True
        if not self.interactive:
            return when_not_interactive
        self.asked.append(question)
        assert self.answers, f"the flow asked a question the test did not answer: {question!r}"
        return self.answers.pop(0)
