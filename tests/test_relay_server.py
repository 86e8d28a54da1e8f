"""`cclink relay`: a pkarr relay (pkarr's design/relays.md) over HTTP, backed by cclink's DHT client.

In process (the fast tier), a Relay serves on loopback over MemoryItems, the
DHT's items in memory, some of them held (HeldItems) so that requests stay in
flight for as long as a test needs: every status code of the spec, the cache,
one lookup per key, the bounds (rate limit, connections, body, idle
connections, cache and bucket tables) and the drain on stop. End to end, the
real `cclink relay` runs on the local swarm: npm pkarr's own relay client
publishes and resolves through it, it stops cleanly on SIGTERM, it says why
it cannot listen, and it answers 1,000 clients at once in bounded memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import http.client
import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
from support.machines import Machine
from support.pkarr_js import DIRECTORY, cclink_record, opened_session, pkarr_js
from support.records import MemoryItems

from cclink.net import krpc
from cclink.net.dht_client import Sign, Stored, Verify
from cclink.net.relay_server import MAX_BODY, Limits, Relay, RelayServer, listening_socket
from cclink.wire import keyfile, packet
from cclink.wire.keys import Identity

WAIT = 30.0  # seconds: a guard against hangs, never a measurement
GENEROUS = Limits(rate=1000.0, burst=1000)  # no test but the rate limit's own meets it


# --- a relay in this process --------------------------------------------------------------


@dataclass
class HeldItems:
    """MemoryItems whose gets and puts wait until released (while `hold` is set), counting the calls."""

    memory: MemoryItems = field(default_factory=MemoryItems)
    hold: threading.Event = field(default_factory=threading.Event)
    released: threading.Event = field(default_factory=threading.Event)
    gets: int = 0
    puts: int = 0

    def get(self, public_key: bytes, verify: Verify, *, timeout: float) -> krpc.Item | None:
        self.gets += 1
        self._wait()
        return self.memory.get(public_key, verify, timeout=timeout)

    def put(
        self, public_key: bytes, value: bytes, sign: Sign, verify: Verify, *, timeout: float, min_seq: int = 0
    ) -> Stored:
        return self.memory.put(public_key, value, sign, verify, timeout=timeout, min_seq=min_seq)

    def put_again(self, public_key: bytes, item: krpc.Item, verify: Verify, *, timeout: float) -> Stored:
        self.puts += 1
        self._wait()
        return self.memory.put_again(public_key, item, verify, timeout=timeout)

    def _wait(self) -> None:
        if self.hold.is_set():
            self.released.wait(WAIT)


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


class LocalRelay:
    """A Relay served on 127.0.0.1 by an event loop in a thread of this process."""

    def __init__(self, items: Any, limits: Limits) -> None:
        self.relay = Relay(items, limits)
        self.server = RelayServer(self.relay)
        self.loop = asyncio.new_event_loop()
        self.url = self.loop.run_until_complete(self.server.start(listening_socket(("127.0.0.1", 0))))
        self.port = urlsplit(self.url).port
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.stopped = False

    def ask(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        source: str = "127.0.0.1",
    ) -> Answer:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=WAIT, source_address=(source, 0))
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            return Answer(response.status, dict(response.headers), response.read())
        finally:
            connection.close()

    def put(self, signed: packet.SignedPacket, headers: dict[str, str] | None = None) -> Answer:
        return self.ask("PUT", f"/{signed.public_key.z32}", signed.relay_payload(), headers)

    def get(self, identity: Identity, headers: dict[str, str] | None = None) -> Answer:
        return self.ask("GET", f"/{identity.public_key.z32}", headers=headers)

    def wait_for_requests(self, count: int) -> None:
        """Until the relay has received `count` requests in all."""
        deadline = time.monotonic() + WAIT
        while self.relay.requests < count:
            assert time.monotonic() < deadline, f"the relay received {self.relay.requests} requests, not {count}"
            time.sleep(0.01)

    def stop(self) -> None:
        if not self.stopped:
            self.stopped = True
            asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(WAIT)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(WAIT)
            self.loop.close()


@contextlib.contextmanager
def local_relay(items: Any = None, limits: Limits = GENEROUS) -> Iterator[LocalRelay]:
    running = LocalRelay(items if items is not None else MemoryItems(), limits)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def relay() -> Iterator[LocalRelay]:
    with local_relay() as running:
        yield running


def signed_packet(identity: Identity, seq: int, text: bytes = b"a handoff") -> packet.SignedPacket:
    return packet.SignedPacket.create(identity, seq, packet.record_message(identity.public_key, text))


def item_of(signed: packet.SignedPacket) -> krpc.Item:
    return krpc.Item(signed.seq, signed.signature, signed.message)


def seq_now() -> int:
    return time.time_ns() // 1000


def at_once(count: int, call: Any) -> list[Any]:
    """call(i) for i in range(count), each in a thread of its own, all started together."""
    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(call, range(count)))


# --- PUT and GET --------------------------------------------------------------------------


def test_a_packet_put_through_the_relay_is_on_the_dht_and_served_back(relay: LocalRelay) -> None:
    identity = Identity.generate()
    signed = signed_packet(identity, seq_now())

    put = relay.put(signed)
    got = relay.get(identity)

    assert put.status == 204
    assert put.headers["Pkarr-Dht-Stored-Nodes"] == "20"
    assert relay.relay.items.items[identity.public_key.raw] == item_of(signed)
    assert got.status == 200
    assert got.body == signed.relay_payload()
    assert got.headers["Content-Type"] == "application/pkarr.org/relays#payload"
    assert got.headers["Cache-Control"].startswith("public, max-age=")
    assert got.headers["Last-Modified"] == http_date(signed.seq / 1e6)
    assert "Memento-Datetime" in got.headers


def test_a_get_finds_what_only_the_dht_holds_and_404_when_it_holds_nothing(relay: LocalRelay) -> None:
    on_dht, nowhere = Identity.generate(), Identity.generate()
    signed = signed_packet(on_dht, seq_now())
    relay.relay.items.plant(on_dht.public_key.raw, item_of(signed))

    assert relay.get(on_dht).body == signed.relay_payload()
    assert relay.get(nowhere).status == 404


def test_a_packet_whose_signature_fails_on_the_dht_is_not_served(relay: LocalRelay) -> None:
    identity = Identity.generate()
    signed = signed_packet(identity, seq_now())
    relay.relay.items.items[identity.public_key.raw] = krpc.Item(signed.seq, bytes(64), signed.message)

    assert relay.get(identity).status == 404


def test_if_modified_since_the_packets_time_answers_304(relay: LocalRelay) -> None:
    identity = Identity.generate()
    signed = signed_packet(identity, seq_now())
    relay.put(signed)

    same = relay.get(identity, {"If-Modified-Since": http_date(signed.seq / 1e6)})
    earlier = relay.get(identity, {"If-Modified-Since": http_date(signed.seq / 1e6 - 60)})

    assert same.status == 304
    assert same.body == b""
    assert earlier.status == 200


def test_the_cache_answers_while_fresh_without_asking_the_dht_again() -> None:
    items = HeldItems()
    with local_relay(items) as relay:
        identity = Identity.generate()
        relay.put(signed_packet(identity, seq_now()))
        answers = [relay.get(identity).status for _ in range(5)]

    assert answers == [200] * 5
    assert items.gets == 0


def test_concurrent_gets_of_one_key_make_one_dht_lookup() -> None:
    items = HeldItems()
    items.hold.set()
    with local_relay(items) as relay:
        identity = Identity.generate()
        items.memory.plant(identity.public_key.raw, item_of(signed_packet(identity, seq_now())))
        with ThreadPoolExecutor(max_workers=20) as pool:
            answers = [pool.submit(relay.get, identity) for _ in range(20)]
            relay.wait_for_requests(20)
            items.released.set()
            statuses = [answer.result(WAIT).status for answer in answers]

    assert statuses == [200] * 20
    assert items.gets == 1


def test_cors_headers_on_every_answer_and_options_preflight(relay: LocalRelay) -> None:
    preflight = relay.ask(
        "OPTIONS", f"/{Identity.generate().public_key.z32}", headers={"Access-Control-Request-Method": "PUT"}
    )
    refused = relay.ask("GET", "/not-a-key")

    for answer in (preflight, refused):
        assert answer.headers["Access-Control-Allow-Origin"] == "*"
        assert answer.headers["Access-Control-Allow-Methods"] == "GET, PUT, OPTIONS"
    assert preflight.status == 204
    assert "If-Match" in preflight.headers["Access-Control-Allow-Headers"]
    assert "Pkarr-Dht-Stored-Nodes" in preflight.headers["Access-Control-Expose-Headers"]


# --- refused, and still serving -------------------------------------------------------------


def refusals(relay: LocalRelay) -> dict[str, tuple[int, Answer]]:
    """Each kind of bad request, and the status it must get."""
    identity, other = Identity.generate(), Identity.generate()
    key = identity.public_key.z32
    newer = signed_packet(identity, seq_now())
    relay.put(newer)
    good = signed_packet(identity, newer.seq + 1)
    bad_signature = good.relay_payload()[:10] + bytes([good.relay_payload()[10] ^ 1]) + good.relay_payload()[11:]
    not_dns = packet.SignedPacket.create(identity, newer.seq + 2, b"\x00 not a DNS message")
    return {
        "bad signature": (400, relay.ask("PUT", f"/{key}", bad_signature)),
        "signed by another key": (400, relay.ask("PUT", f"/{key}", signed_packet(other, seq_now()).relay_payload())),
        "an older seq": (409, relay.put(signed_packet(identity, newer.seq - 1))),
        "the same seq, another packet": (409, relay.put(signed_packet(identity, newer.seq, b"other"))),
        "oversized (declared)": (413, relay.ask("PUT", f"/{key}", bytes(MAX_BODY + 1))),
        "oversized (chunked)": (413, chunked_put(relay, key, bytes(MAX_BODY + 500))),
        "garbage": (400, relay.ask("PUT", f"/{key}", b"garbage")),
        "empty": (400, relay.ask("PUT", f"/{key}", b"")),
        "not a DNS message": (400, relay.ask("PUT", f"/{key}", not_dns.relay_payload())),
        "a key that is no key": (400, relay.ask("GET", "/yk1notakey")),
        "a key that is no key (PUT)": (400, relay.ask("PUT", "/" + "0" * 52, good.relay_payload())),
        "an unknown path": (404, relay.ask("GET", f"/{key}/more")),
        "an unknown method": (405, relay.ask("DELETE", f"/{key}")),
        "HEAD": (405, relay.ask("HEAD", f"/{key}")),
        "If-Match that is no seq": (400, relay.put(good, {"If-Match": "yesterday"})),
        "If-Match naming another seq": (412, relay.put(good, {"If-Match": str(newer.seq - 5)})),
    }


def chunked_put(relay: LocalRelay, key: str, body: bytes) -> Answer:
    """A PUT whose body comes in chunks, with no Content-Length: the cap is enforced while reading."""
    connection = http.client.HTTPConnection("127.0.0.1", relay.port, timeout=WAIT)
    try:
        chunks = [body[i : i + 100] for i in range(0, len(body), 100)]
        connection.request("PUT", f"/{key}", body=iter(chunks), encode_chunked=True)
        response = connection.getresponse()
        return Answer(response.status, dict(response.headers), response.read())
    finally:
        connection.close()


def test_bad_requests_get_the_specs_status_and_the_relay_keeps_serving(relay: LocalRelay) -> None:
    answers = refusals(relay)
    got = {name: answer.status for name, (_, answer) in answers.items()}
    wanted = {name: status for name, (status, _) in answers.items()}

    identity = Identity.generate()
    after = relay.put(signed_packet(identity, seq_now()))

    assert got == wanted
    assert after.status == 204
    assert relay.get(identity).status == 200


def test_a_put_older_than_what_the_dht_holds_is_409_and_the_newer_is_served(relay: LocalRelay) -> None:
    identity = Identity.generate()
    newer = signed_packet(identity, seq_now())
    relay.relay.items.plant(identity.public_key.raw, item_of(newer))

    put = relay.put(signed_packet(identity, newer.seq - 1))

    assert put.status == 409
    assert relay.get(identity).body == newer.relay_payload()


def test_if_match_naming_the_newest_seq_supersedes_it(relay: LocalRelay) -> None:
    identity = Identity.generate()
    first = signed_packet(identity, seq_now())
    relay.put(first)
    second = signed_packet(identity, first.seq + 1)

    assert relay.put(second, {"If-Match": str(first.seq)}).status == 204
    assert relay.get(identity).body == second.relay_payload()


def test_another_packet_put_while_one_is_being_published_needs_if_match() -> None:
    items = HeldItems()
    items.hold.set()
    with local_relay(items) as relay:
        identity = Identity.generate()
        first, second = signed_packet(identity, seq_now()), signed_packet(identity, seq_now() + 10)
        with ThreadPoolExecutor(max_workers=3) as pool:
            publishing = pool.submit(relay.put, first)
            again = pool.submit(relay.put, first)  # the same packet: put once, answered twice
            relay.wait_for_requests(2)
            without = relay.put(second)
            items.released.set()
            statuses = (publishing.result(WAIT).status, again.result(WAIT).status)
        with_if_match = relay.put(second, {"If-Match": str(first.seq)})

    assert without.status == 428
    assert statuses == (204, 204)
    assert items.puts == 2  # first, once, and second
    assert with_if_match.status == 204


def test_without_the_dht_a_get_is_502_and_a_put_500_but_the_packet_is_served_from_the_cache() -> None:
    items = MemoryItems(reachable=False)
    with local_relay(items) as relay:
        identity = Identity.generate()
        absent = relay.get(identity)
        signed = signed_packet(identity, seq_now())
        put = relay.put(signed)
        got = relay.get(identity)

    assert absent.status == 502
    assert put.status == 500
    assert got.body == signed.relay_payload()


# --- bounds ---------------------------------------------------------------------------------


def test_the_rate_limit_answers_429_per_client_and_recovers() -> None:
    with local_relay(limits=Limits(rate=20.0, burst=3)) as relay:
        first = [relay.ask("GET", "/").status for _ in range(3)]
        limited = relay.ask("GET", "/")
        other_client = relay.ask("GET", "/", source="127.0.0.3")
        deadline = time.monotonic() + WAIT
        while (recovered := relay.ask("GET", "/")).status == 429:
            assert time.monotonic() < deadline, "the bucket never refilled"
            time.sleep(0.05)

    assert first == [200, 200, 200]
    assert limited.status == 429
    assert int(limited.headers["Retry-After"]) >= 1
    assert other_client.status == 200
    assert recovered.status == 200


def test_the_tables_stay_within_their_bounds() -> None:
    with local_relay(limits=Limits(rate=1000.0, burst=1000, cache_entries=3, clients=2)) as relay:
        for source in ("127.0.0.4", "127.0.0.5", "127.0.0.6"):
            relay.ask("GET", "/", source=source)
        identities = [Identity.generate() for _ in range(5)]
        for identity in identities:
            relay.put(signed_packet(identity, seq_now()))
        newest = relay.get(identities[-1])

    assert len(relay.relay.cache) == 3
    assert len(relay.relay.rate_limit) == 2
    assert newest.status == 200


def test_dht_calls_beyond_the_threads_and_queue_get_503() -> None:
    items = HeldItems()
    items.hold.set()
    with local_relay(items, Limits(rate=1000.0, burst=1000, dht_threads=1, dht_queued=0)) as relay:
        first, second = Identity.generate(), Identity.generate()
        with ThreadPoolExecutor(max_workers=1) as pool:
            held = pool.submit(relay.get, first)
            relay.wait_for_requests(1)
            busy = relay.get(second)
            items.released.set()
            assert held.result(WAIT).status == 404

    assert busy.status == 503
    assert busy.headers["Retry-After"] == "1"


def test_connections_beyond_the_limit_are_told_503_and_closed() -> None:
    with local_relay(limits=Limits(rate=1000.0, burst=1000, connections=2)) as relay:
        held = [socket.create_connection(("127.0.0.1", relay.port), timeout=WAIT) for _ in range(2)]
        try:
            with socket.create_connection(("127.0.0.1", relay.port), timeout=WAIT) as extra:
                refused = read_all(extra)
        finally:
            for connection in held:
                connection.close()
        deadline = time.monotonic() + WAIT
        while (after := relay.ask("GET", "/")).status == 503:
            assert time.monotonic() < deadline, "closed connections never freed their slots"
            time.sleep(0.05)

    assert refused.startswith(b"HTTP/1.1 503 ")
    assert after.status == 200


def test_a_connection_that_sends_nothing_is_closed() -> None:
    with local_relay(limits=Limits(rate=1000.0, burst=1000, idle_seconds=0.5)) as relay:
        with socket.create_connection(("127.0.0.1", relay.port), timeout=WAIT) as idle:
            assert read_all(idle) == b""  # closed by the relay, not by our timeout (which would raise)


def test_a_body_that_does_not_arrive_in_time_is_408() -> None:
    with local_relay(limits=Limits(rate=1000.0, burst=1000, body_seconds=0.5)) as relay:
        key = Identity.generate().public_key.z32
        with socket.create_connection(("127.0.0.1", relay.port), timeout=WAIT) as slow:
            slow.sendall(f"PUT /{key} HTTP/1.1\r\nHost: relay\r\nContent-Length: 100\r\n\r\n".encode() + bytes(10))
            answer = read_all(slow)

    assert answer.startswith(b"HTTP/1.1 408 ")


def test_an_oversized_request_line_or_header_is_refused_and_the_relay_keeps_serving(relay: LocalRelay) -> None:
    long_line = relay.ask("GET", "/" + "y" * 5000)
    long_header = relay.ask("GET", "/", headers={"X-Filler": "y" * 10_000})

    assert long_line.status in (400, 414)
    assert long_header.status in (400, 431)
    assert relay.ask("GET", "/").status == 200


def read_all(connection: socket.socket) -> bytes:
    data = b""
    while chunk := connection.recv(65536):
        data += chunk
    return data


# --- stopping -------------------------------------------------------------------------------


def test_stop_lets_a_request_in_flight_finish_and_accepts_no_more() -> None:
    items = HeldItems()
    items.hold.set()
    relay = LocalRelay(items, GENEROUS)
    identity = Identity.generate()
    signed = signed_packet(identity, seq_now())
    items.memory.plant(identity.public_key.raw, item_of(signed))
    with ThreadPoolExecutor(max_workers=2) as pool:
        in_flight = pool.submit(relay.get, identity)
        relay.wait_for_requests(1)
        stopping = pool.submit(relay.stop)
        deadline = time.monotonic() + WAIT
        while accepts(relay.port):
            assert time.monotonic() < deadline, "the relay still accepts connections while stopping"
            time.sleep(0.01)
        items.released.set()
        answer = in_flight.result(WAIT)
        stopping.result(WAIT)

    assert answer.status == 200
    assert answer.body == signed.relay_payload()


def accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=WAIT).close()
    except ConnectionRefusedError:
        return False
    return True


def http_date(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(int(seconds), datetime.timezone.utc).strftime("%a, %d %b %Y %H:%M:%S GMT")


# --- the real command, on the local swarm -----------------------------------------------------


class RelayProcess:
    """`cclink relay --listen 127.0.0.1:0` on a machine of the swarm; its URL is the one it printed."""

    def __init__(self, machine: Machine, *args: str) -> None:
        self.process = machine.spawn("relay", "--listen", "127.0.0.1:0", *args)
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert line.startswith("export CCLINK_RELAYS=http://127.0.0.1:"), (
            f"cclink relay printed {line!r}; stderr: {self.stderr()}"
        )
        self.url = line.strip().split("=", 1)[1]
        self.port = urlsplit(self.url).port

    def stderr(self) -> str:
        if self.process.poll() is None:
            return "(still running)"
        assert self.process.stderr is not None
        return self.process.stderr.read()

    def terminate(self) -> tuple[int, str]:
        """SIGTERM; its exit status and what it wrote to stderr."""
        self.process.send_signal(signal.SIGTERM)
        _, stderr = self.process.communicate(timeout=WAIT)
        return self.process.returncode, stderr

    def memory(self, field: str) -> int:
        """VmRSS or VmHWM (the peak) from /proc, in bytes."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
        raise AssertionError(f"{field} is not in /proc/{self.process.pid}/status")


@pytest.fixture
def relay_process(machines) -> Iterator[RelayProcess]:
    running = RelayProcess(machines("relay"))
    yield running
    if running.process.poll() is None:
        running.process.kill()
        running.process.communicate(timeout=WAIT)


def identity_of(machine: Machine) -> Identity:
    """The machine's key, read from its unencrypted key file."""
    return keyfile.load_identity(machine.key_file, lambda: "")


def pkarr_relay(tmp_path: Path, swarm: Any, *args: str) -> dict[str, Any]:
    """npm pkarr's relay client (scripts/pkarr-js/pkarr-relay-client.mjs), one call; its JSON answer."""
    node = pkarr_js(swarm.bootstrap, tmp_path / "pkarr-js").node  # skips without node or npm pkarr
    result = subprocess.run(
        [node, str(DIRECTORY / "pkarr-relay-client.mjs"), *args],
        cwd=DIRECTORY,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path), "LANG": "C.UTF-8"},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=WAIT,
    )
    answer = json.loads(result.stdout.strip().splitlines()[-1]) if result.stdout.strip() else {}
    assert answer.get("ok") is True, f"pkarr-relay-client.mjs {args[0]} failed:\n{result.stdout}\n{result.stderr}"
    return answer


@pytest.mark.e2e
def test_npm_pkarr_publishes_through_cclink_relay_and_cclink_picks_it_up_from_the_dht(
    relay_process: RelayProcess, paired: tuple[Machine, Machine], swarm, tmp_path: Path
) -> None:
    laptop, desktop = paired
    identity = identity_of(laptop)
    session_id = "8c0f3a52-6c1e-4c5e-9a49-5a3f2b1d7e10"
    txt = tmp_path / "handoff.txt"
    txt.write_bytes(cclink_record(identity, session_id))

    put = pkarr_relay(
        tmp_path, swarm, "put", "--relay", relay_process.url, "--seed", identity.seed.hex(), "--txt-file", str(txt)
    )
    picked = json.loads(desktop.ok("pickup", "--json", identity.public_key.z32).stdout)
    got = pkarr_relay(tmp_path, swarm, "get", "--relay", relay_process.url, "--key", identity.public_key.z32)

    assert put["status"] == 204
    assert int(put["stored_nodes"]) > 0
    assert picked["session_id"] == session_id
    assert got["seq"] == put["seq"]
    assert opened_session(got["txt"], identity) == session_id


@pytest.mark.e2e
def test_npm_pkarr_resolves_through_cclink_relay_what_cclink_published_on_the_dht(
    relay_process: RelayProcess, laptop: Machine, swarm, tmp_path: Path
) -> None:
    laptop.init()
    identity = identity_of(laptop)
    project = laptop.project()
    session_id = laptop.add_session(project)
    published = json.loads(laptop.ok(session_id, "--json", cwd=project).stdout)

    got = pkarr_relay(tmp_path, swarm, "get", "--relay", relay_process.url, "--key", identity.public_key.z32)

    assert got["verified"] is True
    assert got["seq"] == published["seq"]
    assert got["names"] == [f"_cclink.{identity.public_key.z32}"]
    assert opened_session(got["txt"], identity) == session_id


@pytest.mark.e2e
def test_sigterm_stops_the_relay_cleanly_with_exit_0(relay_process: RelayProcess) -> None:
    """After a plain request and garbage, which is answered 400 and leaves no trace on stderr."""
    key = Identity.generate().public_key.z32
    connection = http.client.HTTPConnection("127.0.0.1", relay_process.port, timeout=WAIT)
    connection.request("GET", f"/{key}")
    before = connection.getresponse().status
    connection.close()
    with socket.create_connection(("127.0.0.1", relay_process.port), timeout=WAIT) as raw:
        raw.sendall(b"PUT /" + key.encode() + b" HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
        garbage = read_all(raw)

    status, stderr = relay_process.terminate()

    assert before == 404
    assert garbage.startswith((b"HTTP/1.0 400 ", b"HTTP/1.1 400 "))
    assert status == 0
    assert stderr.strip().splitlines()[-1] == "Relay stopped."
    assert len(stderr.strip().splitlines()) == 2, stderr  # the line saying where it listens, and that one
    assert not accepts(relay_process.port)


@pytest.mark.e2e
def test_the_relay_says_in_one_sentence_why_it_cannot_listen(laptop: Machine) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        in_use = laptop.run("relay", "--listen", f"127.0.0.1:{port}")
    malformed = laptop.run("relay", "--listen", "127.0.0.1")

    assert in_use.returncode == 8
    assert in_use.stderr.strip() == (
        f"cclink: error: Cannot listen on 127.0.0.1:{port}: the port is in use; choose another with --listen."
    )
    assert malformed.returncode == 2
    assert len(malformed.stderr.strip().splitlines()) == 1


# --- under load -------------------------------------------------------------------------------

CLIENTS = 1000
# Loose: each open connection costs the relay a few kilobytes; a leak per request or per client would pass it.
RSS_GROWTH_BOUND = 150 * 1024 * 1024


@pytest.mark.e2e
@pytest.mark.slow
def test_a_thousand_clients_at_once_all_get_answers_in_bounded_memory(relay_process: RelayProcess) -> None:
    """Each client from its own loopback address, so the rate limit lets each through: a GET of a cached
    packet and a GET of a key nobody published (lookups shared per key), on one connection held open."""
    published = [Identity.generate() for _ in range(10)]
    for identity in published:
        status = put_status(relay_process.url, signed_packet(identity, seq_now()))
        assert status == 204
    unpublished = [Identity.generate().public_key.z32 for _ in range(10)]
    baseline = relay_process.memory("VmRSS")

    async def client(
        number: int, start: asyncio.Event, all_connected: asyncio.Event, connected: list[int]
    ) -> list[int]:
        source = f"127.77.{number // 200}.{number % 200 + 1}"
        connector = aiohttp.TCPConnector(local_addr=(source, 0), limit=1)
        timeout = aiohttp.ClientTimeout(total=120)
        statuses = []
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            await start.wait()
            for path in (published[number % 10].public_key.z32, unpublished[number % 10]):
                async with session.get(f"{relay_process.url}/{path}") as response:
                    await response.read()
                    statuses.append(response.status)
                # Every connection stays open until all clients have their first answer: 1,000 at once.
                connected[0] += 1
                if connected[0] == CLIENTS:
                    all_connected.set()
                await all_connected.wait()
        return statuses

    async def all_clients() -> list[list[int]]:
        start, all_connected, connected = asyncio.Event(), asyncio.Event(), [0]
        clients = [asyncio.ensure_future(client(n, start, all_connected, connected)) for n in range(CLIENTS)]
        await asyncio.sleep(0)
        start.set()
        return await asyncio.gather(*clients)

    results = asyncio.run(all_clients())
    peak = relay_process.memory("VmHWM")
    status, _ = relay_process.terminate()

    assert results == [[200, 404]] * CLIENTS
    assert peak - baseline < RSS_GROWTH_BOUND, f"the relay grew by {(peak - baseline) >> 20} MiB"
    assert status == 0


def put_status(url: str, signed: packet.SignedPacket) -> int:
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=WAIT)
    try:
        connection.request("PUT", f"/{signed.public_key.z32}", body=signed.relay_payload())
        return connection.getresponse().status
    finally:
        connection.close()


# --- a handoff through the relay where UDP is blocked ---------------------------------------------

LAB_SUBNET = "10.198.0"  # only on the veth between the two namespaces this test makes


@dataclass
class BlockedLab:
    """Namespace `relay` runs a local DHT and `cclink relay` on it; namespace `clients` reaches the relay over
    a veth, but iptables there drops every UDP packet, so the DHT is out of its reach."""

    relay_url: str
    network: Any  # the DHT's Network, as the clients would join it, with the relay
    clients: list[str]  # the prefix that runs a command in the clients' namespace


@contextlib.contextmanager
def blocked_lab(tmp_path: Path) -> Iterator[BlockedLab]:
    from cclink.dev.netlab.lab import CannotRun, preflight, run, stop
    from cclink.net.endpoints import PUBLIC, Network, parse_bootstrap

    tag = f"ccr{os.getpid() % 100_000}"
    try:
        tools = preflight(tag)
    except CannotRun as reason:
        pytest.skip(f"blocking UDP takes network namespaces: {reason}")
    relay_ns, clients_ns = f"{tag}-r", f"{tag}-c"
    made: list[str] = []
    processes: list[subprocess.Popen] = []
    try:
        for namespace in (relay_ns, clients_ns):
            made.append(namespace)
            run([tools.ip, "netns", "add", namespace])
            run([tools.ip, "-n", namespace, "link", "set", "lo", "up"])
        run(
            [
                tools.ip,
                "-n",
                relay_ns,
                "link",
                "add",
                "eth0",
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                clients_ns,
            ]
        )
        for namespace, host in ((relay_ns, 1), (clients_ns, 2)):
            run([tools.ip, "-n", namespace, "addr", "add", f"{LAB_SUBNET}.{host}/24", "dev", "eth0"])
            run([tools.ip, "-n", namespace, "link", "set", "eth0", "up"])
        in_relay_ns = [tools.ip, "netns", "exec", relay_ns]
        clients = [tools.ip, "netns", "exec", clients_ns]
        run([*clients, tools.iptables, "-A", "OUTPUT", "-p", "udp", "-j", "DROP"])

        host = Machine(tmp_path, "relay-host", PUBLIC)
        host.prefix = in_relay_ns
        testnet = host.spawn("testnet")
        processes.append(testnet)
        assert testnet.stdout is not None
        exported = dict(part.split("=", 1) for part in testnet.stdout.readline().split()[1:])
        dht = Network(parse_bootstrap(exported["CCLINK_BOOTSTRAP"]), test=True)
        host.network = dht
        relay = host.spawn("relay", "--listen", f"{LAB_SUBNET}.1:0")
        processes.append(relay)
        assert relay.stdout is not None
        line = relay.stdout.readline()
        assert line.startswith("export CCLINK_RELAYS="), f"cclink relay printed {line!r}"
        url = line.strip().split("=", 1)[1]
        yield BlockedLab(url, Network(dht.bootstrap, test=True, relays=(url,)), clients)
    finally:
        for process in processes:
            stop(process)
            process.communicate()
        for namespace in made:
            run([tools.ip, "netns", "del", namespace], check=False)


@pytest.mark.e2e
def test_with_udp_blocked_a_handoff_goes_from_one_machine_to_the_other_through_the_relay(tmp_path: Path) -> None:
    with blocked_lab(tmp_path) as lab:
        laptop = Machine(tmp_path, "laptop", lab.network)
        desktop = Machine(tmp_path, "desktop", lab.network)
        for machine in (laptop, desktop):
            machine.prefix = lab.clients
        laptop.init()
        desktop.init(import_from=laptop.key_file)
        project = laptop.project()
        session_id = laptop.add_session(project)

        published = json.loads(laptop.ok(session_id, "--json", cwd=project).stdout)
        picked = json.loads(desktop.ok("pickup", "--json").stdout)

    assert published["nodes"] == 0  # no DHT node heard the laptop: the relay alone took the handoff
    assert picked["session_id"] == session_id
