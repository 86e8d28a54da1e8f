"""Device items: the key under which a publisher leaves a handoff for one paired device alone (docs/wire.md).

A handoff record holds 1000 bytes, and each device in its age recipients
costs about 130 of them, so only one or two devices fit beside the
publisher's own key. Every other device gets its own record, an ordinary
one (same fields, same signed packet) under a key that the publisher P and
the device D can both derive and nobody else can:

    shared = X25519(P's X25519 secret, D's X25519 public)     (= X25519(D's secret, P's public))
    seed   = HKDF-SHA256(ikm = shared, salt = none, info = "cclink device item 1" NUL || P.raw || D.raw)

with the X25519 keys those of the Ed25519 keys as age uses them (keys.py).
The seed is an Ed25519 identity: P signs the item with it, and D looks it
up under its public key. The info names P then D, so the item P leaves for
D and the one D leaves for P are under different keys.

A DHT node sees only an unrelated key; the record's pubkey field names that
key too, so the item does not say who published it, nor for whom.
"""

from __future__ import annotations

import nacl.bindings
import nacl.exceptions

from cclink.errors import InvalidPublicKey
from cclink.wire.keys import Identity, PublicKey

INFO_PREFIX = b"cclink device item 1\0"
SEED_SIZE = 32


def item_identity(publisher: Identity, device: PublicKey) -> Identity:
    """The identity publisher signs its handoff for device with (the item publisher -> device)."""
    shared = _shared_secret(publisher, device)
    return Identity(_seed(shared, publisher.public_key, device))


def item_from(device: PublicKey, me: Identity) -> Identity:
    """The identity of device's item for this machine (device -> me): what me looks up, and can revoke."""
    shared = _shared_secret(me, device)
    return Identity(_seed(shared, device, me.public_key))


def _shared_secret(mine: Identity, theirs: PublicKey) -> bytes:
    their_x25519 = nacl.bindings.crypto_sign_ed25519_pk_to_curve25519(theirs.raw)
    try:
        shared = nacl.bindings.crypto_scalarmult(mine.x25519_secret(), their_x25519)
    except (nacl.exceptions.RuntimeError, nacl.exceptions.ValueError):
        raise InvalidPublicKey("that public key shares no secret with yours (a point of small order)") from None
    # libsodium refuses an all-zero result; checked again so that no build of it lets one through.
    if shared == bytes(len(shared)):
        raise InvalidPublicKey("that public key shares no secret with yours (a point of small order)")
    return shared


def _seed(shared: bytes, publisher: PublicKey, device: PublicKey) -> bytes:
    # Imported here, as kdf.py does: commands that derive no key do not pay for it.
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    info = INFO_PREFIX + publisher.raw + device.raw
    return HKDF(algorithm=hashes.SHA256(), length=SEED_SIZE, salt=None, info=info).derive(shared)
