"""Reading KRPC replies (cclink.net.krpc): what a node sends is bounded before anything keeps it."""

from __future__ import annotations

import os
import socket
import struct

import libtorrent as lt

from cclink.net import krpc

PUBLIC_KEY = bytes(range(32))
LIAR_CONTACTS = 2500  # as many as fit in one datagram


def compact_nodes(count: int, port: int = 6881) -> bytes:
    """count distinct BEP 5 compact contacts on loopback addresses."""
    return b"".join(
        os.urandom(krpc.ID_SIZE) + socket.inet_aton(f"127.0.{n // 250}.{n % 250 + 1}") + struct.pack("!H", port)
        for n in range(count)
    )


def reply(body: dict) -> bytes:
    return lt.bencode({b"t": b"aa", b"y": b"r", b"r": {b"id": bytes(krpc.ID_SIZE), **body}})


def test_a_reply_listing_thousands_of_contacts_yields_only_the_first_few() -> None:
    nodes = compact_nodes(LIAR_CONTACTS)

    parsed = krpc.parse_reply(reply({b"nodes": nodes}), PUBLIC_KEY)

    assert parsed is not None
    assert len(parsed.nodes) == krpc.MAX_CONTACTS == 8
    first = [node_id for node_id, _, _ in struct.iter_unpack("!20s4sH", nodes[: 8 * 26])]
    assert [contact.node_id for contact in parsed.nodes] == first


def test_the_few_contacts_kept_are_usable_ones() -> None:
    """Entries with port 0 are skipped, and do not use up the few places."""
    nodes = compact_nodes(20, port=0) + compact_nodes(20)

    parsed = krpc.parse_reply(reply({b"nodes": nodes}), PUBLIC_KEY)

    assert parsed is not None
    assert len(parsed.nodes) == krpc.MAX_CONTACTS
    assert all(contact.address[1] == 6881 for contact in parsed.nodes)


def test_a_token_longer_than_any_node_uses_is_not_kept() -> None:
    ordinary = krpc.parse_reply(reply({b"token": b"4byt"}), PUBLIC_KEY)
    huge = krpc.parse_reply(reply({b"token": os.urandom(60_000)}), PUBLIC_KEY)

    assert ordinary is not None and ordinary.token == b"4byt"
    assert huge is not None and len(huge.token or b"") == 0
