"""The test vectors in tests/vectors/*.json, one file a topic (tests/vectors/README.md, docs/wire.md §12)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest

VECTORS = Path(__file__).parent / "vectors"


@cache
def load(name: str) -> dict[str, Any]:
    """tests/vectors/<name>.json (shared between callers: do not change it)."""
    return json.loads((VECTORS / f"{name}.json").read_text(encoding="utf-8"))


def cases(name: str, group: str) -> list[Any]:
    """The cases of one group as pytest parameters, each named by its "name" or else by its first value."""
    return [pytest.param(case, id=str(case.get("name", next(iter(case.values()))))) for case in load(name)[group]]


def case(name: str, group: str, case_name: str) -> dict[str, Any]:
    """The case called case_name in one group."""
    (found,) = [each for each in load(name)[group] if each.get("name") == case_name]
    return found


def data(vector: dict[str, Any], field: str) -> bytes:
    """The bytes a case gives as <field>_hex or <field>_text."""
    if f"{field}_hex" in vector:
        return bytes.fromhex(vector[f"{field}_hex"])
    return vector[f"{field}_text"].encode()
