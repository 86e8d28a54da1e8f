"""Carrying the session itself (`--carry`): pack, encrypt, seed; fetch and check (docs/wire.md §9).

The publisher packs the session into one archive, age-encrypts it to the
record's recipient and seeds the ciphertext over BitTorrent until the
recipient acknowledges it (acknowledgement.py); the record's encrypted
payload says how to find it (payload.CarryInfo). The picker downloads it
into the cache (so an interrupted download resumes) and checks the SHA-256
the signed record promised before anything decrypts it; placing.py then
decrypts it and puts the session where Claude Code looks for it, within the
limits set here and with run_age, which encrypts here.
"""

from __future__ import annotations

import errno
import hashlib
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import pyrage

from cclink import text
from cclink.errors import IntegrityError, NetworkError, NoSpace, SessionError, TransferError
from cclink.flows.acknowledgement import AckWatch
from cclink.local import files, streams
from cclink.net import bittorrent, endpoints
from cclink.wire import agecrypt, archive
from cclink.wire.payload import CarryInfo

# Claude Code's largest transcripts run to hundreds of MB. A carried session
# that unpacks to more is refused, even from a publisher whose key checks out,
# and unpacking never fills the disk.
MAX_UNPACKED = 16 << 30
KEEP_FREE = 1 << 30


def outgoing_dir() -> Path:
    return files.cache_dir() / "outgoing"


def incoming_dir(info_hash: bytes) -> Path:
    """Where a download is kept between attempts, so an interrupted one resumes."""
    return files.cache_dir() / "incoming" / info_hash.hex()


# --- the publisher's side ------------------------------------------------------------


class Offering:
    """A file being seeded, and the look-out for the recipient's acknowledgement: what a seeding loop polls.

    The publisher's Outgoing holds one, and so does each transfer the agent offers (offer_file).
    """

    def __init__(self, seeder: bittorrent.Seeder, archive_sha256: bytes, network: endpoints.Network) -> None:
        self.seeder = seeder
        self.network = network
        self.archive_sha256 = archive_sha256
        self._ack_watch: AckWatch | None = None
        self._seemingly_finished = 0

    @property
    def size(self) -> int:
        return self.seeder.size

    @property
    def port(self) -> int:
        return self.seeder.port

    def poll(self, wait: float) -> bittorrent.SeedStatus:
        """Serve peers for up to `wait` seconds.

        A peer that looks finished makes the acknowledgement be looked for soon.
        """
        if self._ack_watch is None:  # not before the first poll: a carry handed to the agent never looks
            info = CarryInfo(self.seeder.info_hash, self.seeder.size, bytes(32))
            self._ack_watch = AckWatch(info, self.archive_sha256, self.network)
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


def offer_file(
    path: Path, promised: CarryInfo, archive_sha256: bytes, network: endpoints.Network, port: int | None = None
) -> Offering:
    """Seed an encrypted archive made earlier (the agent's transfers), on port if it is free.

    IntegrityError when the file does not make the torrent promised: the
    record tells the picker that info-hash and size, and nothing else is worth offering.
    """
    seeder = bittorrent.Seeder(network, port)
    try:
        seeder.seed(path)
        if seeder.info_hash != promised.info_hash or seeder.size != promised.size:
            raise IntegrityError("the carried file is not the one its handoff promises")
    except BaseException:
        seeder.close()
        raise
    return Offering(seeder, archive_sha256, network)


class Outgoing:
    """A session packed, encrypted and being seeded. Use as a context manager; closing deletes the files."""

    def __init__(
        self,
        session_file: Path,
        recipients: agecrypt.Recipient | Sequence[agecrypt.Recipient],
        network: endpoints.Network,
    ) -> None:
        # One recipient, or several (the publisher's key and its paired devices).
        recipient_list = list(recipients) if isinstance(recipients, Sequence) else [recipients]
        self.workdir = files.make_private_temp_dir(outgoing_dir())
        self.network = network
        # libtorrent's session starts while the session is packed: it holds
        # the GIL for its 30 ms, but zstd's compressing workers do not need it.
        starting = _SeederStarting(network)
        try:
            self.path, self.sha256, archive_sha256 = _pack_and_encrypt(session_file, recipient_list, self.workdir)
            self.seeder = starting.result()
            self.seeder.seed(self.path)
        except BaseException:
            starting.discard()
            shutil.rmtree(self.workdir, ignore_errors=True)
            raise
        self.offering = Offering(self.seeder, archive_sha256, network)
        self._port: int | None = None  # while stopped: the port the seeder had

    @property
    def archive_sha256(self) -> bytes:
        """The SHA-256 of the archive before encryption: the acknowledgement key comes from it."""
        return self.offering.archive_sha256

    def info(self, with_hints: bool = True) -> CarryInfo:
        hints = tuple(endpoints.format_endpoint(e) for e in self.seeder.listen_endpoints()) if with_hints else ()
        return CarryInfo(self.seeder.info_hash, self.seeder.size, self.sha256, hints[: CarryInfo.MAX_HINTS])

    @property
    def port(self) -> int:
        """The port the record's address hints name (the seeder's, while it is open)."""
        return self._port if self._port is not None else self.seeder.port

    def stop_seeding(self) -> None:
        """Close the seeder and so free its port, for the agent to take over; the file stays."""
        self._port = self.seeder.port
        self.offering.close()

    def seed_again(self) -> None:
        """After stop_seeding, offer the file from here again: on the same port if it is still free."""
        seeder = bittorrent.Seeder(self.network, self._port)
        try:
            seeder.seed(self.path)  # hashes the file again: the same torrent, since nothing in it changed
        except BaseException:
            seeder.close()
            raise
        self.seeder, self._port = seeder, None
        self.offering = Offering(seeder, self.offering.archive_sha256, self.network)

    def poll(self, wait: float) -> bittorrent.SeedStatus:
        return self.offering.poll(wait)

    @property
    def acknowledged(self) -> bool:
        return self.offering.acknowledged

    def close(self) -> None:
        self.offering.close()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Outgoing:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class _SeederStarting:
    """A bittorrent.Seeder starting in a thread while the caller packs the file it will seed."""

    def __init__(self, network: endpoints.Network) -> None:
        self._seeder: bittorrent.Seeder | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._start, args=(network,), name="cclink-seeder", daemon=True)
        self._thread.start()

    def _start(self, network: endpoints.Network) -> None:
        try:
            self._seeder = bittorrent.Seeder(network)
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


def _pack_and_encrypt(
    session_file: Path, recipients: list[agecrypt.Recipient], workdir: Path
) -> tuple[Path, bytes, bytes]:
    """The encrypted archive of a session, written in workdir, its SHA-256, and the archive's (before encryption).

    Packing and encryption overlap; the plaintext archive exists only in the pipe between them.
    """
    try:
        ciphertext = workdir / bittorrent.FILE_NAME
        return ciphertext, *_write_encrypted_archive(session_file, recipients, ciphertext)
    except OSError as error:
        if error.errno == errno.ENOSPC:
            raise NoSpace(f"the disk under {outgoing_dir()} filled up while packing the session") from None
        raise SessionError(f"cannot pack the session: {error.strerror or error}") from None


def _write_encrypted_archive(
    session_file: Path, recipients: list[agecrypt.Recipient], ciphertext: Path
) -> tuple[bytes, bytes]:
    """Write the encrypted archive to ciphertext; return its SHA-256 and the archive's."""
    archived: list[streams.HashingWriter] = []

    def pack(out: BinaryIO) -> None:
        archived.append(streams.HashingWriter(out))
        archive.pack(session_file, archived[0])  # type: ignore[arg-type]  # it only writes and flushes

    # Through a large buffer: pyrage writes in small pieces.
    with files.create_private(ciphertext, buffering=archive.CHUNK) as out:
        hashing = streams.HashingWriter(out)
        with streams.produced_by(pack) as packed:
            run_age(pyrage.encrypt_io, packed, hashing, recipients)
    return hashing.digest(), archived[0].digest()


# --- age over streams (encrypting here, decrypting in placing.py) ---------------------


def run_age(run: Callable, source: BinaryIO, out: streams.Writer, keys: list) -> None:
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


# --- fetching ------------------------------------------------------------------------


@dataclass(frozen=True)
class Progress:
    done: int
    total: int
    rate: int  # bytes per second
    peers: int


@contextmanager
def fetched(
    carry: CarryInfo,
    network: endpoints.Network,
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
    with bittorrent.Fetcher(carry.info_hash, carry.size, directory, network, hints, lan=lan) as fetcher:
        last_done, last_change = -1, time.monotonic()
        while True:
            status = fetcher.poll(0.2)
            on_progress(Progress(status.done, carry.size, status.download_rate, status.peers))
            if status.finished:
                break
            if status.done != last_done:
                last_done, last_change = status.done, time.monotonic()
            elif time.monotonic() - last_change > stall_timeout:
                # On a private network its addresses are in scope already; --lan adds them on the internet.
                suggest_lan = not lan and network.scope is endpoints.Scope.PUBLIC
                raise TransferError(_stalled_message(status, stall_timeout, suggest_lan=suggest_lan))
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
            f"(its agent, or `cclink --carry --foreground`, offers it until the first pickup){lan}; "
            "run pickup again to resume"
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


def forget_download(carry: CarryInfo) -> None:
    shutil.rmtree(incoming_dir(carry.info_hash), ignore_errors=True)
