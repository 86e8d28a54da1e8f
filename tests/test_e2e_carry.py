"""`cclink --carry`: the session itself travels, encrypted, peer to peer, to a machine that never had it."""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import signal
import socket
import struct
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.carry import READY, WAIT, files_under, finish, short_project, wait_for_line
from support.ui import ScriptedUI

from cclink.errors import NotFound, TransferError
from cclink.flows import acknowledgement, carry, publish
from cclink.flows.environment import Environment
from cclink.flows.keystore import KeyStore
from cclink.net import bittorrent, record_store
from cclink.net.endpoints import Network
from cclink.net.seq_memory import SeqMemory
from cclink.wire import archive, payload, record
from cclink.wire.keys import Identity, PublicKey
from cclink.wire.payload import CarryInfo, Payload

pytestmark = pytest.mark.e2e


# --- helpers ------------------------------------------------------------------------------


def realistic_transcript(project: Path, session_id: str, size: int) -> bytes:
    """JSONL shaped like Claude Code's: messages, tool calls with large outputs, a cwd on every line."""
    rng = random.Random(session_id)
    words = [
        "the", "a", "function", "test", "error", "file", "return", "value",
        "import", "class", "def", "self", "config", "build", "run",
    ]  # fmt: skip
    lines, total, parent = [], 0, None
    while total < size:
        line_id = str(uuid.UUID(int=rng.getrandbits(128)))
        kind = rng.choice(["user", "assistant", "assistant", "tool"])
        text = " ".join(rng.choice(words) for _ in range(rng.randint(5, 60 if kind != "tool" else 3000)))
        entry = {
            "parentUuid": parent,
            "isSidechain": False,
            "userType": "external",
            # Sessions start in the project; later tool calls may run below it.
            "cwd": str(project / "src") if kind == "tool" and lines else str(project),
            "sessionId": session_id,
            "version": "2.0.1",
            "type": "user" if kind != "assistant" else "assistant",
            "message": {
                "role": "user" if kind != "assistant" else "assistant",
                "content": [{"type": "text", "text": text}],
            },
            "uuid": line_id,
            "timestamp": f"2026-11-23T08:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}.000Z",
        }
        line = (json.dumps(entry, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
        lines.append(line)
        total += len(line)
        parent = line_id
    return b"".join(lines)


def noise_line(project: Path, random_bytes: int) -> bytes:
    """A transcript line carrying random bytes as hex: it compresses only twofold, so the archive stays large."""
    return json.dumps({"cwd": str(project), "blob": os.urandom(random_bytes).hex()}).encode() + b"\n"


def write_session(machine, project: Path, content: bytes, session_id: str, with_directory: bool = True) -> Path:
    folder = machine.sessions_folder(project)
    folder.mkdir(parents=True, exist_ok=True)
    file = folder / f"{session_id}.jsonl"
    file.write_bytes(content)
    if with_directory:
        sub = folder / session_id / "subagents"
        sub.mkdir(parents=True)
        (sub / "agent-1.jsonl").write_text(json.dumps({"cwd": str(project), "type": "user"}) + "\n")
    return file


def replace_question(session_id: str, local_copy: Path) -> str:
    return f"A copy of session {session_id} is already at {local_copy}. Replace it"


def session_to_carry(
    machine, base: Path, size: int, *, name: str = "app", with_directory: bool = True
) -> tuple[Path, str, Path]:
    """A project below base whose session holds a realistic transcript of about size bytes.

    Returns (project, session id, file).
    """
    project = short_project(base, name)
    session_id = str(uuid.uuid4())
    content = realistic_transcript(project, session_id, size)
    return project, session_id, write_session(machine, project, content, session_id, with_directory)


@pytest.fixture
def carried(paired, short_dir):
    """A laptop seeding a 20 MB session with --carry; the desktop shares its key but has no session."""
    laptop, desktop = paired
    project, session_id, file = session_to_carry(laptop, short_dir, 20 * 1024 * 1024, name="big-app")
    content = file.read_bytes()
    publisher = laptop.spawn("--carry", "--json", cwd=project)
    wait_for_line(publisher, READY)
    yield laptop, desktop, publisher, project, session_id, content
    if publisher.poll() is None:
        publisher.kill()
        publisher.communicate()


# --- the whole journey ---------------------------------------------------------------------


def test_a_carried_session_arrives_byte_identical_and_resumes_in_the_mapped_directory(carried):
    _, desktop, publisher, project, session_id, content = carried
    mapped = desktop.project("elsewhere", "big-app")

    result = desktop.ok("pickup", "-y", "--project-dir", str(mapped))

    [launch] = desktop.launches()
    assert launch.argv == [f"--resume={session_id}"]
    assert launch.cwd == str(mapped)
    placed = desktop.sessions_folder(mapped) / f"{session_id}.jsonl"
    arrived = placed.read_bytes()
    assert f'"cwd":"{mapped}"'.encode() in arrived and str(project).encode() not in arrived
    restored = io.BytesIO()
    archive.replace_cwd(io.BytesIO(arrived), restored, str(mapped), str(project))
    assert restored.getvalue() == content
    assert (placed.parent / session_id / "subagents" / "agent-1.jsonl").exists()
    assert oct(placed.stat().st_mode & 0o777) == oct(0o600)
    assert "Placed the session" in result.stderr

    code, out, err = finish(publisher)
    assert code == 0, err
    assert "The session was fetched" in err
    assert json.loads(out)["carry"]["size"] > 0
    # The download cache is cleared once the session is in place; the DHT's routing table is kept for next time.
    assert files_under(desktop.home / ".cache" / "cclink" / "incoming") == []
    assert list((desktop.home / ".cache" / "cclink").glob("dht-*.state"))


def test_the_publishers_own_path_is_used_when_it_exists_here(paired, short_dir):
    laptop, desktop = paired
    project, _, _ = session_to_carry(laptop, short_dir, 50_000, name="shared-path", with_directory=False)
    publisher = laptop.spawn("--carry", cwd=project)
    wait_for_line(publisher, READY)

    desktop.ok("pickup", "-y")

    [launch] = desktop.launches()
    assert launch.cwd == str(project)
    assert finish(publisher)[0] == 0


def test_without_the_publishers_directory_the_session_goes_to_the_current_one_once_confirmed(paired, short_dir):
    laptop, desktop = paired
    project, session_id, file = session_to_carry(laptop, short_dir, 50_000, name="gone", with_directory=False)
    content = file.read_bytes()
    publisher = laptop.spawn("--carry", cwd=project)
    wait_for_line(publisher, READY)
    project.rmdir()  # the publisher's path does not exist where the session is picked up
    here = desktop.project("checkout")
    resume, place_here = "[y/N]", f"{project} does not exist here. Put the session in {here}?"

    declined, output = desktop.on_terminal("pickup", cwd=here, exchanges=[(resume, b"y\n"), (place_here, b"n\n")])

    assert declined == 0, output  # declining is no failure
    assert "Not resumed; choose the directory with --project-dir DIR." in output and "error" not in output
    assert files_under(desktop.home / ".claude") == [] and desktop.launches() == []

    accepted, output = desktop.on_terminal("pickup", cwd=here, exchanges=[(resume, b"y\n"), (place_here, b"y\n")])

    assert accepted == 0, output
    [launch] = desktop.launches()
    assert launch.cwd == str(here)
    placed = desktop.sessions_folder(here) / f"{session_id}.jsonl"
    restored = io.BytesIO()
    archive.replace_cwd(io.BytesIO(placed.read_bytes()), restored, str(here), str(project))
    assert restored.getvalue() == content
    assert finish(publisher)[0] == 0


def test_burn_with_share_is_revoked_once_the_recipient_has_the_session(machines, short_dir):
    laptop, colleague = machines("laptop"), machines("colleague")
    laptop.init()
    colleague_key = colleague.init()
    project, _, _ = session_to_carry(laptop, short_dir, 100_000)
    publisher = laptop.spawn("--carry", "--burn", "--share", colleague_key, cwd=project)
    wait_for_line(publisher, READY)

    colleague.ok("pickup", "-y", laptop.public_key_z32(), "--project-dir", str(colleague.project("app")))

    code, _, err = finish(publisher)
    assert code == 0, err
    assert "revoked" in err
    again = colleague.run("pickup", "-y", laptop.public_key_z32())
    assert again.returncode == 7
    assert len(colleague.launches()) == 1


def test_a_pin_carry_opens_only_with_the_pin(machines, short_dir):
    laptop, stranger, friend = machines("laptop"), machines("stranger"), machines("friend")
    laptop.init()
    project, session_id, _ = session_to_carry(laptop, short_dir, 100_000)
    publisher = laptop.spawn("--carry", "--pin", cwd=project, env={"CCLINK_PIN": "correct-horse-battery"})
    wait_for_line(publisher, READY)
    z32 = laptop.public_key_z32()

    wrong = stranger.run("pickup", "-y", z32, env={"CCLINK_PIN": "wrong-horse-battery"})
    assert wrong.returncode == 6
    assert stranger.launches() == [] and files_under(stranger.home / ".claude") == []

    friend.ok(
        "pickup", "-y", z32, "--project-dir", str(friend.project("app")), env={"CCLINK_PIN": "correct-horse-battery"}
    )
    assert [launch.argv for launch in friend.launches()] == [[f"--resume={session_id}"]]
    assert finish(publisher)[0] == 0


def test_a_share_carry_cannot_be_read_by_a_third_key(machines, short_dir):
    laptop, colleague, other = machines("laptop"), machines("colleague"), machines("other")
    laptop.init()
    colleague_key = colleague.init()
    other.init()
    project, _, _ = session_to_carry(laptop, short_dir, 100_000)
    publisher = laptop.spawn("--carry", "--share", colleague_key, cwd=project)
    try:
        wait_for_line(publisher, READY)
        refused = other.run("pickup", "-y", laptop.public_key_z32())
        assert refused.returncode == 6
        assert "shared with" in refused.stderr
        assert other.launches() == [] and files_under(other.home / ".claude") == []
    finally:
        publisher.kill()
        publisher.communicate()


# --- a differing local copy -------------------------------------------------------------------


@pytest.mark.parametrize("consent", ["-y", "typed"])
def test_a_differing_local_copy_is_replaced_with_consent_and_kept_as_a_backup(carried, consent):
    _, desktop, publisher, _, session_id, _ = carried
    mapped = desktop.project("app")
    mine = write_session(desktop, mapped, b'{"cwd":"x","mine":true}\n', session_id, with_directory=False)

    if consent == "-y":
        desktop.ok("pickup", "-y", "--fetch", "--project-dir", str(mapped))
    else:
        exchanges = [("[y/N]", b"y\n"), (replace_question(session_id, mine), b"y\n")]
        status, output = desktop.on_terminal("pickup", "--fetch", "--project-dir", str(mapped), exchanges=exchanges)
        assert status == 0, output

    backups = list(mine.parent.glob(f"{session_id}.jsonl.backup-*"))
    assert [b.read_bytes() for b in backups] == [b'{"cwd":"x","mine":true}\n']
    assert mine.read_bytes() != b'{"cwd":"x","mine":true}\n'
    assert finish(publisher)[0] == 0


@pytest.mark.parametrize("refusal", ["no terminal", "typed no"])
def test_a_local_copy_is_never_replaced_without_consent_and_nothing_is_downloaded(carried, refusal):
    _, desktop, publisher, _, session_id, _ = carried
    mapped = desktop.project("app")
    mine = write_session(desktop, mapped, b'{"cwd":"x","mine":true}\n', session_id, with_directory=False)

    if refusal == "no terminal":  # and no -y: the pickup itself proceeds, the replacement does not
        result = desktop.run("pickup", "--fetch", "--project-dir", str(mapped))
        code, output = result.returncode, result.stderr
    else:
        exchanges = [("[y/N]", b"y\n"), (replace_question(session_id, mine), b"n\n")]
        code, output = desktop.on_terminal("pickup", "--fetch", "--project-dir", str(mapped), exchanges=exchanges)

    assert code == (2 if refusal == "no terminal" else 0), output  # no person to ask vs. a person's no
    assert f"Kept the local copy of session {session_id} at {mine} and downloaded nothing" in output
    assert mine.read_bytes() == b'{"cwd":"x","mine":true}\n'
    assert list(mine.parent.glob("*.backup-*")) == []
    assert desktop.launches() == []
    assert files_under(desktop.home / ".cache" / "cclink" / "incoming") == []
    # The publisher still offers the session: it saw no download (which would also have revoked a --burn record).
    desktop.ok("pickup", "-y", "--fetch", "--fetch-timeout", "10", "--project-dir", str(mapped))
    assert finish(publisher)[0] == 0


# --- damage, absence, interruption ------------------------------------------------------------


def publish_carry_record(
    machine,
    network: Network,
    session_file: Path,
    project: Path,
    *,
    sha256: bytes | None = None,
    data_for: Identity | None = None,
) -> carry.Outgoing:
    """Seed a session through the library and publish a record about it.

    Optionally the record names a wrong SHA-256, or the data is encrypted to
    another key (data_for) than the record.
    """
    identity = Identity(bytes.fromhex(machine.key_file.read_text().strip()))
    outgoing = carry.Outgoing(session_file, (data_for or identity).public_key.age_recipient(), network)
    info = outgoing.info()
    if sha256 is not None:
        info = CarryInfo(info.info_hash, info.size, sha256, info.hints)
    body = Payload(session_file.stem, "laptop", str(project)).with_carry(info)
    signed = record.new_record(
        identity, payload.seal(body, identity.public_key.age_recipient()), ttl=600, now=time.time()
    )
    record_store.RecordStore.on_dht(network).publish(identity, signed)
    return outgoing


def keep_seeding(outgoing: carry.Outgoing, process: subprocess.Popen) -> None:
    """Serve peers until the picking process has exited."""
    while process.poll() is None:
        outgoing.poll(0.2)


def test_data_that_does_not_match_the_signed_sha256_is_refused_and_nothing_is_written(paired, swarm, short_dir):
    laptop, desktop = paired
    project, _, file = session_to_carry(laptop, short_dir, 200_000)
    with publish_carry_record(laptop, swarm.network, file, project, sha256=bytes(32)) as outgoing:
        picker = desktop.spawn("pickup", "-y", "--project-dir", str(desktop.project("app")))
        keep_seeding(outgoing, picker)
        code, _, err = finish(picker)

    assert code == 5
    assert "SHA-256" in err and "Traceback" not in err
    assert desktop.launches() == []
    assert files_under(desktop.home / ".claude") == []


def test_data_encrypted_to_another_key_than_the_record_is_refused_and_nothing_is_written(paired, swarm, short_dir):
    laptop, desktop = paired
    project, _, file = session_to_carry(laptop, short_dir, 200_000)
    stranger = Identity(os.urandom(32))
    with publish_carry_record(laptop, swarm.network, file, project, data_for=stranger) as outgoing:
        picker = desktop.spawn("pickup", "-y", "--project-dir", str(desktop.project("app")))
        keep_seeding(outgoing, picker)
        code, _, err = finish(picker)

    assert code == 6, err
    assert err.count("cclink: error:") == 1 and "does not decrypt with the handoff's key" in err
    assert desktop.launches() == []
    assert files_under(desktop.home / ".claude") == []


def test_ctrl_c_while_packing_stops_the_publisher_with_one_sentence_and_leaves_nothing(paired, short_dir):
    laptop, _ = paired
    project = short_project(short_dir, "app")
    session_id = str(uuid.uuid4())
    write_session(laptop, project, noise_line(project, 40_000_000), session_id)  # packing takes most of a second
    outgoing = laptop.home / ".cache" / "cclink" / "outgoing"
    publisher = laptop.spawn("--carry", session_id, cwd=project)
    deadline = time.monotonic() + WAIT
    while not any(path.stat().st_size for path in outgoing.glob("*/carry.age")):  # packing has begun
        assert publisher.poll() is None and time.monotonic() < deadline, "the publisher never started packing"
        time.sleep(0.01)
    publisher.send_signal(signal.SIGINT)
    code, _, err = finish(publisher)

    assert code == 130, err
    assert err.strip().splitlines()[-1] == "cclink: error: Interrupted."
    assert "Traceback" not in err
    assert list(outgoing.iterdir()) == []


def test_ctrl_c_while_seeding_stops_offering_the_data_and_the_handoff_stays_published(paired, short_dir):
    laptop, _ = paired
    project, session_id, _ = session_to_carry(laptop, short_dir, 50_000)
    publisher = laptop.spawn("--carry", cwd=project)
    wait_for_line(publisher, READY)

    publisher.send_signal(signal.SIGINT)
    code, _, err = finish(publisher)

    assert code == 130, err
    assert "the handoff stays published" in err and "Traceback" not in err
    assert list((laptop.home / ".cache" / "cclink" / "outgoing").iterdir()) == []
    assert json.loads(laptop.ok("pickup", "--json").stdout)["session_id"] == session_id


def test_nobody_fetching_within_the_carry_timeout_is_one_sentence_and_the_handoff_stays(paired, short_dir):
    laptop, _ = paired
    project, session_id, _ = session_to_carry(laptop, short_dir, 50_000)

    result = laptop.run("--carry", "--carry-timeout", "2", cwd=project)

    assert result.returncode == 8, result.stderr
    [error] = [line for line in result.stderr.splitlines() if line.startswith("cclink: error:")]
    assert f"Nobody fetched session {session_id} within 2s" in error
    assert list((laptop.home / ".cache" / "cclink" / "outgoing").iterdir()) == []
    assert json.loads(laptop.ok("pickup", "--json").stdout)["session_id"] == session_id


def carry_published_in_process(
    laptop, swarm, short_dir, monkeypatch
) -> tuple[record_store.RecordStore, publish.Publication]:
    """The publish flow of `cclink --carry`, run in this process as the laptop; the caller serves and closes it."""
    project, session_id, _ = session_to_carry(laptop, short_dir, 50_000)
    monkeypatch.setenv("HOME", str(laptop.home))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    dht = record_store.RecordStore.on_dht(swarm.network)
    keys = KeyStore(laptop.key_file)
    env = Environment(project, "laptop", time.time, keys, dht, swarm.network, SeqMemory.in_memory())
    return dht, publish.publish(publish.PublishRequest(session_id=session_id, carry=True), ScriptedUI(), env)


def test_a_seeding_publisher_puts_its_record_again_so_that_dht_nodes_keep_it(paired, swarm, short_dir, monkeypatch):
    laptop, _ = paired
    dht, publication = carry_published_in_process(laptop, swarm, short_dir, monkeypatch)
    outcome = publication.outcome
    first = dht.resolve(outcome.publisher)

    with publication, pytest.raises(TransferError):  # nobody fetches it: seeding ends at the timeout
        publication.serve_carry(ScriptedUI(), timeout=3, renew_every=0.5)

    renewed = dht.resolve(outcome.publisher)
    assert renewed.seq > first.seq
    assert renewed.record == first.record


def test_a_publisher_that_is_gone_gives_a_clear_error_after_the_fetch_timeout(paired, swarm, short_dir):
    laptop, desktop = paired
    project, _, file = session_to_carry(laptop, short_dir, 50_000)
    publish_carry_record(laptop, swarm.network, file, project).close()  # record published, seeder gone

    result = desktop.run("pickup", "-y", "--fetch-timeout", "3", "--project-dir", str(desktop.project("app")))

    assert result.returncode == 8
    assert result.stderr.count("cclink: error:") == 1 and "publisher" in result.stderr
    assert desktop.launches() == []
    assert files_under(desktop.home / ".claude") == []


def test_an_interrupted_download_resumes_where_it_stopped(paired, swarm, short_dir):
    laptop, desktop = paired
    project = short_project(short_dir, "app")
    session_id = str(uuid.uuid4())
    transcript = realistic_transcript(project, session_id, 10_000) + noise_line(project, 3_000_000)
    file = write_session(laptop, project, transcript, session_id)
    with publish_carry_record(laptop, swarm.network, file, project) as outgoing:
        info = outgoing.info()
        # What an interrupted pickup leaves behind: the first half of the download, in the cache.
        partial = desktop.home / ".cache" / "cclink" / "incoming" / info.info_hash.hex() / "carry.age"
        partial.parent.mkdir(parents=True)
        whole = outgoing.path.read_bytes()
        with open(partial, "wb") as f:
            f.write(whole[: len(whole) // 2])
            f.truncate(len(whole))
        picker = desktop.spawn("pickup", "-y", "--project-dir", str(desktop.project("app")))
        keep_seeding(outgoing, picker)
        code, _, err = finish(picker)
        sent = outgoing.poll(0).uploaded

    assert code == 0, err
    assert [launch.argv for launch in desktop.launches()] == [[f"--resume={session_id}"]]
    assert 0 < sent <= len(whole) // 2 + 2 * (1 << 20)  # the second half, give or take a piece


def test_fetch_refuses_a_handoff_that_carries_nothing(paired):
    laptop, desktop = paired
    project = laptop.project("app")
    session_id = laptop.add_session(project)
    desktop.add_session(desktop.project("app"), session_id)
    laptop.ok(cwd=project)

    result = desktop.run("pickup", "-y", "--fetch")

    assert result.returncode == 2
    assert "nothing to fetch" in result.stderr
    assert desktop.launches() == []


@contextlib.contextmanager
def small_disk(path: Path, size: int) -> Iterator[None]:
    """A tmpfs of `size` bytes mounted at path (root only; the test skips elsewhere)."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "cclink-test", str(path)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield
    finally:
        subprocess.run(["umount", "--lazy", str(path)], check=True)


def test_a_session_that_would_fill_the_disk_is_refused_and_nothing_is_written(paired, short_dir):
    laptop, desktop = paired
    project, _, _ = session_to_carry(laptop, short_dir, 4 << 20)
    publisher = laptop.spawn("--carry", cwd=project)
    try:
        wait_for_line(publisher, READY)
        # Room for the encrypted download (about a megabyte), not for what it unpacks to.
        with small_disk(desktop.home / ".claude", 3 << 20):
            result = desktop.run("pickup", "-y", "--project-dir", str(desktop.project("app")))

            assert result.returncode == 4, result.stderr
            assert result.stderr.count("cclink: error:") == 1 and "not enough disk space" in result.stderr
            assert desktop.launches() == []
            assert files_under(desktop.home / ".claude") == []
    finally:
        publisher.kill()
        publisher.communicate()


def test_a_full_disk_while_packing_is_one_sentence_and_leaves_nothing(paired, short_dir):
    laptop, _ = paired
    project = short_project(short_dir, "app")
    session_id = str(uuid.uuid4())
    write_session(laptop, project, noise_line(project, 2_000_000), session_id)
    cache = laptop.home / ".cache" / "cclink"
    with small_disk(cache, 1 << 20):  # the encrypted archive needs about 2 MB
        result = laptop.run("--carry", session_id, cwd=project)

        assert result.returncode == 4, result.stderr
        assert result.stderr.count("cclink: error:") == 1 and "filled up while packing" in result.stderr
        assert list((cache / "outgoing").iterdir()) == []


# --- only the recipient ends a carry --------------------------------------------------------------


def published_json(publisher: subprocess.Popen) -> dict:
    """The --json output of a publisher that is seeding (printed in full before READY)."""
    text = ""
    while True:
        line = publisher.stdout.readline()
        assert line, f"the publisher printed no JSON: {text!r}"
        text += line
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            continue


def claim_the_whole_file(endpoint: tuple[str, int], info_hash: bytes, size: int) -> None:
    """A stranger's BitTorrent handshake and a bitfield saying it has every piece.

    Returns once the seeder closed the connection.
    """
    pieces = -(-size // bittorrent.PIECE_SIZE)
    bitfield = bytearray(b"\xff" * (-(-pieces // 8)))
    if pieces % 8:
        bitfield[-1] = (0xFF << (8 - pieces % 8)) & 0xFF  # spare bits must be clear
    with socket.create_connection(endpoint, timeout=WAIT) as peer:
        peer.sendall(b"\x13BitTorrent protocol" + bytes(8) + info_hash + os.urandom(20))
        peer.sendall(struct.pack("!IB", 1 + len(bitfield), 5) + bytes(bitfield))
        while peer.recv(65536):  # its handshake, its bitfield, then the close of one seed to another
            pass


def download_like_a_stranger(info_hash: bytes, size: int, hint: tuple[str, int], network: Network, into: Path) -> bytes:
    """The whole encrypted file, fetched by a libtorrent session that knows only what a peer on the DHT can see."""
    with bittorrent.Fetcher(info_hash, size, into, network, [hint]) as fetcher:
        deadline = time.monotonic() + WAIT
        while not fetcher.poll(0.2).finished:
            assert time.monotonic() < deadline, "the stranger never got the file"
        fetcher.flush()
        data = fetcher.path.read_bytes()
        fetcher.part_ways()
    return data


def test_strangers_that_claim_or_download_the_file_neither_end_the_carry_nor_fire_the_burn(
    paired, swarm, short_dir, monkeypatch, tmp_path
):
    laptop, desktop = paired
    project, session_id, _ = session_to_carry(laptop, short_dir, 3 << 20)
    publisher = laptop.spawn("--carry", "--burn", "--json", cwd=project)
    try:
        wait_for_line(publisher, READY)
        offered = published_json(publisher)["carry"]
        info_hash, size = bytes.fromhex(offered["info_hash"]), offered["size"]
        hint = bittorrent.parse_endpoint(offered["hints"][0])
        monkeypatch.setenv("HOME", str(tmp_path / "stranger"))  # the stranger's libtorrent keeps its DHT cache there
        monkeypatch.delenv("XDG_CACHE_HOME", raising=False)

        claim_the_whole_file(hint, info_hash, size)
        stolen = download_like_a_stranger(info_hash, size, hint, swarm.network, tmp_path / "stolen")

        assert len(stolen) == size
        publisher_key = PublicKey.parse(laptop.public_key_z32())
        still = record_store.RecordStore.on_dht(swarm.network).resolve(publisher_key)
        assert still.record.burn and publisher.poll() is None

        desktop.ok("pickup", "-y", "--fetch-timeout", "30", "--project-dir", str(desktop.project("app")))

        [launch] = desktop.launches()
        assert session_id in "".join(launch.argv)
        code, _, err = finish(publisher)
        assert code == 0, err
        assert "The session was fetched" in err and "revoked" in err
        assert desktop.run("pickup", "-y").returncode == 7
    finally:
        if publisher.poll() is None:
            publisher.kill()
            publisher.communicate()


@pytest.mark.parametrize("elsewhere", ["revoked", "replaced"])
def test_renewal_stops_instead_of_undoing_a_revoke_or_a_newer_handoff(paired, swarm, short_dir, monkeypatch, elsewhere):
    laptop, desktop = paired
    dht, publication = carry_published_in_process(laptop, swarm, short_dir, monkeypatch)
    outcome = publication.outcome
    if elsewhere == "revoked":
        desktop.ok("revoke", "-y")
    else:
        other = desktop.project("other")
        newer = desktop.add_session(other)
        desktop.ok(cwd=other)

    with publication, pytest.raises(NotFound) as stopped:
        publication.serve_carry(ScriptedUI(), timeout=WAIT, renew_every=0.5)

    assert str(stopped.value) == "the handoff was revoked or replaced elsewhere; stopped offering the session"
    if elsewhere == "revoked":
        with pytest.raises(NotFound):
            dht.resolve(outcome.publisher)
    else:
        assert json.loads(desktop.ok("pickup", "--json").stdout)["session_id"] == newer


def publish_declared_carry(machine, network: Network, size: int) -> None:
    """A record promising carried data of `size` bytes that nobody seeds."""
    identity = Identity(bytes.fromhex(machine.key_file.read_text().strip()))
    info = CarryInfo(os.urandom(20), size, os.urandom(32))
    body = Payload(str(uuid.uuid4()), "laptop", "/tmp/nowhere").with_carry(info)
    signed = record.new_record(
        identity, payload.seal(body, identity.public_key.age_recipient()), ttl=600, now=time.time()
    )
    record_store.RecordStore.on_dht(network).publish(identity, signed)


def test_a_declared_size_beyond_what_cclink_accepts_is_refused_before_downloading(paired, swarm):
    laptop, desktop = paired
    publish_declared_carry(laptop, swarm.network, carry.MAX_UNPACKED + 1)

    result = desktop.run("pickup", "-y", "--fetch-timeout", "5", "--project-dir", str(desktop.project("app")))

    assert result.returncode == 4, result.stderr
    [error] = [line for line in result.stderr.splitlines() if line.startswith("cclink: error:")]
    assert "encrypted, more than the 16.0 GiB cclink accepts; nothing was downloaded" in error
    assert not (desktop.home / ".cache" / "cclink" / "incoming").exists()
    assert desktop.launches() == []


def test_a_declared_size_beyond_the_free_space_is_refused_before_downloading(paired, swarm):
    laptop, desktop = paired
    publish_declared_carry(laptop, swarm.network, 3 << 29)  # 1.5 GiB, within the cap
    with small_disk(desktop.home / ".cache", 2 << 30):  # 2 GiB: less than that plus the 1 GiB kept free
        result = desktop.run("pickup", "-y", "--fetch-timeout", "5", "--project-dir", str(desktop.project("app")))

        assert result.returncode == 4, result.stderr
        [error] = [line for line in result.stderr.splitlines() if line.startswith("cclink: error:")]
        assert "not enough disk space" in error and "nothing was downloaded" in error
        assert not (desktop.home / ".cache" / "cclink" / "incoming").exists()
        assert desktop.launches() == []


PUBLIC = Network((("router.bittorrent.com", 6881),))
ON_THIS_MACHINE = Network((("127.0.0.1", 6881),))
LAB = Network((("10.77.0.1", 6881),))


@pytest.mark.parametrize(
    "network, kept",
    [
        (PUBLIC, [("8.8.8.8", 1), ("2606:4700::1111", 4)]),
        (ON_THIS_MACHINE, [("127.0.0.2", 2), ("::1", 6)]),
        (LAB, [("192.168.1.10", 3), ("10.0.0.5", 5), ("fd00::1", 7)]),
    ],
)
@pytest.mark.parametrize("test", [False, True], ids=["real", "test"])
def test_only_address_hints_of_the_dhts_own_scope_are_kept(network, kept, test):
    """Scope follows where the DHT is, whether or not it is a test network."""
    hints = [
        ("8.8.8.8", 1),
        ("127.0.0.2", 2),
        ("192.168.1.10", 3),
        ("2606:4700::1111", 4),
        ("10.0.0.5", 5),
        ("::1", 6),
        ("fd00::1", 7),
        ("169.254.1.1", 8),
        ("0.0.0.0", 9),
        ("224.0.0.1", 10),
    ]
    assert bittorrent.in_scope(hints, Network(network.bootstrap, test=test)) == kept


def test_on_the_public_dht_the_peer_wire_refuses_addresses_no_public_peer_has():
    ip_filter = bittorrent._public_peers_only()
    for address in [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.0.1",
        "169.254.9.9",
        "100.64.0.1",
        "0.0.0.0",
        "::1",
        "fd00::1",
        "fe80::1",
    ]:
        assert ip_filter.access(address) == 1, address
    for address in ["8.8.8.8", "1.1.1.1", "2606:4700::1111"]:
        assert ip_filter.access(address) == 0, address


def test_with_lan_the_public_dht_also_keeps_private_hints_but_never_this_machine():
    hints = [
        ("8.8.8.8", 1),
        ("127.0.0.2", 2),
        ("192.168.1.10", 3),
        ("fd00::1", 7),
        ("169.254.1.1", 8),
        ("224.0.0.1", 10),
    ]
    assert bittorrent.in_scope(hints, PUBLIC, lan=True) == [("8.8.8.8", 1), ("192.168.1.10", 3), ("fd00::1", 7)]
    assert bittorrent.in_scope(hints, ON_THIS_MACHINE, lan=True) == [("127.0.0.2", 2)]


def test_with_lan_the_peer_wire_reaches_private_networks_and_nothing_else_new():
    ip_filter = bittorrent._public_peers_only(lan=True)
    for address in ["10.1.2.3", "172.16.0.1", "192.168.0.1", "fd00::1", "8.8.8.8"]:
        assert ip_filter.access(address) == 0, address
    for address in ["127.0.0.1", "169.254.9.9", "100.64.0.1", "0.0.0.0", "::1", "fe80::1", "224.0.0.1"]:
        assert ip_filter.access(address) == 1, address


def test_only_whoever_decrypted_the_archive_can_acknowledge_it(swarm):
    """The acknowledgement's key comes from the decrypted archive's SHA-256.

    Its item must also name the carry's info-hash.
    """
    network = swarm.network
    info = CarryInfo(os.urandom(20), 1000, os.urandom(32))
    archive_sha256, guessed = os.urandom(32), os.urandom(32)
    assert not acknowledgement.is_acknowledged(info, archive_sha256, network)

    acknowledgement.acknowledge(info, archive_sha256, network)

    assert acknowledgement.is_acknowledged(info, archive_sha256, network)
    assert not acknowledgement.is_acknowledged(info, guessed, network)
    another_carry = CarryInfo(os.urandom(20), 1000, info.sha256)
    assert not acknowledgement.is_acknowledged(another_carry, archive_sha256, network)
