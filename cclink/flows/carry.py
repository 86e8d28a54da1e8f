"""Carrying the session itself (`--carry`): pack, encrypt, seed; fetch, check, decrypt, place (docs/wire.md §9, §10).

The publisher packs the session into one archive, age-encrypts it to the
record's recipient and seeds the ciphertext over BitTorrent; the record's
encrypted payload says how to find it (payload.CarryInfo). The picker
downloads it into the cache (so an interrupted download resumes), checks the
SHA-256 the signed record promised before decrypting anything, and puts the
session where Claude Code looks for it, with its paths rewritten for this
machine. Nothing is written into ~/.claude until everything checked out.
"""

from __future__ import annotations

import datetime
import errno
import hashlib
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO

import pyrage

from cclink import text
from cclink.errors import (
    CannotDecrypt,
    CclinkError,
    IntegrityError,
    MalformedArchive,
    NetworkError,
    NoSpace,
    SessionError,
    TransferError,
    WireError,
)
from cclink.local import claude, files, streams
from cclink.net import bittorrent, dht_client, endpoints, krpc
from cclink.wire import agecrypt, archive
from cclink.wire.keys import Identity, PublicKey
from cclink.wire.payload import CarryInfo

# Claude Code's largest transcripts run to hundreds of MB. A carried session
# that unpacks to more is refused, even from a publisher whose key checks out,
# and unpacking never fills the disk.
MAX_UNPACKED = 16 << 30
KEEP_FREE = 1 << 30

# The recipient's acknowledgement (see payload.CarryInfo): how long the picker
# may spend putting it, and how often the publisher looks for it. After a peer
# looks finished it looks every ACK_SOON_EVERY seconds for ACK_SOON_FOR;
# otherwise, for a picker the seeder never saw finish (it resumed an
# interrupted download, say), every ACK_SLOW_EVERY. At most one lookup at a time.
ACK_KEY_LABEL = b"cclink carry ack\0"
ACK_PUT_TIMEOUT = 15.0
ACK_GET_TIMEOUT = 10.0
ACK_SOON_EVERY = 2.0
ACK_SOON_FOR = 60.0
ACK_SLOW_EVERY = 60.0


def outgoing_dir() -> Path:
    return files.cache_dir() / "outgoing"


def incoming_dir(info_hash: bytes) -> Path:
    """Where a download is kept between attempts, so an interrupted one resumes."""
    return files.cache_dir() / "incoming" / info_hash.hex()


# --- the publisher's side ------------------------------------------------------------


class Outgoing:
    """A session packed, encrypted and being seeded. Use as a context manager; closing deletes the files."""

    def __init__(
        self, session_file: Path, recipient: agecrypt.Recipient, bootstrap: Sequence[endpoints.Endpoint]
    ) -> None:
        self.workdir = _private_temp_dir(outgoing_dir())
        self.bootstrap = list(bootstrap)
        self._ack_watch: AckWatch | None = None
        self._seemingly_finished = 0
        # libtorrent's session starts while the session is packed: it holds
        # the GIL for its 30 ms, but zstd's compressing workers do not need it.
        starting = _SeederStarting(bootstrap)
        try:
            self.path, self.sha256, self._archive_sha256 = _pack_and_encrypt(session_file, recipient, self.workdir)
            self.seeder = starting.result()
            self.seeder.seed(self.path)
        except BaseException:
            starting.discard()
            shutil.rmtree(self.workdir, ignore_errors=True)
            raise

    def info(self, with_hints: bool = True) -> CarryInfo:
        hints = tuple(bittorrent.format_endpoint(e) for e in self.seeder.listen_endpoints()) if with_hints else ()
        return CarryInfo(self.seeder.info_hash, self.seeder.size, self.sha256, hints[: CarryInfo.MAX_HINTS])

    def poll(self, wait: float) -> bittorrent.SeedStatus:
        """Serve peers for up to `wait` seconds.

        A peer that looks finished makes the acknowledgement be looked for soon.
        """
        if self._ack_watch is None:
            self._ack_watch = AckWatch(self.info(with_hints=False), self._archive_sha256, self.bootstrap)
        status = self.seeder.poll(wait)
        if status.seemingly_finished > self._seemingly_finished:
            self._seemingly_finished = status.seemingly_finished
            self._ack_watch.nudge()
        return status

    @property
    def acknowledged(self) -> bool:
        """Whether the recipient proved it has the whole session (see payload.CarryInfo)."""
        return self._ack_watch is not None and self._ack_watch.seen

    def close(self) -> None:
        if self._ack_watch is not None:
            self._ack_watch.close()
        self.seeder.close()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Outgoing:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class _SeederStarting:
    """A bittorrent.Seeder starting in a thread while the caller packs the file it will seed."""

    def __init__(self, bootstrap: Sequence[endpoints.Endpoint]) -> None:
        self._seeder: bittorrent.Seeder | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._start, args=(bootstrap,), name="cclink-seeder", daemon=True)
        self._thread.start()

    def _start(self, bootstrap: Sequence[endpoints.Endpoint]) -> None:
        try:
            self._seeder = bittorrent.Seeder(bootstrap)
        except BaseException as error:  # noqa: BLE001 - not swallowed: result() raises it in the caller's thread
            self._error = error

    def result(self) -> bittorrent.Seeder:
        self._thread.join()
        if self._seeder is None:
            raise self._error or NetworkError("the torrent session did not start")
        return self._seeder

    def discard(self) -> None:
        self._thread.join()
        if self._seeder is not None:
            self._seeder.close()


def _pack_and_encrypt(session_file: Path, recipient: agecrypt.Recipient, workdir: Path) -> tuple[Path, bytes, bytes]:
    """The encrypted archive of a session, written in workdir, its SHA-256, and the archive's (before encryption).

    Packing and encryption overlap; the plaintext archive exists only in the pipe between them.
    """
    try:
        ciphertext = workdir / bittorrent.FILE_NAME
        return ciphertext, *_write_encrypted_archive(session_file, recipient, ciphertext)
    except OSError as error:
        if error.errno == errno.ENOSPC:
            raise NoSpace(f"the disk under {outgoing_dir()} filled up while packing the session") from None
        raise SessionError(f"cannot pack the session: {error.strerror or error}") from None


def _write_encrypted_archive(
    session_file: Path, recipient: agecrypt.Recipient, ciphertext: Path
) -> tuple[bytes, bytes]:
    """Write the encrypted archive to ciphertext; return its SHA-256 and the archive's."""
    archived: list[streams.HashingWriter] = []

    def pack(out: BinaryIO) -> None:
        archived.append(streams.HashingWriter(out))
        archive.pack(session_file, archived[0])  # type: ignore[arg-type]  # it only writes and flushes

    with _create_private(ciphertext) as out:
        hashing = streams.HashingWriter(out)
        with streams.produced_by(pack) as packed:
            _run_age(pyrage.encrypt_io, packed, hashing, [recipient])
    return hashing.digest(), archived[0].digest()


def _run_age(run: Callable, source: BinaryIO, out: streams.Writer, keys: list) -> None:
    """pyrage's encrypt_io or decrypt_io, but a failure of source or out (a full disk, Ctrl-C) is raised as itself.

    pyrage reports any exception of the streams it uses as its own error,
    with only the original's name in its message.
    """
    watched_source, watched_out = streams.Watched(source), streams.Watched(out)
    try:
        run(watched_source, watched_out, keys)
    except (pyrage.EncryptError, pyrage.DecryptError) as failure:
        error = watched_source.error or watched_out.error
        if error is not None:
            raise error from None
        # A Ctrl-C that arrives while pyrage runs is raised at the next line of
        # Python, which may be the first line of a callback, before Watched
        # can see it; pyrage then keeps only its name.
        if str(failure).startswith(("KeyboardInterrupt", "Terminated")):  # Terminated: the CLI's SIGTERM and SIGHUP
            raise KeyboardInterrupt from None
        raise


# --- the recipient's acknowledgement ---------------------------------------------------------


def ack_identity(archive_sha256: bytes) -> Identity:
    """The acknowledgement key.

    Its Ed25519 seed is SHA-256 of a label and the decrypted archive's SHA-256 (payload.CarryInfo).
    """
    return Identity(hashlib.sha256(ACK_KEY_LABEL + archive_sha256).digest())


def _ack_signable(seq: int, value: bytes) -> bytes:
    """What a BEP 44 mutable item's signature covers (no salt)."""
    return b"3:seqi%de1:v%d:" % (seq, len(value)) + value


def _ack_verifier(carry: CarryInfo, public_key: PublicKey) -> dht_client.Verify:
    """An item under the ack key counts when its signature holds and it names this carry's info-hash."""

    def verifies(item: krpc.Item) -> bool:
        if item.value != carry.info_hash:
            return False
        try:
            public_key.verify(_ack_signable(item.seq, item.value), item.signature)
        except WireError:
            return False
        return True

    return verifies


def acknowledge(carry: CarryInfo, archive_sha256: bytes, bootstrap: Sequence[endpoints.Endpoint]) -> None:
    """Tell the publisher that the whole session arrived and decrypted: put the acknowledgement item.

    NetworkError when no node stored it.
    """
    identity = ack_identity(archive_sha256)
    dht_client.put(
        bootstrap,
        identity.public_key.raw,
        carry.info_hash,
        lambda seq: identity.sign(_ack_signable(seq, carry.info_hash)),
        _ack_verifier(carry, identity.public_key),
        timeout=ACK_PUT_TIMEOUT,
    )


def is_acknowledged(carry: CarryInfo, archive_sha256: bytes, bootstrap: Sequence[endpoints.Endpoint]) -> bool:
    """Whether the DHT holds the recipient's acknowledgement; NetworkError when no node answered."""
    public_key = ack_identity(archive_sha256).public_key
    return (
        dht_client.get(bootstrap, public_key.raw, _ack_verifier(carry, public_key), timeout=ACK_GET_TIMEOUT) is not None
    )


class Acknowledging:
    """acknowledge() in a thread, so that the session is placed meanwhile; wait() before leaving the process."""

    def __init__(self, carry: CarryInfo, archive_sha256: bytes, bootstrap: Sequence[endpoints.Endpoint]) -> None:
        self._done = False
        self._thread = threading.Thread(
            target=self._put, args=(carry, archive_sha256, list(bootstrap)), name="cclink-ack", daemon=True
        )
        self._thread.start()

    def _put(self, carry: CarryInfo, archive_sha256: bytes, bootstrap: list[endpoints.Endpoint]) -> None:
        try:
            acknowledge(carry, archive_sha256, bootstrap)
            self._done = True
        except (CclinkError, OSError):
            pass  # the publisher then keeps offering the session until it gives up; wait() says so

    def wait(self) -> bool:
        """Whether the acknowledgement was stored (waits for the put, which is bounded by ACK_PUT_TIMEOUT)."""
        self._thread.join(ACK_PUT_TIMEOUT + 1)
        return self._done


class AckWatch:
    """The publisher's look-out for the recipient's acknowledgement.

    In a thread, so that seeding never waits for the DHT.
    """

    def __init__(self, carry: CarryInfo, archive_sha256: bytes, bootstrap: Sequence[endpoints.Endpoint]) -> None:
        self.seen = False
        self._carry = carry
        self._archive_sha256 = archive_sha256
        self._bootstrap = list(bootstrap)
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
        look_at = time.monotonic() + ACK_SLOW_EVERY
        often_until = float("-inf")
        while not self._stopped:
            self._wake.wait(max(0.0, look_at - time.monotonic()))
            self._wake.clear()
            if self._stopped:
                return
            if self._nudged:
                self._nudged = False
                often_until = time.monotonic() + ACK_SOON_FOR
                # However often peers claim to be finished, one lookup per ACK_SOON_EVERY.
                look_at = min(look_at, max(time.monotonic(), looked_at + ACK_SOON_EVERY))
            if time.monotonic() < look_at:
                continue
            if self._look():
                self.seen = True
                return
            looked_at = time.monotonic()
            look_at = looked_at + (ACK_SOON_EVERY if looked_at < often_until else ACK_SLOW_EVERY)

    def _look(self) -> bool:
        try:
            return is_acknowledged(self._carry, self._archive_sha256, self._bootstrap)
        except (CclinkError, OSError):
            return False  # the DHT did not answer this time


# --- the picker's side ---------------------------------------------------------------


@dataclass(frozen=True)
class Progress:
    done: int
    total: int
    rate: int  # bytes per second
    peers: int


@contextmanager
def fetched(
    carry: CarryInfo,
    bootstrap: Sequence[endpoints.Endpoint],
    *,
    stall_timeout: float,
    on_progress: Callable[[Progress], None] = lambda _: None,
    lan: bool = False,
) -> Iterator[Path]:
    """Download the carried ciphertext into the cache and yield its path.

    With lan, also from the publisher's private address. TransferError when
    no data came for stall_timeout seconds. The connections stay up for the
    block, so that the publisher learns of the finished download (see
    bittorrent.Fetcher.part_ways) while the caller already checks and places
    the session.
    """
    check_room_to_fetch(carry)
    directory = incoming_dir(carry.info_hash)
    files.make_private_dirs(directory)
    hints = [
        e for e in (bittorrent.parse_endpoint(h) for h in carry.hints) if e is not None
    ]  # bittorrent.Fetcher keeps those in scope
    with bittorrent.Fetcher(carry.info_hash, carry.size, directory, bootstrap, hints, lan=lan) as fetcher:
        last_done, last_change = -1, time.monotonic()
        while True:
            status = fetcher.poll(0.2)
            on_progress(Progress(status.done, carry.size, status.download_rate, status.peers))
            if status.finished:
                break
            if status.done != last_done:
                last_done, last_change = status.done, time.monotonic()
            elif time.monotonic() - last_change > stall_timeout:
                raise TransferError(
                    _stalled_message(
                        status, stall_timeout, suggest_lan=not lan and not endpoints.is_private_swarm(bootstrap)
                    )
                )
        fetcher.flush()
        yield fetcher.path
        fetcher.part_ways()


def check_room_to_fetch(carry: CarryInfo) -> None:
    """NoSpace, before anything is downloaded or created, when the declared size is past the cap or the free space."""
    size = text.format_bytes(carry.size)
    if carry.size > MAX_UNPACKED:
        # The ciphertext is a little larger than the archive it holds, which unpacks to more still.
        raise NoSpace(
            f"the carried session is {size} encrypted, "
            f"more than the {text.format_bytes(MAX_UNPACKED)} cclink accepts; nothing was downloaded"
        )
    directory = incoming_dir(carry.info_hash)
    needed = carry.size - _allocated(directory / bittorrent.FILE_NAME) + KEEP_FREE
    if shutil.disk_usage(_nearest_existing(directory)).free < needed:
        raise NoSpace(
            f"there is not enough disk space under {files.cache_dir()} to download the carried session ({size}; "
            f"cclink leaves {text.format_bytes(KEEP_FREE)} free); nothing was downloaded"
        )


def _allocated(path: Path) -> int:
    """The bytes a partial download already occupies on disk (0 when there is none)."""
    try:
        return path.stat().st_blocks * 512
    except OSError:
        return 0


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _stalled_message(status: bittorrent.FetchStatus, stall_timeout: float, *, suggest_lan: bool) -> str:
    waited = f"{stall_timeout:.0f} seconds"
    if not status.has_metadata and status.peers == 0:
        lan = "; if both machines are on one network, run pickup again with --lan" if suggest_lan else ""
        return (
            f"the publisher could not be reached within {waited}; it may have stopped seeding "
            f"(it runs `cclink --carry` in the foreground until the first pickup){lan}; run pickup again to resume"
        )
    return f"no data arrived from the publisher for {waited}; run pickup again to resume where it stopped"


def sha256_of(path: Path) -> bytes:
    digest = hashlib.sha256()
    buffer = memoryview(bytearray(archive.CHUNK))
    with open(path, "rb", buffering=0) as f:
        while size := f.readinto(buffer):
            digest.update(buffer[:size])
    return digest.digest()


def check_integrity(path: Path, carry: CarryInfo) -> None:
    """The downloaded file must be exactly what the signed record promised; else delete it."""
    if path.stat().st_size != carry.size or sha256_of(path) != carry.sha256:
        shutil.rmtree(path.parent, ignore_errors=True)
        raise IntegrityError(
            "the carried session's SHA-256 does not match the signed record; it was damaged or tampered with, "
            "and nothing was written"
        )


@dataclass(frozen=True)
class Placed:
    session_file: Path
    backups: list[Path]


def local_copy(session_id: str, local_project: Path) -> Path | None:
    """The session's file (else its directory) where place() would put a carried copy, if one is there."""
    destination = _destination(local_project)
    return next(
        (path for path in (destination / f"{session_id}.jsonl", destination / session_id) if path.exists()), None
    )


def _destination(local_project: Path) -> Path:
    return claude.projects_dir() / claude.project_dir_name(str(local_project))


def place(
    ciphertext: Path,
    identity: agecrypt.Identity,
    session_id: str,
    *,
    publisher_project: str,
    local_project: Path,
    on_decrypted: Callable[[bytes], None] = lambda archive_sha256: None,
) -> Placed:
    """Decrypt and unpack the session into ~/.claude/projects/<dir of local_project>/, paths rewritten.

    on_decrypted gets the decrypted archive's SHA-256 (see acknowledge) while
    it is still unpacked. A differing local copy gives way and is kept beside
    it as a timestamped backup: the caller asks first (see local_copy).
    """
    destination = _destination(local_project)
    try:
        files.make_private_dirs(destination)
        staging = _private_temp_dir(destination, prefix=".cclink-incoming-")
    except OSError as error:
        raise _placing_failed(error) from None
    try:
        unpacked = _decrypt_and_unpack(
            ciphertext, identity, session_id, staging, publisher_project, str(local_project), on_decrypted
        )
        return _move_into_place(unpacked, destination)
    except OSError as error:
        raise _placing_failed(error) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _placing_failed(error: OSError) -> SessionError:
    """A local disk's failure while placing, as one sentence (what the archive holds is checked before it gets here)."""
    if error.errno == errno.ENOSPC:
        return NoSpace(f"the disk under {claude.projects_dir()} filled up while placing the carried session")
    return SessionError(f"cannot place the carried session under {claude.projects_dir()}: {error.strerror or error}")


def _decrypt_and_unpack(
    ciphertext: Path,
    identity: agecrypt.Identity,
    session_id: str,
    staging: Path,
    old: str,
    new: str,
    on_decrypted: Callable[[bytes], None],
) -> archive.Unpacked:
    content = staging / "content"
    content.mkdir(mode=archive.DIR_MODE)
    rewrite = _cwd_rewriter(old, new)
    limit, too_much = _room_to_unpack(content, ciphertext.stat().st_size)
    # Decrypted first, into the same private directory as the session it
    # holds: pyrage keeps the GIL while it works, so decrypting in a thread
    # beside the unpacking slowed both (200 MB: 0.6 s as one pipeline, 0.45 s
    # one after the other, with decompression in a thread of its own).
    packed = staging / "session.tar.zst"
    with open(ciphertext, "rb", buffering=archive.CHUNK) as source, _create_private(packed) as out:
        hashing = streams.HashingWriter(out)
        _decrypt(source, hashing, identity)
    on_decrypted(hashing.digest())
    try:
        with open(packed, "rb") as source:
            return archive.unpack(source, session_id, content, rewrite, limit=limit)
    except NoSpace:
        raise NoSpace(too_much) from None
    finally:
        packed.unlink()


def _decrypt(source: BinaryIO, out: streams.Writer, identity: agecrypt.Identity) -> None:
    # The publisher chose these bytes (they match its signed record), whatever
    # key opens them: a header rage would take hours to parse is theirs to fix.
    if not agecrypt.has_small_header(source):
        raise MalformedArchive(
            f"the carried session is not an age file with a header of at most {agecrypt.MAX_HEADER_SIZE} bytes"
        )
    try:
        _run_age(pyrage.decrypt_io, source, out, [identity])
    except pyrage.DecryptError:
        raise CannotDecrypt("the carried session does not decrypt with the handoff's key; it may be damaged") from None


def _room_to_unpack(directory: Path, archive_size: int) -> tuple[int, str]:
    """How many bytes a session may unpack to in directory, beside its archive, and what to say when it wants more."""
    free = shutil.disk_usage(directory).free - KEEP_FREE - archive_size
    if free < MAX_UNPACKED:
        return max(0, free), (
            f"there is not enough disk space for the carried session under {claude.projects_dir()} "
            f"(cclink leaves {text.format_bytes(KEEP_FREE)} free)"
        )
    return (
        MAX_UNPACKED,
        f"the carried session unpacks to more than {text.format_bytes(MAX_UNPACKED)}, the most cclink accepts",
    )


def _cwd_rewriter(old: str, new: str) -> Callable[[IO[bytes], BinaryIO], None]:
    if not old or old == new:
        return lambda source, out: shutil.copyfileobj(source, out, archive.CHUNK)
    return lambda source, out: archive.replace_cwd(source, out, old, new)


def _move_into_place(unpacked: archive.Unpacked, destination: Path) -> Placed:
    target_file = destination / unpacked.session_file.name
    target_dir = destination / unpacked.session_id
    pairs = [(unpacked.session_file, target_file)]
    if unpacked.directory is not None:
        pairs.append((unpacked.directory, target_dir))
    differing = [target for source, target in pairs if target.exists() and not _same_content(source, target)]
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    backups = []
    for source, target in pairs:
        if target in differing:
            backup = target.with_name(f"{target.name}.backup-{stamp}")
            os.replace(target, backup)
            backups.append(backup)
        elif target.exists():
            continue  # identical already
        os.replace(source, target)
    return Placed(target_file, backups)


def _same_content(a: Path, b: Path) -> bool:
    if a.is_dir() != b.is_dir():
        return False
    if a.is_file():
        return a.stat().st_size == b.stat().st_size and sha256_of(a) == sha256_of(b)
    names_a = sorted(p.relative_to(a) for p in a.rglob("*"))
    names_b = sorted(p.relative_to(b) for p in b.rglob("*"))
    return names_a == names_b and all(_same_content(a / n, b / n) for n in names_a if (a / n).is_file())


def forget_download(carry: CarryInfo) -> None:
    shutil.rmtree(incoming_dir(carry.info_hash), ignore_errors=True)


# --- private files and directories ------------------------------------------------------


def _private_temp_dir(parent: Path, prefix: str = "") -> Path:
    files.make_private_dirs(parent)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=parent))  # mkdtemp makes it 0700


def _create_private(path: Path) -> BinaryIO:
    """A new private file, written through a large buffer (pyrage writes in small pieces)."""
    return files.create_private(path, buffering=archive.CHUNK)
