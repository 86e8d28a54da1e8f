"""The acknowledgement of a carry: the picker proves that the whole session arrived (docs/wire.md §10).

A DHT item that only the recipient can make, costing the record no room:
it is a BEP 44 mutable item (no salt) signed with a key whose Ed25519 seed
is SHA-256("cclink carry ack\\0" + SHA-256 of the decrypted archive), which
only the publisher and whoever decrypted the whole session know. Its value
is the carry's 20-byte info-hash. The picker puts it right after
decrypting; the publisher looks for it while seeding, and takes a verified
item as the proof that the recipient has the session. A peer that merely
claims to have the file, or downloads the ciphertext (anyone who learns the
info-hash can), cannot make it.
"""

from __future__ import annotations

import hashlib
import threading
import time

from cclink.errors import CclinkError, WireError
from cclink.net import dht_client, endpoints, krpc
from cclink.wire.keys import Identity, PublicKey
from cclink.wire.payload import CarryInfo

KEY_LABEL = b"cclink carry ack\0"
# How long the picker may spend putting the item, and how often the
# publisher looks for it. After a peer looks finished it looks every
# SOON_EVERY seconds for SOON_FOR; otherwise, for a picker the seeder never
# saw finish (it resumed an interrupted download, say), every SLOW_EVERY. At
# most one lookup at a time.
PUT_TIMEOUT = 15.0
GET_TIMEOUT = 10.0
SOON_EVERY = 2.0
SOON_FOR = 60.0
SLOW_EVERY = 60.0


def ack_identity(archive_sha256: bytes) -> Identity:
    """The acknowledgement key: its Ed25519 seed is SHA-256 of KEY_LABEL and the decrypted archive's SHA-256."""
    return Identity(hashlib.sha256(KEY_LABEL + archive_sha256).digest())


def _signable(seq: int, value: bytes) -> bytes:
    """What a BEP 44 mutable item's signature covers (no salt)."""
    return b"3:seqi%de1:v%d:" % (seq, len(value)) + value


def _verifier(carry: CarryInfo, public_key: PublicKey) -> dht_client.Verify:
    """An item under the ack key counts when its signature holds and it names this carry's info-hash."""

    def verifies(item: krpc.Item) -> bool:
        if item.value != carry.info_hash:
            return False
        try:
            public_key.verify(_signable(item.seq, item.value), item.signature)
        except WireError:
            return False
        return True

    return verifies


# --- the picker's side ---------------------------------------------------------------


def acknowledge(carry: CarryInfo, archive_sha256: bytes, network: endpoints.Network) -> None:
    """Tell the publisher that the whole session arrived and decrypted: put the acknowledgement item.

    NetworkError when no node stored it.
    """
    identity = ack_identity(archive_sha256)
    dht_client.put(
        network,
        identity.public_key.raw,
        carry.info_hash,
        lambda seq: identity.sign(_signable(seq, carry.info_hash)),
        _verifier(carry, identity.public_key),
        timeout=PUT_TIMEOUT,
    )


class Acknowledging:
    """acknowledge() in a thread, so that the session is placed meanwhile; wait() before leaving the process."""

    def __init__(self, carry: CarryInfo, archive_sha256: bytes, network: endpoints.Network) -> None:
        self._done = False
        self._thread = threading.Thread(
            target=self._put, args=(carry, archive_sha256, network), name="cclink-ack", daemon=True
        )
        self._thread.start()

    def _put(self, carry: CarryInfo, archive_sha256: bytes, network: endpoints.Network) -> None:
        try:
            acknowledge(carry, archive_sha256, network)
            self._done = True
        except (CclinkError, OSError):
            pass  # the publisher then keeps offering the session until it gives up; wait() says so

    def wait(self) -> bool:
        """Whether the acknowledgement was stored (waits for the put, which is bounded by PUT_TIMEOUT)."""
        self._thread.join(PUT_TIMEOUT + 1)
        return self._done


# --- the publisher's side ------------------------------------------------------------


def is_acknowledged(carry: CarryInfo, archive_sha256: bytes, network: endpoints.Network) -> bool:
    """Whether the DHT holds the recipient's acknowledgement; NetworkError when no node answered."""
    public_key = ack_identity(archive_sha256).public_key
    return dht_client.get(network, public_key.raw, _verifier(carry, public_key), timeout=GET_TIMEOUT) is not None


class AckWatch:
    """The publisher's look-out for the recipient's acknowledgement.

    In a thread, so that seeding never waits for the DHT.
    """

    def __init__(self, carry: CarryInfo, archive_sha256: bytes, network: endpoints.Network) -> None:
        self.seen = False
        self._carry = carry
        self._archive_sha256 = archive_sha256
        self._network = network
        self._wake = threading.Event()
        self._stopped = False
        self._nudged = False
        self._thread = threading.Thread(target=self._watch, name="cclink-ack-watch", daemon=True)
        self._thread.start()

    def nudge(self) -> None:
        """A peer looks finished: look soon, and often for a while."""
        self._nudged = True
        self._wake.set()

    def close(self) -> None:
        self._stopped = True
        self._wake.set()

    def _watch(self) -> None:
        looked_at = float("-inf")
        look_at = time.monotonic() + SLOW_EVERY
        often_until = float("-inf")
        while not self._stopped:
            self._wake.wait(max(0.0, look_at - time.monotonic()))
            self._wake.clear()
            if self._stopped:
                return
            if self._nudged:
                self._nudged = False
                often_until = time.monotonic() + SOON_FOR
                # However often peers claim to be finished, one lookup per SOON_EVERY.
                look_at = min(look_at, max(time.monotonic(), looked_at + SOON_EVERY))
            if time.monotonic() < look_at:
                continue
            if self._look():
                self.seen = True
                return
            looked_at = time.monotonic()
            look_at = looked_at + (SOON_EVERY if looked_at < often_until else SLOW_EVERY)

    def _look(self) -> bool:
        try:
            return is_acknowledged(self._carry, self._archive_sha256, self._network)
        except (CclinkError, OSError):
            return False  # the DHT did not answer this time
