"""`cclink relay`: a pkarr relay (pkarr's design/relays.md) over HTTP, backed by cclink's own DHT client.

Machines that cannot reach the DHT (a network that blocks UDP) PUT and GET
signed packets here over HTTP. A PUT's signature is checked before anything
else; the packet is then cached and put on the DHT unchanged. A GET answers
from the cache while the entry is fresh, else looks the key up on the DHT
(one lookup per key however many ask at once) and caches the newest packet
that verifies. The relay trusts no one: not its clients, not the DHT.

Everything is bounded (docs/design.md, "The relay"): cache entries (LRU),
DHT calls at once and queued, a token bucket per client address in a table
of bounded size, request line and headers, body size and the time to send
it, idle connections and the number of connections.

This module imports aiohttp; only `cclink relay` imports it, so no other
command pays for loading an HTTP server.
"""

from __future__ import annotations

import asyncio
import collections
import datetime
import email.utils
import errno
import ipaddress
import logging
import math
import resource
import signal
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

import dns.message
from aiohttp import http_exceptions, web

from cclink.errors import NetworkError, UsageError, WireError
from cclink.net import krpc
from cclink.net.dht_client import Stored
from cclink.net.endpoints import Endpoint, format_endpoint
from cclink.net.record_store import GET_TIMEOUT, PUT_TIMEOUT, Items, verifier
from cclink.wire import packet
from cclink.wire.keys import PublicKey

MAX_BODY = 64 + 8 + packet.MAX_MESSAGE_SIZE  # signature, seq, DNS message: 1072 bytes
PAYLOAD_TYPE = "application/pkarr.org/relays#payload"
STORED_NODES_HEADER = "Pkarr-Dht-Stored-Nodes"
CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, PUT, OPTIONS",
    "Access-Control-Allow-Headers": "Content-Type, If-Match, If-Modified-Since",
    "Access-Control-Expose-Headers": f"{STORED_NODES_HEADER}, Last-Modified, Memento-Datetime",
    "Access-Control-Max-Age": "86400",
}
# How long a cached answer stands before the DHT is asked again: the packet's smallest DNS TTL,
# held between these. cclink's records say a day; a relay that believed that would hide a newer
# handoff published straight to the DHT for as long, so the relay asks again within a minute.
MIN_FRESH = 5.0
MAX_FRESH = 60.0
ABSENT_FRESH = 5.0  # "the DHT holds nothing": asked again after this, so a new publish shows soon
REFUSED_CONNECTION = b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"

T = TypeVar("T")


@dataclass(frozen=True)
class Limits:
    """The relay's bounds; the defaults are what `cclink relay` runs with."""

    cache_entries: int = 10_000  # packets (and "nothing here" answers) kept, least recently used dropped first
    dht_threads: int = 16  # DHT lookups and puts running at once
    dht_queued: int = 256  # more waiting for a thread; beyond that a request that needs the DHT gets 503
    rate: float = 1.0  # requests per second a client's bucket refills
    burst: int = 20  # requests a client may make at once
    clients: int = 10_000  # buckets kept; the client seen least recently is forgotten first
    connections: int = 2048  # open at once; one more gets 503 and is closed
    idle_seconds: float = 15.0  # a connection that sends no request for this long is closed
    body_seconds: float = 10.0  # to send a PUT's body once its headers are in
    linger_seconds: float = 1.0  # reading what is left of a refused body, so that its sender gets the answer
    drain_seconds: float = 5.0  # on SIGINT or SIGTERM, for requests in flight to finish
    max_line: int = 2048  # the request line
    max_field: int = 4096  # one header
    max_headers: int = 64


# --- answers --------------------------------------------------------------------------------


class Refusal(Exception):
    """An HTTP error answer: its status and one sentence, in plain text, with CORS headers like every answer."""

    def __init__(self, status: int, reason: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = dict(headers or {})

    def response(self) -> web.Response:
        return web.Response(status=self.status, text=self.reason + "\n", headers=self.headers)


def http_date(seconds: float) -> str | None:
    """An HTTP date (RFC 9110) for a Unix time, or None for a time no date can say (a seq far in the future)."""
    try:
        return email.utils.formatdate(seconds, usegmt=True)
    except (OverflowError, OSError, ValueError):
        return None


# --- the cache ------------------------------------------------------------------------------


@dataclass
class Entry:
    """What the relay knows of one key: the newest packet that verified, or None when the DHT held nothing."""

    packet: packet.SignedPacket | None
    checked: float  # time.monotonic() when the DHT was last asked, or the packet PUT
    seen: float  # Unix time the packet was last seen, on the DHT or in a PUT (Memento-Datetime)
    fresh_for: float

    def fresh(self, now: float) -> bool:
        return now - self.checked < self.fresh_for

    def max_age(self, now: float) -> int:
        return max(0, math.floor(self.fresh_for - (now - self.checked)))


def fresh_for(signed: packet.SignedPacket | None) -> float:
    """How long an answer stands: the packet's smallest DNS TTL within MIN_FRESH..MAX_FRESH."""
    if signed is None:
        return ABSENT_FRESH
    # Parsed before (valid_packet), so it parses again.
    ttls = [rrset.ttl for rrset in dns.message.from_wire(signed.message, one_rr_per_rrset=True).answer]
    return min(MAX_FRESH, max(MIN_FRESH, float(min(ttls, default=MAX_FRESH))))


def supersedes(older: packet.SignedPacket, newer: packet.SignedPacket) -> bool:
    """Whether newer may replace older under BEP 44's rule: a higher seq, or the very same item again."""
    return newer.seq > older.seq or newer == older


class Cache:
    """The newest packet per key, least recently used dropped beyond `size` entries."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: collections.OrderedDict[bytes, Entry] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: bytes) -> Entry | None:
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
        return entry

    def offer(self, key: bytes, found: packet.SignedPacket | None) -> Entry:
        """What was just found for key (on the DHT, or in a PUT): kept if newer than the cached packet.

        Either way the key was just checked. An older packet, or none, never
        replaces a newer one: the DHT may have lost what a client PUT here.
        """
        now, wall = time.monotonic(), time.time()
        entry = self._entries.get(key)
        if entry is None or entry.packet is None or (found is not None and supersedes(entry.packet, found)):
            entry = Entry(found, now, wall, fresh_for(found))
        else:
            entry.checked = now
            if found is not None and found == entry.packet:
                entry.seen = wall
        self._entries[key] = entry
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)
        return entry


# --- the rate limit ---------------------------------------------------------------------------


def client_of(remote: str | None) -> str:
    """Whose bucket a request takes from: its IPv4 address, or its IPv6 /64 (one subscriber's usual share)."""
    try:
        address = ipaddress.ip_address(remote or "")
    except ValueError:
        return remote or ""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class RateLimit:
    """A token bucket per client, in a table of at most `clients` buckets (the least recently seen go first)."""

    def __init__(self, rate: float, burst: int, clients: int) -> None:
        self.rate, self.burst, self.clients = rate, burst, clients
        self._buckets: collections.OrderedDict[str, tuple[float, float]] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, client: str, now: float) -> float:
        """Take a token for client: 0 when it may go on, else the seconds until it may."""
        tokens, then = self._buckets.pop(client, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - then) * self.rate)
        wait = 0.0 if tokens >= 1 else (1 - tokens) / self.rate
        self._buckets[client] = (tokens - 1 if tokens >= 1 else tokens, now)
        while len(self._buckets) > self.clients:
            self._buckets.popitem(last=False)
        return wait


# --- the DHT, off the event loop --------------------------------------------------------------


class DhtCalls:
    """Blocking DHT calls, each in a thread: at most `threads` at once and `queued` more waiting.

    The threads are daemons, not a ThreadPoolExecutor's, whose threads
    Python joins at exit: a lookup in flight when the relay stops would
    otherwise hold up the exit for its whole timeout.
    """

    def __init__(self, threads: int, queued: int) -> None:
        self.capacity = threads + queued
        self._slots = asyncio.Semaphore(threads)
        self.pending = 0

    async def run(self, call: Callable[[], T]) -> T:
        if self.pending >= self.capacity:
            raise Refusal(503, "the relay is busy with the DHT; try again shortly", {"Retry-After": "1"})
        self.pending += 1
        try:
            async with self._slots:
                return await in_daemon_thread(call)
        finally:
            self.pending -= 1


async def in_daemon_thread(call: Callable[[], T]) -> T:
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, error: BaseException | None) -> None:
        if future.done():
            return  # its request was cancelled (shutdown)
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]  # None only with an error

    def run() -> None:
        result: T | None = None
        error: BaseException | None = None
        try:
            result = call()
        except Exception as raised:  # noqa: BLE001 - handed to the request that awaits it, which decides
            error = raised
        try:
            loop.call_soon_threadsafe(settle, result, error)
        except RuntimeError:
            pass  # the loop is closed: the relay stopped while this call ran

    threading.Thread(target=run, name="cclink-relay-dht", daemon=True).start()
    return await future


def retrieve(done: asyncio.Future) -> None:
    """Mark a shared call's failure as seen: each request that awaited it got its own copy, or has gone."""
    if not done.cancelled():
        done.exception()


def valid_packet(public_key: PublicKey, signature: bytes, seq: int, message: bytes) -> packet.SignedPacket:
    """A packet whose signature verifies under public_key and whose DNS message parses; WireError otherwise."""
    signed = packet.SignedPacket(public_key=public_key, signature=signature, seq=seq, message=message)
    signed.verify()
    packet.record_from_message(message, public_key)  # MalformedPacket unless a DNS message
    return signed


def packet_of(public_key: PublicKey, item: krpc.Item | None) -> packet.SignedPacket | None:
    """The packet a DHT item holds, or None: pkarr's clients too refuse one whose DNS message does not parse."""
    if item is None:
        return None
    try:
        return valid_packet(public_key, item.signature, item.seq, item.value)
    except WireError:
        return None


# --- the relay --------------------------------------------------------------------------------


class Relay:
    """The relay's state (cache, buckets, DHT calls in flight) and its HTTP application."""

    def __init__(self, items: Items, limits: Limits | None = None) -> None:
        self.items = items
        self.limits = limits or Limits()
        self.cache = Cache(self.limits.cache_entries)
        self.rate_limit = RateLimit(self.limits.rate, self.limits.burst, self.limits.clients)
        self.dht = DhtCalls(self.limits.dht_threads, self.limits.dht_queued)
        self.requests = 0  # received, refused or not
        self._lookups: dict[bytes, asyncio.Future[Entry]] = {}
        self._puts: dict[bytes, tuple[packet.SignedPacket, asyncio.Future[Stored]]] = {}

    def application(self) -> web.Application:
        @web.middleware
        async def answer(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]):
            self.requests += 1
            try:
                self._take_token(request)
                # A preflight, for any path: browsers ask before a PUT with a body.
                response = web.Response(status=204) if request.method == "OPTIONS" else await handler(request)
            except Refusal as refusal:
                response = refusal.response()
            except web.HTTPException as error:  # aiohttp's own: no route (404), method (405), body size (413)
                response = Refusal(error.status, error.reason, error.headers).response()
            response.headers.update(CORS_HEADERS)
            return response

        app = web.Application(client_max_size=MAX_BODY, middlewares=[answer])
        app.router.add_route("GET", "/", self._index)
        app.router.add_route("GET", "/{key}", self._get)
        app.router.add_route("PUT", "/{key}", self._put)
        return app

    def _take_token(self, request: web.Request) -> None:
        wait = self.rate_limit.take(client_of(request.remote), time.monotonic())
        if wait:
            raise Refusal(
                429, "too many requests from your address; slow down", {"Retry-After": str(max(1, math.ceil(wait)))}
            )

    # --- the routes ---

    async def _index(self, request: web.Request) -> web.Response:
        return web.Response(
            text="cclink relay: a pkarr relay (GET or PUT /<z-base-32 public key>)\n"
            f"requests: {self.requests}\n"
            f"cache: {len(self.cache)} of {self.cache.size} keys\n"
            f"clients tracked: {len(self.rate_limit)} of {self.rate_limit.clients}\n"
            f"DHT calls in flight or queued: {self.dht.pending}\n"
        )

    async def _get(self, request: web.Request) -> web.Response:
        public_key = key_in_path(request)
        entry = await self.current(public_key)
        if entry.packet is None:
            raise Refusal(404, "no packet is published under this key")
        return packet_response(entry, request.if_modified_since)

    async def _put(self, request: web.Request) -> web.Response:
        public_key = key_in_path(request)
        body = await read_body(request, self.limits.body_seconds)
        try:
            signed = packet_in_body(public_key, body)
        except WireError as error:
            raise Refusal(400, error.message) from None
        compare_and_swap = if_match(request)
        await self._check_order(signed, compare_and_swap)
        stored = await self._stored(signed)
        return web.Response(status=204, headers={STORED_NODES_HEADER: str(stored.nodes)})

    # --- GET: the cache, else the DHT ---

    async def current(self, public_key: PublicKey) -> Entry:
        """The cached entry while fresh, else what the DHT holds now (a stale packet if the DHT does not answer)."""
        entry = self.cache.get(public_key.raw)
        if entry is not None and entry.fresh(time.monotonic()):
            return entry
        try:
            return await self._looked_up(public_key)
        except NetworkError:
            if entry is not None and entry.packet is not None:
                return entry  # the owner's word, older or not, beats nothing while the DHT is away
            raise Refusal(502, "the DHT did not answer the relay; try again later") from None

    async def _looked_up(self, public_key: PublicKey) -> Entry:
        """The DHT's newest packet under public_key, cached: one lookup per key however many ask at once."""
        key = public_key.raw
        lookup = self._lookups.get(key)
        if lookup is None:
            lookup = asyncio.ensure_future(self._look_up(public_key))
            self._lookups[key] = lookup
            lookup.add_done_callback(lambda done: self._forget_lookup(key, done))
        return await asyncio.shield(lookup)

    async def _look_up(self, public_key: PublicKey) -> Entry:
        verifies = verifier(public_key)
        item = await self.dht.run(lambda: self.items.get(public_key.raw, verifies, timeout=GET_TIMEOUT))
        return self.cache.offer(public_key.raw, packet_of(public_key, item))

    def _forget_lookup(self, key: bytes, done: asyncio.Future[Entry]) -> None:
        retrieve(done)
        if self._lookups.get(key) is done:
            del self._lookups[key]

    def _forget_put(self, key: bytes, done: asyncio.Future[Stored]) -> None:
        retrieve(done)
        putting = self._puts.get(key)
        if putting is not None and putting[1] is done:
            del self._puts[key]

    # --- PUT: order, then the DHT ---

    async def _check_order(self, signed: packet.SignedPacket, compare_and_swap: int | None) -> None:
        """412 when If-Match names another seq than the newest; 409 when a newer packet is known; 428 when
        another packet under the key is being put and the client did not say which one it supersedes."""
        key = signed.public_key.raw
        if compare_and_swap is not None:
            newest = (await self.current(signed.public_key)).packet
            if newest is not None and newest.seq != compare_and_swap:
                raise Refusal(412, f"If-Match names seq {compare_and_swap}, but the newest packet has {newest.seq}")
        entry = self.cache.get(key)
        if entry is not None and entry.packet is not None and not supersedes(entry.packet, signed):
            raise Refusal(409, f"a newer packet (seq {entry.packet.seq}) is already published under this key")
        putting = self._puts.get(key)
        if putting is not None and putting[0] != signed and compare_and_swap is None:
            raise Refusal(
                428, "another packet under this key is being published; send If-Match with the seq you supersede"
            )

    async def _stored(self, signed: packet.SignedPacket) -> Stored:
        """Cache signed and put it on the DHT, unchanged; the same packet PUT twice at once is put once."""
        key = signed.public_key.raw
        self.cache.offer(key, signed)
        putting = self._puts.get(key)
        if putting is not None and putting[0] == signed:
            put = putting[1]
        else:
            put = asyncio.ensure_future(self._put_on_dht(signed))
            self._puts[key] = (signed, put)
            put.add_done_callback(lambda done: self._forget_put(key, done))
        try:
            stored = await asyncio.shield(put)
        except NetworkError as error:
            raise Refusal(500, f"the relay could not store the packet on the DHT: {error.message}") from None
        if stored.nodes == 0:
            await self._refuse_as_older(signed)
            raise Refusal(500, "no DHT node stored the packet")
        return stored

    async def _refuse_as_older(self, signed: packet.SignedPacket) -> None:
        """409 when the DHT holds a newer packet than signed: why its nodes would not store it."""
        try:
            newest = (await self._looked_up(signed.public_key)).packet
        except NetworkError:
            return
        if newest is not None and not supersedes(newest, signed):
            raise Refusal(409, f"a newer packet (seq {newest.seq}) is already published under this key")

    async def _put_on_dht(self, signed: packet.SignedPacket) -> Stored:
        item = krpc.Item(signed.seq, signed.signature, signed.message)
        verifies = verifier(signed.public_key)
        return await self.dht.run(
            lambda: self.items.put_again(signed.public_key.raw, item, verifies, timeout=PUT_TIMEOUT)
        )


# --- reading requests -------------------------------------------------------------------------


def key_in_path(request: web.Request) -> PublicKey:
    try:
        return PublicKey.parse(request.match_info["key"])
    except UsageError as error:  # InvalidPublicKey
        raise Refusal(400, error.message) from None


async def read_body(request: web.Request, seconds: float) -> bytes:
    """The body, refused with 413 past MAX_BODY (as declared, or as read) and 408 when it takes too long."""
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise Refusal(413, f"a relay payload is at most {MAX_BODY} bytes, not {request.content_length}")
    try:
        return await asyncio.wait_for(request.read(), seconds)
    except asyncio.TimeoutError:
        raise Refusal(408, f"the body did not arrive within {seconds:g} seconds", {"Connection": "close"}) from None
    except web.HTTPRequestEntityTooLarge:
        raise Refusal(413, f"a relay payload is at most {MAX_BODY} bytes") from None


def packet_in_body(public_key: PublicKey, body: bytes) -> packet.SignedPacket:
    """The packet a relay payload holds (signature, seq, DNS message), verified first; WireError otherwise."""
    unverified = packet.SignedPacket.from_relay_payload(public_key, body)
    return valid_packet(public_key, unverified.signature, unverified.seq, unverified.message)


def if_match(request: web.Request) -> int | None:
    """If-Match as the seq a PUT supersedes (BEP 44's cas), as pkarr sends it: a decimal u64."""
    text = request.headers.get("If-Match")
    if text is None:
        return None
    text = text.strip().strip('"')
    if not text.isascii() or not text.isdigit() or int(text) >= packet.MAX_SEQ:
        raise Refusal(400, "If-Match must be the seq (a decimal 64-bit number) of the packet superseded")
    return int(text)


def packet_response(entry: Entry, if_modified_since: datetime.datetime | None) -> web.Response:
    """200 with the relay payload, or 304 when the client's copy is as new (pkarr compares whole seconds)."""
    signed = entry.packet
    assert signed is not None
    headers = {"Content-Type": PAYLOAD_TYPE, "Cache-Control": f"public, max-age={entry.max_age(time.monotonic())}"}
    modified = http_date(signed.seq / 1_000_000)
    seen = http_date(entry.seen)
    if modified is not None:
        headers["Last-Modified"] = modified
    if seen is not None:
        headers["Memento-Datetime"] = seen
    if (
        modified is not None
        and if_modified_since is not None
        and if_modified_since.timestamp() >= math.floor(signed.seq / 1_000_000)
    ):
        return web.Response(status=304, headers=headers)
    return web.Response(body=signed.relay_payload(), headers=headers)


# --- serving ----------------------------------------------------------------------------------


def parse_listen(text: str) -> Endpoint:
    """`HOST:PORT` (an IPv6 host in brackets) as an endpoint; UsageError on anything else."""
    host, sep, port = text.strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise UsageError(f"--listen takes HOST:PORT (an IPv6 host in brackets), not '{text}'")
    return host, int(port)


def url_of(endpoint: Endpoint) -> str:
    return f"http://{format_endpoint(endpoint)}"


def listening_socket(endpoint: Endpoint) -> socket.socket:
    """A socket listening at endpoint; NetworkError saying why not in one sentence."""
    host, port = endpoint
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, _, _, _, address = found[0]
        return socket.create_server(address, family=family, backlog=1024)
    except socket.gaierror:
        raise UsageError(f"--listen: '{host}' is not an address of this machine or a name it can look up") from None
    except OSError as error:
        where = format_endpoint(endpoint)
        if error.errno == errno.EADDRINUSE:
            raise NetworkError(f"cannot listen on {where}: the port is in use; choose another with --listen") from None
        if error.errno == errno.EADDRNOTAVAIL:
            raise NetworkError(f"cannot listen on {where}: the address is not one of this machine's") from None
        if error.errno == errno.EACCES:
            raise NetworkError(f"cannot listen on {where}: permission denied (ports below 1024 need root)") from None
        raise NetworkError(f"cannot listen on {where}: {error.strerror or error}") from None


@dataclass
class Gate:
    """How many connections a server has handed to request handlers (and not yet lost), and how many it may."""

    limit: int
    open: int = 0


class Connection(asyncio.Protocol):
    """One connection: handed to its request handler if the gate has room, else told 503 and closed.

    Counted when made and when lost, the moments asyncio reports one at a
    time: a burst of connects is accepted in one batch, before any is made.
    """

    def __init__(self, handler: asyncio.Protocol, gate: Gate) -> None:
        self.handler = handler
        self.gate = gate
        self.admitted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.gate.open >= self.gate.limit:
            assert isinstance(transport, asyncio.WriteTransport)
            transport.write(REFUSED_CONNECTION)
            transport.close()
            return
        self.gate.open += 1
        self.admitted = True
        self.handler.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.admitted:
            self.gate.open -= 1
            self.handler.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.admitted:
            self.handler.data_received(data)

    def eof_received(self) -> bool | None:
        return self.handler.eof_received() if self.admitted else None

    def pause_writing(self) -> None:
        if self.admitted:
            self.handler.pause_writing()

    def resume_writing(self) -> None:
        if self.admitted:
            self.handler.resume_writing()


class Reports(logging.Handler):
    """What aiohttp logs about requests, as one line each to `report`.

    A request that breaks HTTP's rules was answered 400 and is the client's
    business; anything else (a fault of the relay's) is worth a line, never
    a traceback.
    """

    def __init__(self, report: Callable[[str], None]) -> None:
        super().__init__(logging.WARNING)
        self.report = report

    def emit(self, record: logging.LogRecord) -> None:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, http_exceptions.HttpProcessingError):
            return
        self.report(record.getMessage() + (f": {type(error).__name__}: {error}" if error else ""))


def request_logger(report: Callable[[str], None] | None) -> logging.Logger:
    """The logger the request handlers write to: one line each to report, or nowhere."""
    logger = logging.getLogger("cclink.relay")
    logger.propagate = False
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    logger.addHandler(Reports(report) if report is not None else logging.NullHandler())
    return logger


class RelayServer:
    """A Relay's application served on a socket, with a bounded number of connections; stop() drains it.

    `report` gets a line for each fault of the relay's own while it serves.
    """

    def __init__(self, relay: Relay, report: Callable[[str], None] | None = None) -> None:
        self.relay = relay
        self.report = report
        self._runner: web.AppRunner | None = None
        self._server: asyncio.AbstractServer | None = None
        self.endpoint: Endpoint | None = None

    async def start(self, sock: socket.socket) -> str:
        """Serve on sock (listening); return the URL it is reached at (the port sock got, if it asked for 0)."""
        limits = self.relay.limits
        raise_open_files_limit(limits.connections + 256)
        self._runner = web.AppRunner(
            self.relay.application(),
            access_log=None,
            logger=request_logger(self.report),
            shutdown_timeout=limits.drain_seconds,
            keepalive_timeout=limits.idle_seconds,
            lingering_time=limits.linger_seconds,
            max_line_size=limits.max_line,
            max_field_size=limits.max_field,
            max_headers=limits.max_headers,
        )
        await self._runner.setup()
        handlers = self._runner.server
        assert handlers is not None

        gate = Gate(limits.connections)

        def connection() -> asyncio.BaseProtocol:
            return Connection(handlers(), gate)

        self._server = await asyncio.get_running_loop().create_server(connection, sock=sock, backlog=1024)
        host, port = sock.getsockname()[:2]
        self.endpoint = (host, port)
        return url_of(self.endpoint)

    async def stop(self) -> None:
        """Stop accepting, let requests in flight finish for up to drain_seconds, then close everything."""
        if self._server is not None:
            self._server.close()
        if self._runner is not None:
            await self._runner.cleanup()


def raise_open_files_limit(wanted: int) -> None:
    """Let the process hold `wanted` descriptors, as far as its hard limit allows (each connection is one)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (OSError, ValueError):
            pass  # fewer connections before accept fails; the relay still serves


def serve(
    items: Items,
    endpoint: Endpoint,
    on_ready: Callable[[str], None],
    report: Callable[[str], None],
    limits: Limits | None = None,
) -> None:
    """Serve a relay at endpoint until SIGINT or SIGTERM, then drain and return.

    on_ready gets its URL once it listens; report a line for each fault of
    its own. UsageError or NetworkError when it cannot listen there.
    """
    sock = listening_socket(endpoint)
    asyncio.run(_serve_until_stopped(RelayServer(Relay(items, limits), report), sock, on_ready))


async def _serve_until_stopped(server: RelayServer, sock: socket.socket, on_ready: Callable[[str], None]) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        on_ready(await server.start(sock))
        await stop.wait()
    finally:
        await server.stop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
