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


# --- BEP 32: nodes6 and want ------------------------------------------------------------------------


def compact_nodes6(count: int, port: int = 6881) -> bytes:
    """count distinct BEP 32 compact contacts (38 bytes each) on unique local addresses."""
    return b"".join(
        os.urandom(krpc.ID_SIZE) + socket.inet_pton(socket.AF_INET6, f"fd00::{n + 1:x}") + struct.pack("!H", port)
        for n in range(count)
    )


def test_nodes6_is_read_as_ipv6_contacts_in_canonical_text() -> None:
    node_id = bytes(range(20))
    vector = node_id + bytes.fromhex("20010db8000000000000000000000001") + bytes.fromhex("1ae1")

    parsed = krpc.parse_reply(reply({b"nodes6": vector}), PUBLIC_KEY)

    assert parsed is not None
    assert parsed.nodes == (krpc.Contact(node_id, ("2001:db8::1", 6881)),)


def test_nodes_and_nodes6_are_each_read_to_the_same_bound() -> None:
    parsed = krpc.parse_reply(
        reply({b"nodes": compact_nodes(LIAR_CONTACTS), b"nodes6": compact_nodes6(1700)}), PUBLIC_KEY
    )

    assert parsed is not None
    families = [":" in contact.address[0] for contact in parsed.nodes]
    assert families.count(False) == families.count(True) == krpc.MAX_CONTACTS


def test_nodes6_entries_with_port_0_and_a_trailing_fragment_are_skipped() -> None:
    nodes6 = compact_nodes6(3, port=0) + compact_nodes6(2) + os.urandom(37)

    parsed = krpc.parse_reply(reply({b"nodes6": nodes6}), PUBLIC_KEY)

    assert parsed is not None
    assert [contact.address for contact in parsed.nodes] == [("fd00::1", 6881), ("fd00::2", 6881)]


def test_a_nodes6_that_is_no_string_is_ignored() -> None:
    for garbage in (5, [b"x" * 38], {b"a": b"b"}, b"", os.urandom(37)):
        parsed = krpc.parse_reply(reply({b"nodes6": garbage, b"nodes": compact_nodes(1)}), PUBLIC_KEY)
        assert parsed is not None and len(parsed.nodes) == 1


def test_a_dual_stack_query_wants_both_families_and_a_single_stack_one_names_none() -> None:
    both = lt.bdecode(krpc.get_query(b"aa", bytes(20), bytes(20), krpc.WANT_BOTH))
    plain = lt.bdecode(krpc.find_node_query(b"aa", bytes(20), bytes(20)))

    assert both[b"a"][b"want"] == [b"n4", b"n6"]
    assert b"want" not in plain[b"a"]
