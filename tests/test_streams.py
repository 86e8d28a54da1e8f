"""Running carry's stages at once in threads (cclink.local.streams)."""

from __future__ import annotations

import hashlib
import io
import os

import pytest

from cclink.local import streams

BIG = os.urandom(3 << 20)  # far more than a pipe holds, so the producer blocks on the reader


class ProducerFailed(Exception):
    pass


class ReaderFailed(Exception):
    pass


def write_then_fail(data: bytes):
    def produce(out):
        out.write(data)
        raise ProducerFailed("after writing")

    return produce


def test_the_reader_gets_every_byte_the_producer_writes():
    with streams.produced_by(lambda out: out.write(BIG)) as reader:
        assert reader.read() == BIG


def test_a_pipe_the_system_will_not_widen_still_carries_every_byte(monkeypatch):
    # The kernel refuses F_SETPIPE_SZ past a user's pipe-buffer quota (EPERM).
    def refuse(*_):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(streams.fcntl, "fcntl", refuse)
    with streams.produced_by(lambda out: out.write(BIG)) as reader:
        assert reader.read() == BIG


def test_a_producer_that_fails_after_writing_fails_the_block_even_though_the_reader_saw_a_clean_end():
    with pytest.raises(ProducerFailed):
        with streams.produced_by(write_then_fail(b"partial")) as reader:
            assert reader.read() == b"partial"


def test_a_producer_failure_wins_over_the_readers_complaint_about_the_stream_it_cut_short():
    with pytest.raises(ProducerFailed):
        with streams.produced_by(write_then_fail(b"partial")) as reader:
            if len(reader.read()) < len(BIG):
                raise ReaderFailed("truncated")


def test_a_reader_that_fails_first_stops_a_producer_blocked_on_a_full_pipe():
    with pytest.raises(ReaderFailed):
        with streams.produced_by(lambda out: out.write(BIG * 4)) as reader:
            reader.read(10)
            raise ReaderFailed("gave up")


def test_what_the_reader_leaves_unread_is_drained_so_the_producer_finishes_its_checks():
    with pytest.raises(ProducerFailed):
        with streams.produced_by(write_then_fail(BIG)) as reader:
            reader.read(10)


def test_the_hashing_writer_passes_bytes_on_and_hashes_them():
    out = io.BytesIO()
    writer = streams.HashingWriter(out)
    writer.write(BIG[:1000])
    writer.write(memoryview(BIG)[1000:])
    assert out.getvalue() == BIG
    assert writer.digest() == hashlib.sha256(BIG).digest()


def test_a_watched_stream_keeps_the_first_error_its_reads_and_writes_raised():
    class Full(io.RawIOBase):
        def writable(self):
            return True

        def write(self, data):
            raise OSError(28, "No space left on device")

    watched = streams.Watched(Full())
    for _ in range(2):
        with pytest.raises(OSError):
            watched.write(b"x")
    assert watched.error is not None and watched.error.errno == 28


def test_a_watched_stream_passes_reads_through():
    watched = streams.Watched(io.BytesIO(BIG))
    buffer = bytearray(10)
    assert watched.readinto(buffer) == 10 and bytes(buffer) == BIG[:10]
    assert watched.read() == BIG[10:]
    assert watched.error is None


# --- reading ahead in a thread ---------------------------------------------------------------


class FailingSource:
    """A source that hands out its bytes, then fails instead of ending."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def read(self, size: int) -> bytes:
        chunk = self._data.read(size)
        if not chunk:
            raise ProducerFailed("the source broke")
        return chunk


def test_reading_ahead_returns_every_byte_in_order_whatever_the_read_sizes():
    with streams.read_ahead(io.BytesIO(BIG), chunk=100_000) as reader:
        parts = [reader.read(size) for size in (1, 511, 70_000, 3_000_000)]
        parts.append(reader.read())
    assert b"".join(parts) == BIG
    assert reader.read(10) == b""


def test_a_stream_read_ahead_seeks_forwards_and_tells_where_it_is():
    with streams.read_ahead(io.BytesIO(BIG), chunk=65_536) as reader:
        reader.read(10)
        reader.seek(2_000_000)
        assert reader.tell() == 2_000_000
        assert reader.read(5) == BIG[2_000_000:2_000_005]
        with pytest.raises(OSError):
            reader.seek(0)  # before what is buffered: only the source could go back


def test_a_source_error_is_raised_by_the_read_that_reaches_it_and_every_read_after():
    with streams.read_ahead(FailingSource(b"x" * 1000), chunk=300) as reader:
        assert reader.read(1000) == b"x" * 1000
        with pytest.raises(ProducerFailed):
            reader.read(1)
        with pytest.raises(ProducerFailed):
            reader.read(1)


def test_leaving_early_stops_a_reader_thread_that_waits_for_room():
    endless = FailingSource(b"")
    endless.read = lambda size: b"y" * size  # never ends, so the thread fills the queue and waits
    with streams.read_ahead(endless, chunk=1000, depth=2) as reader:
        assert reader.read(10) == b"y" * 10
    # read_ahead returned: its thread ended (it is joined), or this test would hang
