"""How results look (cclink.cli.render): the words for where a handoff was stored."""

from __future__ import annotations

import pytest

from cclink.cli import render
from cclink.net.dht_client import Stored


@pytest.mark.parametrize(
    ("stored", "words"),
    [
        (Stored(1, nodes=20), "20 DHT nodes"),
        (Stored(1, nodes=1), "1 DHT node"),
        (Stored(1, nodes=12, relays=2), "12 DHT nodes and 2 relays"),
        (Stored(1, nodes=0, relays=1), "1 relay"),
        (Stored(1, nodes=0), "0 DHT nodes"),
    ],
)
def test_where_a_handoff_was_stored(stored: Stored, words: str) -> None:
    assert render.stored_on(stored) == words


def test_status_without_an_agent_names_kept_items_and_carried_sessions_apart() -> None:
    lines = render.status_lines(None, render.Waiting(items=2, transfers=1), 0.0)
    shown = render.status_json(None, render.Waiting(items=2, transfers=1))

    assert lines[1].startswith("  2 items and 1 carried session will be taken up again")
    assert isinstance(shown, dict) and (shown["waiting"], shown["waiting_transfers"]) == (2, 1)
    assert render.status_lines(None, render.Waiting(0, 0), 0.0) == ["No agent is running."]
