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
