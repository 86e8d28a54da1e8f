"""Interoperability with npm pkarr 1.3.0: each reads the packets the other puts on a local DHT swarm.

cclink runs as the real command on its machines (tests/support/machines.py);
npm pkarr runs as node processes through scripts/pkarr-js/pkarr-op.mjs
(tests/support/pkarr_js.py), which puts and gets packets as pkarr's own
publish and resolve do. Without node or the npm package the tests skip.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
from support.machines import Machine
from support.pkarr_js import PkarrJs, cclink_record, opened_session, pkarr_js

from cclink.wire import keyfile, packet
from cclink.wire.keys import Identity

pytestmark = pytest.mark.e2e


@dataclass
class Resolved:
    """A session cclink published, and what npm pkarr resolved under its key afterwards."""

    identity: Identity
    session_id: str
    seq: int
    answer: dict[str, Any]


# --- helpers ------------------------------------------------------------------------


def identity_of(machine: Machine) -> Identity:
    """The machine's key, read from its unencrypted key file."""
    return keyfile.load_identity(machine.key_file, lambda: "")


def cclink_publish(machine: Machine) -> tuple[str, int]:
    """Publish a new session of the machine's project with the real command; (session id, seq)."""
    project = machine.project()
    session_id = machine.add_session(project)
    published = json.loads(machine.ok(session_id, "--json", cwd=project).stdout)
    return session_id, published["seq"]


# --- fixtures -----------------------------------------------------------------------


@pytest.fixture
def js(swarm, tmp_path) -> PkarrJs:
    """npm pkarr on the test swarm (or a skip, saying what is missing)."""
    return pkarr_js(swarm.bootstrap, tmp_path / "pkarr-js")


@pytest.fixture
def resolved(js: PkarrJs, laptop: Machine) -> Resolved:
    """The laptop publishes a session with cclink; npm pkarr resolves its key."""
    laptop.init()
    identity = identity_of(laptop)
    session_id, seq = cclink_publish(laptop)
    return Resolved(identity, session_id, seq, js.resolve(identity.public_key.z32))


# --- cclink publishes, npm pkarr reads ------------------------------------------------


def test_npm_pkarr_finds_and_verifies_the_packet_cclink_published(resolved: Resolved) -> None:
    """pkarr checks the Ed25519 signature over the BEP 44 bytes; seq must be the one cclink signed."""
    assert resolved.answer["found"] is True
    assert resolved.answer["verified"] is True
    assert resolved.answer["seq"] == resolved.seq


def test_npm_pkarr_reads_the_one_answer_as_cclink_dot_the_key(resolved: Resolved) -> None:
    assert resolved.answer["names"] == [f"_cclink.{resolved.identity.public_key.z32}"]


def test_the_txt_npm_pkarr_reads_is_the_signed_handoff_of_the_session(resolved: Resolved) -> None:
    assert opened_session(resolved.answer["txt"], resolved.identity) == resolved.session_id


def test_npm_pkarr_encodes_the_same_txt_into_the_very_dns_bytes_cclink_published(
    js: PkarrJs, resolved: Resolved
) -> None:
    """Same TXT, same DNS message, byte for byte: chunking, names, TTL and flags agree."""
    txt = resolved.answer["txt"].encode()
    identity = resolved.identity

    encoded = js.encode(identity.seed, txt)

    assert encoded["dns_hex"] == resolved.answer["dns_hex"]
    assert encoded["dns_hex"] == packet.record_message(identity.public_key, txt).hex()


# --- npm pkarr publishes, cclink reads ------------------------------------------------


def test_cclink_picks_up_the_handoff_npm_pkarr_published(js: PkarrJs, paired: tuple[Machine, Machine]) -> None:
    laptop, desktop = paired
    identity = identity_of(laptop)
    session_id = "0b7c5a52-6c1e-4c5e-9a49-5a3f2b1d7e10"
    js.publish(identity.seed, cclink_record(identity, session_id))

    picked = json.loads(desktop.ok("pickup", "--json", identity.public_key.z32).stdout)

    assert picked["session_id"] == session_id
    assert picked["publisher"] == identity.public_key.display


def test_a_cclink_publish_supersedes_npm_pkarrs_and_npm_pkarr_reads_the_new_one(js: PkarrJs, laptop: Machine) -> None:
    """pkarr's seq is its clock in microseconds; cclink's next publish must sign above it, not above its own last."""
    laptop.init()
    identity = identity_of(laptop)
    cclink_publish(laptop)
    theirs = js.publish(identity.seed, cclink_record(identity, "5d0f1e2a-3b4c-4d5e-8f60-718293a4b5c6"))

    session_id, seq = cclink_publish(laptop)
    answer = js.resolve(identity.public_key.z32)

    assert seq > theirs["seq"]
    assert answer["seq"] == seq
    assert opened_session(answer["txt"], identity) == session_id
