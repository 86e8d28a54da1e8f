"""The pairwise key of a device item (wire/device_items.py): the same on both machines, one per direction,
and as docs/wire.md spells it out, checked against a second X25519 and HKDF (cryptography's, and hmac)."""

from __future__ import annotations

import hashlib
import hmac

import nacl.bindings
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from cclink.wire import device_items
from cclink.wire.keys import Identity

LAPTOP = Identity(bytes(range(32)))
DESK = Identity(bytes(range(32, 64)))

# laptop -> desk and desk -> laptop, for LAPTOP and DESK above.
VECTORS = {
    "laptop->desk": (
        "35c5249c8c86520c49c87124d4d310ecb0e8c62c5efc6d492248186c7e98d1ff",
        "o84irbib7zyq3du9jx8r7eekqbogzcekppwzatb6c1ke6ifbnnmy",
    ),
    "desk->laptop": (
        "50317927bbb129eed5417f1d9ad0c7edca87d05e72d7feb00a3d77b65cb6e7d3",
        "dea31suss6dsqbkfbmy94mu14owa5mxktsx1sbwkyk1uixtoswjy",
    ),
}


def spelled_out(publisher: Identity, device: Identity) -> bytes:
    """The seed as docs/wire.md defines it, from other implementations of X25519 and HKDF-SHA256."""
    secret = X25519PrivateKey.from_private_bytes(publisher.x25519_secret())
    their = X25519PublicKey.from_public_bytes(nacl.bindings.crypto_sign_ed25519_pk_to_curve25519(device.public_key.raw))
    shared = secret.exchange(their)
    info = b"cclink device item 1\x00" + publisher.public_key.raw + device.public_key.raw
    prk = hmac.new(bytes(32), shared, hashlib.sha256).digest()  # no salt: 32 zero bytes (RFC 5869)
    return hmac.new(prk, info + b"\x01", hashlib.sha256).digest()


def test_publisher_and_device_derive_the_same_identity_and_each_direction_its_own() -> None:
    to_desk = device_items.item_identity(LAPTOP, DESK.public_key)
    to_laptop = device_items.item_identity(DESK, LAPTOP.public_key)

    assert device_items.item_from(LAPTOP.public_key, DESK).seed == to_desk.seed
    assert device_items.item_from(DESK.public_key, LAPTOP).seed == to_laptop.seed
    assert to_desk.public_key != to_laptop.public_key
    assert to_desk.public_key not in (LAPTOP.public_key, DESK.public_key)


def test_the_derivation_matches_its_vectors_and_its_definition() -> None:
    for name, (publisher, device) in {"laptop->desk": (LAPTOP, DESK), "desk->laptop": (DESK, LAPTOP)}.items():
        derived = device_items.item_identity(publisher, device.public_key)
        seed, public = VECTORS[name]
        assert (derived.seed.hex(), derived.public_key.z32) == (seed, public), name
        assert derived.seed == spelled_out(publisher, device), name


def test_a_third_machine_derives_another_key() -> None:
    stranger = Identity.generate()
    to_desk = device_items.item_identity(LAPTOP, DESK.public_key)

    # Knowing both public keys, a stranger's own secret leads elsewhere.
    assert device_items.item_from(LAPTOP.public_key, stranger).public_key != to_desk.public_key
    assert device_items.item_identity(stranger, DESK.public_key).public_key != to_desk.public_key
