"""The acknowledgement of a carry (docs/wire.md §10): its key, from tests/vectors/carry.json."""

from __future__ import annotations

import pytest
from vector_files import cases

from cclink.flows import acknowledgement
from cclink.net import krpc


@pytest.mark.parametrize("vector", cases("carry", "acknowledgement_keys"))
def test_the_acknowledgement_key_comes_from_the_decrypted_archive(vector: dict) -> None:
    identity = acknowledgement.ack_identity(bytes.fromhex(vector["archive_sha256_hex"]))

    assert identity.seed.hex() == vector["seed_hex"]
    assert identity.public_key.raw.hex() == vector["public_key_hex"]
    assert krpc.target_of(identity.public_key.raw).hex() == vector["target_hex"]
