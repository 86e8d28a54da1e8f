"""Records through pkarr's HTTP relays (pkarr's design/relays.md; docs/wire.md §7a), alone or beside the DHT.

`RelayItems` gets and puts BEP 44 items over HTTP: `GET /<z32>` and
`PUT /<z32>` with the relay payload (signature | 8-byte big-endian seq | DNS
message), asking every relay at once. A relay is never trusted: each answer
is parsed and kept only if the caller's verify accepts it, exactly as an
item from a DHT node; a relay that lies, stalls, redirects or sends too much
only counts as one that did not answer. `DhtAndRelays` asks the DHT and the
relays at once and keeps the newest item; a put succeeds when either path
stored it (docs/design.md, "Relays beside the DHT").

http.client is imported only when a relay is really asked: commands that
never reach the network do not pay for it.
"""

from __future__ import annotations

import functools
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from cclink.errors import CclinkError, NetworkError, NoNetwork
from cclink.local import threads
from cclink.net import dht_client, endpoints, krpc
from cclink.net.record_store import DhtItems, Items, RecordStore
from cclink.net.seq_memory import SeqMemory
from cclink.wire import packet
from cclink.wire.keys import SIGNATURE_SIZE, PublicKey

if TYPE_CHECKING:
    import http.client

# A relay that has not accepted the connection by then is down or unreachable from here.
CONNECT_TIMEOUT = 3.0
# A GET makes the relay look the key up on the DHT unless it has it cached: a few seconds at most.
GET_TIMEOUT = 5.0
# A relay answers a PUT only once its own DHT put is done, which takes a lookup and a round of puts.
PUT_TIMEOUT = 10.0
# The largest relay payload: signature, seq and a 1000-byte DNS message (pkarr's relays refuse more: 413).
MAX_PAYLOAD = SIGNATURE_SIZE + packet.SEQ_SIZE + packet.MAX_MESSAGE_SIZE
# Read one byte past the cap, so a longer body is seen as too long rather than cut short.
READ_LIMIT = MAX_PAYLOAD + 1
# After a DHT lookup failed while a relay answered, lookups of this process ask the relays alone this long.
DHT_DOWN_FOR = 60.0
PUT_ROUNDS = 2  # puts signed again above what relays hold when they refused an item as older (409)
NEITHER_ANSWERED = (
    "the DHT could not be reached and no relay answered; check the network (or CCLINK_RELAYS) and try again"
)
NEITHER_STORED = "neither a DHT node nor a relay stored the record; check the network (or CCLINK_RELAYS) and try again"


def items_for(network: endpoints.Network) -> Items:
    """Where a network's records are: its DHT, and its relays beside it when it has any."""
    if not network.relays:
        return DhtItems(network)
    return DhtAndRelays(DhtItems(network), RelayItems(network.relays))


def record_store(network: endpoints.Network, seen: SeqMemory | None = None) -> RecordStore:
    """Records on network: on its DHT, and through its relays when it has any."""
    return RecordStore(items_for(network), seen)


# --- one relay, one request -----------------------------------------------------------------


@dataclass(frozen=True)
class _Answer:
    """What one relay answered: its status, and its body (at most MAX_PAYLOAD bytes)."""

    status: int
    body: bytes


class _Exchange:
    """One HTTP request to one relay, ended by abort() from another thread at the deadline."""

    def __init__(self, relay: str) -> None:
        self.relay = relay
        self._connection: http.client.HTTPConnection | None = None
        self._aborted = threading.Event()

    def run(self, method: str, z32: str, body: bytes | None, deadline: float) -> _Answer | None:
        import http.client

        try:
            return self._run(method, z32, body, deadline)
        except (OSError, ValueError, http.client.HTTPException):  # refused, reset, timed out, TLS, not HTTP
            return None
        finally:
            self.abort()

    def abort(self) -> None:
        """Stop the exchange where it is: a relay that drips bytes must not hold the command."""
        self._aborted.set()
        connection = self._connection
        if connection is not None and connection.sock is not None:
            try:
                connection.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            connection.close()

    def _run(self, method: str, z32: str, body: bytes | None, deadline: float) -> _Answer | None:
        import http.client

        url = urlsplit(self.relay)
        kind = http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        assert url.hostname is not None  # endpoints.parse_relays let only URLs with a host through
        connection = kind(url.hostname, url.port, timeout=min(CONNECT_TIMEOUT, remaining))
        self._connection = connection
        if self._aborted.is_set():
            return None
        connection.connect()
        assert connection.sock is not None
        connection.sock.settimeout(max(0.001, deadline - time.monotonic()))
        headers = {"Content-Type": "application/pkarr.org/relays#payload"} if body is not None else {}
        connection.request(method, f"{url.path}/{z32}", body=body, headers=headers)
        response = connection.getresponse()
        length = response.getheader("Content-Length")
        if length is not None and (not length.strip().isdigit() or int(length) > MAX_PAYLOAD):
            return None
        data = response.read(READ_LIMIT)
        if len(data) > MAX_PAYLOAD:
            return None
        return _Answer(response.status, data)


def _ask_all(relays: tuple[str, ...], method: str, z32: str, body: bytes | None, timeout: float) -> list[_Answer]:
    """Send one request to every relay at once: the answers that came in time."""
    deadline = time.monotonic() + timeout
    exchanges = [_Exchange(relay) for relay in relays]

    def abort_all() -> None:
        for exchange in exchanges:
            exchange.abort()

    calls = [functools.partial(exchange.run, method, z32, body, deadline) for exchange in exchanges]
    answers = threads.at_once(calls, NetworkError, deadline=deadline, on_late=abort_all)
    return [answer for answer in answers if isinstance(answer, _Answer)]


# --- the relays' items -----------------------------------------------------------------------


@dataclass(frozen=True)
class _Outcome:
    """How the relays answered one PUT."""

    accepted: int  # stored it (any 2xx)
    newer: int  # refused it as older than what they hold (409)
    answered: int  # gave any HTTP answer at all


@dataclass(frozen=True)
class RelayItems:
    """BEP 44 items through pkarr relays (URLs as endpoints.parse_relays writes them), every relay asked at once."""

    relays: tuple[str, ...]

    def get(self, public_key: bytes, verify: dht_client.Verify, *, timeout: float) -> krpc.Item | None:
        """The highest-seq item a relay returned that verifies, or None when the relays that answered hold none.

        NetworkError when no relay gave a usable answer: "none" would then be a guess.
        """
        z32 = PublicKey(public_key).z32
        answers = _ask_all(self.relays, "GET", z32, None, min(timeout, GET_TIMEOUT))
        items = [_item(public_key, answer.body, verify) for answer in answers if answer.status == 200]
        found = [item for item in items if item is not None]
        if not found and not any(answer.status == 404 for answer in answers):
            raise NetworkError("no relay answered; check the network (or CCLINK_RELAYS) and try again")
        return max(found, key=lambda item: item.seq, default=None)

    def put(
        self,
        public_key: bytes,
        value: bytes,
        sign: dht_client.Sign,
        verify: dht_client.Verify,
        *,
        timeout: float,
        min_seq: int = 0,
    ) -> dht_client.Stored:
        """Sign value at max(now in µs, min_seq) and PUT it to every relay; above what they hold if they refuse it.

        NetworkError when no relay accepted it.
        """
        _check_size(value)
        deadline = time.monotonic() + timeout
        seq = max(time.time_ns() // 1000, min_seq)
        for _ in range(PUT_ROUNDS):
            item = krpc.Item(seq, sign(seq), value)
            outcome = self._put(public_key, item, deadline)
            if outcome.accepted:
                return dht_client.Stored(seq, nodes=0, relays=outcome.accepted)
            if not outcome.newer or time.monotonic() >= deadline:
                break
            # A relay holds a newer item (another machine's clock runs ahead): sign above it, as dht_client does.
            newest = self.get(public_key, verify, timeout=deadline - time.monotonic())
            seq = max(time.time_ns() // 1000, seq + 1, newest.seq + 1 if newest else 0)
        raise NetworkError("no relay stored the record; check the network (or CCLINK_RELAYS) and try again")

    def put_again(
        self, public_key: bytes, item: krpc.Item, verify: dht_client.Verify, *, timeout: float
    ) -> dht_client.Stored:
        """PUT an item already signed, unchanged, to every relay; Stored.relays may be 0 (they hold a newer one).

        NetworkError when no relay answered at all.
        """
        outcome = self._put(public_key, item, time.monotonic() + timeout)
        if not outcome.answered:
            raise NetworkError("no relay answered; check the network (or CCLINK_RELAYS) and try again")
        return dht_client.Stored(item.seq, nodes=0, relays=outcome.accepted)

    def _put(self, public_key: bytes, item: krpc.Item, deadline: float) -> _Outcome:
        body = item.signature + item.seq.to_bytes(packet.SEQ_SIZE, "big") + item.value
        timeout = min(PUT_TIMEOUT, deadline - time.monotonic())
        answers = _ask_all(self.relays, "PUT", PublicKey(public_key).z32, body, timeout)
        statuses = [answer.status for answer in answers]
        return _Outcome(
            accepted=sum(200 <= status < 300 for status in statuses),
            newer=statuses.count(409),
            answered=len(statuses),
        )


def _item(public_key: bytes, body: bytes, verify: dht_client.Verify) -> krpc.Item | None:
    """A relay's 200 body as an item, if it is one and verify accepts it; None for anything else."""
    try:
        signed = packet.SignedPacket.from_relay_payload(PublicKey(public_key), body)
    except CclinkError:
        return None
    if signed.seq >= krpc.MAX_SEQ:  # no DHT node could hold it
        return None
    item = krpc.Item(signed.seq, signed.signature, signed.message)
    return item if verify(item) else None


def _check_size(value: bytes) -> None:
    if krpc.stored_size(value) > krpc.MAX_VALUE_SIZE:
        raise NetworkError(
            f"a DHT item holds at most {krpc.MAX_VALUE_SIZE} bytes as bencoded, not {krpc.stored_size(value)}"
        )


# --- the DHT and the relays together -------------------------------------------------------------


@dataclass
class _DhtDown:
    """Until when a process takes the DHT for unreachable, after a lookup there failed while a relay answered."""

    until: float = 0.0

    def now(self) -> bool:
        return time.monotonic() < self.until


@dataclass(frozen=True)
class DhtAndRelays:
    """Items on the DHT and through relays, both asked at once: the newest that verifies wins, either path will do."""

    dht: Items
    relays: RelayItems
    # A network that blocks UDP makes every DHT lookup wait out its timeouts; a process that looks up again and
    # again (pairing polls its mailbox) asks the relays alone for a while after the DHT failed and a relay did not.
    dht_down: _DhtDown = field(default_factory=_DhtDown, compare=False, repr=False)

    def get(self, public_key: bytes, verify: dht_client.Verify, *, timeout: float) -> krpc.Item | None:
        """The newest item either path found; NetworkError only when neither answered."""
        if self.dht_down.now():
            try:
                return self.relays.get(public_key, verify, timeout=timeout)
            except NetworkError:
                self.dht_down.until = 0.0  # the relays failed too: ask both again
        from_dht, from_relays = threads.at_once(
            [
                lambda: self.dht.get(public_key, verify, timeout=timeout),
                lambda: self.relays.get(public_key, verify, timeout=timeout),
            ],
            NetworkError,
        )
        if not isinstance(from_dht, krpc.Item | None) and not isinstance(from_relays, krpc.Item | None):
            raise _neither(from_dht, NEITHER_ANSWERED)
        if isinstance(from_dht, NetworkError):
            self.dht_down.until = time.monotonic() + DHT_DOWN_FOR
        found = [item for item in (from_dht, from_relays) if isinstance(item, krpc.Item)]
        return max(found, key=lambda item: item.seq, default=None)

    def put(
        self,
        public_key: bytes,
        value: bytes,
        sign: dht_client.Sign,
        verify: dht_client.Verify,
        *,
        timeout: float,
        min_seq: int = 0,
    ) -> dht_client.Stored:
        """One item on both paths: the DHT's put picks its seq (above anything its lookup finds), the relays get
        the item it signs the moment it signs it; if the DHT fails first, the relays sign their own.

        NetworkError only when neither path stored it.
        """
        _check_size(value)
        signed: list[krpc.Item] = []
        first_signed = threading.Event()

        def sign_for_dht(seq: int) -> bytes:
            signature = sign(seq)
            signed.append(krpc.Item(seq, signature, value))
            first_signed.set()
            return signature

        def on_dht() -> dht_client.Stored:
            try:
                return self.dht.put(public_key, value, sign_for_dht, verify, timeout=timeout, min_seq=min_seq)
            finally:
                first_signed.set()  # signed or failed: the relays need not wait any longer

        def on_relays() -> dht_client.Stored:
            first_signed.wait(timeout)
            if signed:
                return self.relays.put_again(public_key, signed[0], verify, timeout=timeout)
            return self.relays.put(public_key, value, sign, verify, timeout=timeout, min_seq=min_seq)

        on_dht_result, on_relays_result = threads.at_once([on_dht, on_relays], NetworkError)
        dht_stored = on_dht_result if isinstance(on_dht_result, dht_client.Stored) else None
        relayed = (
            on_relays_result if isinstance(on_relays_result, dht_client.Stored) and on_relays_result.relays else None
        )
        if dht_stored is None:
            if relayed is None:
                raise _neither(on_dht_result, NEITHER_STORED)
            return relayed
        if relayed is not None and relayed.seq != dht_stored.seq:
            # The DHT signed again above a newer item it met: the relays get that one too.
            relayed = self._relay_again(public_key, signed, dht_stored.seq, verify, timeout)
        return dht_client.Stored(dht_stored.seq, nodes=dht_stored.nodes, relays=relayed.relays if relayed else 0)

    def put_again(
        self, public_key: bytes, item: krpc.Item, verify: dht_client.Verify, *, timeout: float
    ) -> dht_client.Stored:
        """The item, unchanged, to both paths at once; NetworkError only when neither answered."""
        on_dht, on_relays = threads.at_once(
            [
                lambda: self.dht.put_again(public_key, item, verify, timeout=timeout),
                lambda: self.relays.put_again(public_key, item, verify, timeout=timeout),
            ],
            NetworkError,
        )
        if not isinstance(on_dht, dht_client.Stored) and not isinstance(on_relays, dht_client.Stored):
            raise _neither(on_dht, NEITHER_ANSWERED)
        nodes = on_dht.nodes if isinstance(on_dht, dht_client.Stored) else 0
        return dht_client.Stored(
            item.seq, nodes=nodes, relays=on_relays.relays if isinstance(on_relays, dht_client.Stored) else 0
        )

    def _relay_again(
        self, public_key: bytes, signed: list[krpc.Item], seq: int, verify: dht_client.Verify, timeout: float
    ) -> dht_client.Stored | None:
        item = next((item for item in signed if item.seq == seq), None)
        if item is None:
            return None
        try:
            return self.relays.put_again(public_key, item, verify, timeout=timeout)
        except NetworkError:
            return None


def _neither(from_dht: object, sentence: str) -> NetworkError:
    """The error when both paths failed: NoNetwork when the DHT found no network at all (relays need one too)."""
    if isinstance(from_dht, NoNetwork):
        return NoNetwork(f"{from_dht.message}, and no relay answered")
    return NetworkError(sentence)
