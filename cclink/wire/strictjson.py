"""JSON read as strictly as the Rust reader (serde_json) reads it.

Python's json module also accepts repeated keys (keeping the last), NaN and
Infinity, and strings with lone surrogates; a record or payload that one
reader sees differently from another must be refused instead.
"""

from __future__ import annotations

import json


class RepeatedKey(ValueError):
    """An object names the same key twice."""


def loads(text: str) -> object:
    """The JSON value in text; ValueError (RepeatedKey for a repeated key) when it is not strict JSON."""
    try:
        return json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_reject_constant)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def is_unicode(text: str) -> bool:
    """False for strings holding lone surrogates (JSON `\\ud800` escapes), which serde_json refuses."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _unique_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    document = dict(pairs)
    if len(document) != len(pairs):
        raise RepeatedKey("a JSON object repeats a key")
    return document


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")
