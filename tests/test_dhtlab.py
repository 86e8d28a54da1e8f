"""The DHT lab (cclink.dev.dhtlab): a simulated Mainline DHT of many nodes in one process.

Small labs prove the lab itself: that it is shaped as asked and follows its
seed, that cclink's own client stores and finds records on it, that its
nodes keep BEP 44's rules, that dead entries stay silent, that loss drops
the share asked for, and that churn takes items away with their nodes. Then
the real `cclink` command publishes and picks up through a lab with latency.
"""

from __future__ import annotations

import itertools
import os
import resource
import select
import signal
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path

import libtorrent as lt
import nacl.signing
import pytest
from support.machines import Machine

from cclink.dev.dhtlab import Lab
from cclink.errors import UsageError
from cclink.net import krpc
from cclink.net.endpoints import Endpoint, Network, parse_bootstrap
from cclink.net.record_store import RecordStore
from cclink.net.seq_memory import SeqMemory
from cclink.wire import packet
from cclink.wire.keys import Identity, PublicKey

QUICK = {"median_rtt": 0.002, "slow": 0.0, "port": 0}  # nodes that answer at once, on ports free at the time
REPLY_WAIT = 5.0  # seconds a bare query waits for its reply: a guard, never a measurement
BUCKET_SIZE = 8


# --- a bare KRPC client, to ask the lab's nodes what cclink's client never would ---------------------


class Asker:
    """A UDP socket on 127.0.0.1 that sends KRPC queries and reads the replies."""

    def __init__(self) -> None:
        self.node_id = os.urandom(20)
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.socket.bind(("127.0.0.1", 0))
        # Room for bursts of replies: the lab sends whatever is due at once, and a datagram the kernel
        # drops for want of room would count as the lab's loss.
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self._transactions = itertools.count(1)

    def close(self) -> None:
        self.socket.close()

    def send(self, address: Endpoint, method: bytes, arguments: Mapping[bytes, object]) -> bytes:
        """Send one query; return its transaction id."""
        transaction = next(self._transactions).to_bytes(4, "big")
        query = {b"t": transaction, b"y": b"q", b"q": method, b"a": {b"id": self.node_id, **arguments}}
        self.socket.sendto(lt.bencode(query), address)
        return transaction

    def ask(self, address: Endpoint, method: bytes, arguments: Mapping[bytes, object]) -> dict:
        """One query and its reply, decoded."""
        transaction = self.send(address, method, arguments)
        for reply, _ in self.replies(REPLY_WAIT):
            if reply.get(b"t") == transaction:
                return reply
        raise AssertionError(f"{address} never answered {method!r}")

    def replies(self, quiet_for: float) -> Iterator[tuple[dict, Endpoint]]:
        """Replies as they come, until none has come for quiet_for seconds."""
        while select.select([self.socket], [], [], quiet_for)[0]:
            datagram, sender = self.socket.recvfrom(65536)
            yield lt.bdecode(datagram), sender


@pytest.fixture
def asker() -> Iterator[Asker]:
    client = Asker()
    yield client
    client.close()


def signed_put(
    signer: nacl.signing.SigningKey, token: bytes, seq: int, value: bytes, cas: int | None = None
) -> dict[bytes, object]:
    """A BEP 44 put's arguments, signed over `3:seqi<seq>e1:v<bencoded v>` (the signable, built here by hand)."""
    bencoded = b"%d:%s" % (len(value), value)
    signature = signer.sign(b"3:seqi%de1:v" % seq + bencoded).signature
    arguments = {b"token": token, b"k": bytes(signer.verify_key), b"seq": seq, b"sig": signature, b"v": value}
    return arguments if cas is None else {**arguments, b"cas": cas}


def error_code(reply: dict) -> int | None:
    return reply[b"e"][0] if reply.get(b"y") == b"e" else None


def record_store(network: Network) -> RecordStore:
    return RecordStore.on_dht(network, SeqMemory.in_memory())


def publish(lab: Lab, identity: Identity, text: str) -> int:
    """Put a record through cclink's own client; return its seq."""
    stored = record_store(lab.network).put_message(identity, packet.record_message(identity.public_key, text.encode()))
    assert stored.nodes > 0
    return stored.seq


# --- the lab's shape, without sockets -------------------------------------------------------------


def test_the_same_seed_builds_the_same_lab_and_churns_it_the_same_way() -> None:
    first, second, other = Lab(300, seed=5), Lab(300, seed=5), Lab(300, seed=6)

    assert first.nodes() == second.nodes()
    assert [node.node_id for node in first.nodes()] != [node.node_id for node in other.nodes()]
    first.advance(6, replace=0.3)
    second.advance(6, replace=0.3)
    assert first.nodes() == second.nodes()


def test_routing_tables_have_kademlias_buckets_and_the_share_of_dead_entries_asked_for() -> None:
    lab = Lab(300, dead=0.3, seed=7)

    assert 0.25 <= lab.dead_share() <= 0.35
    for node in lab.nodes():
        own = int.from_bytes(node.node_id, "big")
        buckets = Counter(160 - (own ^ int.from_bytes(c.node_id, "big")).bit_length() for c in node.contacts)
        assert max(buckets.values()) <= BUCKET_SIZE
        # Kademlia's shape: full buckets far away, down to the few nodes that share a long prefix.
        assert buckets[0] == BUCKET_SIZE and len(buckets) >= 6
    assert Lab(300, dead=0.0, seed=7).dead_share() == 0.0


def test_round_trips_have_the_median_asked_for_and_a_long_tail_of_slow_nodes() -> None:
    rtts = sorted(node.rtt for node in Lab(1000, median_rtt=0.08, slow=0.1, seed=9).nodes())

    assert 0.07 <= rtts[len(rtts) // 2] <= 0.1
    # Beyond five times the median: most slow nodes (ten times slower), hardly any others (about 0.4 %).
    assert 0.06 <= sum(1 for rtt in rtts if rtt > 0.4) / len(rtts) <= 0.13
    assert rtts[0] < 0.04 and rtts[-1] > 1.0


def test_churn_replaces_nodes_and_leaves_them_in_tables_as_dead_entries() -> None:
    lab = Lab(200, dead=0.0, seed=8)
    before = {node.address for node in lab.nodes()}

    churn = lab.advance(12, replace=0.5)

    after = {node.address for node in lab.nodes()}
    # Some joiners leave again in later steps: more left than the nodes that are new at the end.
    assert len(after) == 200 and churn.left == churn.joined >= len(after - before)
    assert 0.35 <= len(before - after) / 200 <= 0.65
    assert set(lab.bootstrap) <= after
    listed_dead = {c.address for node in lab.nodes() for c in node.contacts if not c.alive}
    assert listed_dead & (before - after) and not listed_dead & after
    assert all(c.address in after for node in lab.nodes() for c in node.contacts if c.alive)


@pytest.mark.parametrize(
    "arguments",
    [{"nodes": 0}, {"dead": 0.95}, {"loss": 1.0}, {"median_rtt": -1.0}, {"slow": 1.5}, {"port": 70000}],
    ids=lambda arguments: next(iter(arguments)),
)
def test_impossible_labs_are_refused(arguments: dict) -> None:
    with pytest.raises(UsageError):
        Lab(**{"nodes": 10, **arguments})


# --- the lab running --------------------------------------------------------------------------------


@pytest.mark.e2e
def test_a_put_through_cclinks_client_lands_on_the_closest_live_nodes_and_a_get_finds_it() -> None:
    identity = Identity.generate()
    with Lab(200, dead=0.0, seed=11, **QUICK) as lab:
        seq = publish(lab, identity, "hello")

        holders = lab.holders(identity.public_key.raw)
        assert holders and set(holders.values()) == {seq}
        # A lookup may miss one of the very closest (no node it asked listed it), as on the real DHT.
        closest = lab.closest_live(krpc.target_of(identity.public_key.raw), 2 * len(holders))
        assert set(holders) <= set(closest) and len(set(holders) & set(closest[: len(holders)])) > len(holders) / 2
        found = record_store(lab.network).find_item(identity.public_key)
        assert found is not None and found.seq == seq
        assert lab.stats().queries["put"] >= len(holders)


@pytest.mark.e2e
def test_nodes_keep_bep_44s_rules_for_mutable_items(asker: Asker) -> None:
    signer, stranger = nacl.signing.SigningKey.generate(), nacl.signing.SigningKey.generate()
    public_key = bytes(signer.verify_key)
    target = krpc.target_of(public_key)
    with Lab(50, dead=0.0, seed=12, **QUICK) as lab:
        node = lab.closest_live(target, 1)[0]
        token = asker.ask(node, b"get", {b"target": target})[b"r"][b"token"]

        def put(signed: dict) -> int | None:
            return error_code(asker.ask(node, b"put", signed))

        forged = signed_put(stranger, token, 10, b"ten")
        assert put({**forged, b"k": public_key}) == 206  # signed by another key
        assert put(signed_put(signer, b"not the token", 10, b"ten")) == 203
        assert put(signed_put(signer, token, 10, b"x" * 1000)) == 205  # 1005 bytes bencoded
        assert lab.holders(public_key) == {}

        assert put(signed_put(signer, token, 10, b"ten")) is None
        assert put(signed_put(signer, token, 5, b"five")) == 302
        assert put(signed_put(signer, token, 10, b"another ten")) == 302
        assert put(signed_put(signer, token, 10, b"ten")) is None  # the same item again: kept
        assert put(signed_put(signer, token, 11, b"eleven", cas=9)) == 301
        assert lab.holders(public_key) == {node: 10}

        assert put(signed_put(signer, token, 11, b"eleven", cas=10)) is None
        reply = asker.ask(node, b"get", {b"target": target})[b"r"]
        assert (reply[b"seq"], reply[b"v"], reply[b"k"]) == (11, b"eleven", public_key)
        assert b"v" not in asker.ask(node, b"get", {b"target": target, b"seq": 11})[b"r"]
        assert error_code(asker.ask(node, b"vote", {})) == 204
        assert lab.stats().errors == Counter({302: 2, 206: 1, 203: 1, 205: 1, 301: 1, 204: 1})


@pytest.mark.e2e
def test_peers_announced_to_a_node_are_handed_out(asker: Asker) -> None:
    info_hash = os.urandom(20)
    with Lab(20, dead=0.0, seed=13, **QUICK) as lab:
        node = lab.bootstrap[0]
        token = asker.ask(node, b"get_peers", {b"info_hash": info_hash})[b"r"][b"token"]

        announced = asker.ask(node, b"announce_peer", {b"info_hash": info_hash, b"port": 7000, b"token": token})

        assert announced[b"y"] == b"r"
        values = asker.ask(node, b"get_peers", {b"info_hash": info_hash})[b"r"][b"values"]
        assert values == [socket.inet_aton("127.0.0.1") + (7000).to_bytes(2, "big")]


@pytest.mark.e2e
def test_dead_entries_never_answer_and_every_live_node_does(asker: Asker) -> None:
    with Lab(100, dead=0.3, seed=14, **QUICK) as lab:
        live = {node.address for node in lab.nodes()}
        dead = {contact.address for node in lab.nodes() for contact in node.contacts if not contact.alive}
        assert len(dead) > 50
        for address in sorted(live | dead):
            asker.send(address, b"ping", {})

        answered = {sender for _, sender in asker.replies(quiet_for=1.0)}

    assert answered == live


@pytest.mark.e2e
def test_loss_drops_about_the_share_asked_for_each_way(asker: Asker) -> None:
    pings, loss = 2000, 0.2
    with Lab(20, dead=0.0, loss=loss, seed=15, **QUICK) as lab:
        addresses = [node.address for node in lab.nodes()]
        answered = 0
        for index in range(pings):
            asker.send(addresses[index % len(addresses)], b"ping", {})
            answered += sum(1 for _ in asker.replies(quiet_for=0))  # read as they come: no buffer overflows
        answered += sum(1 for _ in asker.replies(quiet_for=0.5))
        stats = lab.stats()

    # A ping is answered when neither it nor its reply is lost: (1 - 0.2)^2 = 64 %. Loose bounds: about 6 sigma.
    assert 0.58 <= answered / pings <= 0.70
    assert stats.received == pings and 0.16 <= stats.lost_in / pings <= 0.24
    assert 0.16 <= stats.lost_out / (pings - stats.lost_in) <= 0.24


@pytest.mark.e2e
def test_churn_takes_items_away_with_their_nodes() -> None:
    identity = Identity(bytes(range(32)))  # a fixed key: which holders leave follows from it and the seed
    with Lab(150, dead=0.0, seed=16, **QUICK) as lab:
        seq = publish(lab, identity, "before the churn")
        stored_on = lab.holders(identity.public_key.raw)

        lab.advance(24, replace=0.5)

        still_here = {node.address for node in lab.nodes()}
        assert stored_on.keys() - still_here, "no holder left: a seed where churn spares them proves nothing"
        assert lab.holders(identity.public_key.raw) == {a: seq for a in stored_on if a in still_here}


@pytest.mark.e2e
def test_items_past_their_lifetime_are_dropped() -> None:
    identity = Identity.generate()
    with Lab(50, dead=0.0, seed=17, item_lifetime=2 * 3600, **QUICK) as lab:
        publish(lab, identity, "for two hours")
        lab.advance(1)
        assert lab.holders(identity.public_key.raw)

        lab.advance(2)

        assert lab.holders(identity.public_key.raw) == {}


# --- the command line ----------------------------------------------------------------------------


def run_lab_command(*args: str, preexec_fn=None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "cclink.dev.dhtlab", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=preexec_fn,
    )


@pytest.mark.e2e
def test_the_command_prints_the_export_line_serves_and_stops_on_ctrl_c() -> None:
    lab = run_lab_command("--nodes", "60", "--dead", "0", "--loss", "0", "--rtt", "2", "--seed", "18", "--port", "0")
    try:
        line = lab.stdout.readline().strip() if lab.stdout else ""
        assert line.startswith("export CCLINK_NETWORK=test CCLINK_BOOTSTRAP=127.10.0.1:")
        bootstrap = parse_bootstrap(line.split("CCLINK_BOOTSTRAP=")[1])
        identity = Identity.generate()
        stored = record_store(Network(bootstrap, test=True)).put_message(
            identity, packet.record_message(identity.public_key, b"through the command")
        )
        assert stored.nodes > 0
    finally:
        lab.send_signal(signal.SIGINT)
        _, errors = lab.communicate(timeout=30)
    assert lab.returncode == 0, errors
    assert "60 DHT nodes on 127.10.0.1" in errors and "put" in errors


@pytest.mark.e2e
def test_a_lab_larger_than_the_open_file_limit_is_refused_in_one_sentence() -> None:
    def low_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (200, 200))

    lab = run_lab_command("--nodes", "500", "--port", "0", preexec_fn=low_limit)
    out, errors = lab.communicate(timeout=60)

    assert lab.returncode == 1 and out == ""
    assert "500 nodes needs about" in errors and "at most 200" in errors and "Traceback" not in errors


# --- the real command through a lab with latency ----------------------------------------------------


@pytest.mark.e2e
def test_cclink_publishes_and_picks_up_through_a_lab_of_hundreds_of_nodes(tmp_path: Path) -> None:
    with Lab(300, dead=0.1, loss=0.01, median_rtt=0.08, slow=0.05, seed=19, port=0) as lab:
        laptop, desktop = Machine(tmp_path, "laptop", lab.network), Machine(tmp_path, "desktop", lab.network)
        key = laptop.init()
        desktop.init(import_from=laptop.key_file)
        session_id = laptop.add_session(laptop.project("app"))
        desktop.add_session(desktop.project("app"), session_id)

        laptop.ok(cwd=laptop.project("app"))
        assert lab.holders(PublicKey.parse(key).raw)
        desktop.ok("pickup", "-y")

    assert [launch.argv for launch in desktop.launches()] == [[f"--resume={session_id}"]]
