"""Running the stages of `--carry` at once, in threads.

Packing, compressing and encrypting a session (and, on the other side,
decompressing and unpacking it) are stages that each read one stream and
write another. Run one stage in a thread and the next reads what it makes:
no intermediate file, and the stages overlap where they release the GIL, as
zstd does (packing and encrypting 200 MB: 0.98 -> 0.65 s; decompressing
ahead of the unpacking of 200 MB: about 0.1 s saved).
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import os
import queue
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, BinaryIO, Protocol

DRAIN_CHUNK = 1 << 20
# A pipe holds 64 KiB by default, and a reader with the default 8 KiB buffer
# makes pyrage read it 8 KiB at a time. Both widened: packing and encrypting
# 200 MB took 8 % less time and CPU (measured, interleaved runs).
PIPE_SIZE = 1 << 20


class Writer(Protocol):
    """What a stage writes to: a file, a pipe, or a HashingWriter in front of one."""

    def write(self, data: bytes, /) -> int: ...

    def flush(self) -> None: ...


@contextmanager
def produced_by(produce: Callable[[BinaryIO], object]) -> Iterator[BinaryIO]:
    """Run produce(writer) in a thread; yield a reader of what it writes.

    When the with-block ends, the rest of the stream is read and dropped, so
    the producer always finishes its work and its checks. A failure of the
    producer wins over one of the reader's: a reader that meets a stream cut
    short would only report the symptom. If the block fails first, the
    producer's next write fails (the pipe is closed) and the block's error
    stands; so does a KeyboardInterrupt.
    """
    read_fd, write_fd = os.pipe()
    _widen(write_fd)
    failure: list[BaseException] = []

    def run() -> None:
        try:
            with open(write_fd, "wb") as writer:
                produce(writer)
        except BaseException as error:  # noqa: BLE001 - not swallowed: raised again in the reader's thread below
            failure.append(error)

    producer = threading.Thread(target=run, name="cclink-stream", daemon=True)
    reader = open(read_fd, "rb", buffering=PIPE_SIZE)  # noqa: SIM115 - closed in the finally below, before the join
    producer.start()
    try:
        try:
            yield reader
            while not reader.closed and reader.read(DRAIN_CHUNK):
                pass
        finally:
            reader.close()  # a producer still writing gets BrokenPipeError and stops
            producer.join()
    except Exception:
        if failure and not isinstance(failure[0], BrokenPipeError):
            raise failure[0] from None
        raise
    if failure:
        raise failure[0]


def _widen(pipe_fd: int) -> None:
    """Let the pipe hold PIPE_SIZE bytes where the system allows it (Linux); else leave it."""
    set_size = getattr(fcntl, "F_SETPIPE_SZ", None)
    if set_size is not None:
        try:
            fcntl.fcntl(pipe_fd, set_size, PIPE_SIZE)
        except OSError:
            pass  # refused (pipe-max-size, or the user's quota of pipe buffers): slower, but it works


@contextmanager
def read_ahead(source: BinaryIO, chunk: int, depth: int = 4) -> Iterator[BinaryIO]:
    """Read source in a thread, up to depth chunks ahead of the reader this yields.

    For a source that releases the GIL while it works (zstd's decompressing
    reader): the reader's own work overlaps it. The reader yielded reads
    sequentially, and seeks forwards only. An error of the source is raised
    by the read that would have returned its bytes.
    """
    ahead = _ReadAhead(source, chunk, depth)
    try:
        yield io.BufferedReader(ahead, 1 << 16)  # large reads bypass this buffer
    finally:
        ahead.stop()


class _ReadAhead(io.RawIOBase):
    _END = object()

    def __init__(self, source: BinaryIO, chunk: int, depth: int) -> None:
        super().__init__()
        self._queue: queue.Queue = queue.Queue(depth)
        self._stopping = threading.Event()
        self._current = memoryview(b"")
        self._position = 0
        self._worker = threading.Thread(target=self._fill, args=(source, chunk), name="cclink-read-ahead", daemon=True)
        self._worker.start()

    def _fill(self, source: BinaryIO, chunk: int) -> None:
        try:
            while not self._stopping.is_set():
                data = source.read(chunk)
                self._put(data if data else self._END)
                if not data:
                    return
        except BaseException as error:  # noqa: BLE001 - not swallowed: the reader's next read raises it
            self._put(error)

    def _put(self, item: object) -> None:
        while not self._stopping.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def stop(self) -> None:
        """Let the worker go (it may be waiting for room) and wait for it."""
        self._stopping.set()
        self._worker.join()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self._current:
            item = self._queue.get()
            if item is self._END:
                self._queue.put(item)  # every later read sees the end too
                return 0
            if isinstance(item, BaseException):
                self._queue.put(item)
                raise item
            self._current = memoryview(item)
        size = min(len(buffer), len(self._current))
        buffer[:size] = self._current[:size]
        self._current = self._current[size:]
        self._position += size
        return size

    def seekable(self) -> bool:
        return True  # forwards only, which is all tarfile asks of an archive read in order

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        target = offset if whence == os.SEEK_SET else self._position + offset if whence == os.SEEK_CUR else -1
        if target < self._position:
            raise OSError("a stream read ahead cannot seek backwards or from its end")
        skip = bytearray(min(target - self._position, 1 << 20) or 1)
        while self._position < target and self.readinto(memoryview(skip)[: target - self._position]):
            pass
        return self._position


class HashingWriter:
    """A writer that passes bytes on and keeps their SHA-256."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._hash = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self._hash.update(data)
        return self._out.write(data)

    def flush(self) -> None:
        self._out.flush()

    def digest(self) -> bytes:
        return self._hash.digest()


class Watched:
    """A stream that keeps the first exception its reads or writes raised.

    For callers that report every failure of a stream as their own exception
    with the original's name in a string (pyrage's EncryptError), which would
    turn a full disk or a Ctrl-C into an unexplained internal error.
    """

    def __init__(self, stream: BinaryIO | Writer) -> None:
        # A reader or a writer: its user calls only the methods of that role, whichever type it is.
        self._stream: Any = stream
        self.error: BaseException | None = None

    def read(self, size: int = -1) -> bytes:
        return self._watch(self._stream.read, size)

    def readinto(self, buffer: bytearray) -> int:
        return self._watch(self._stream.readinto, buffer)

    def write(self, data: bytes) -> int:
        return self._watch(self._stream.write, data)

    def flush(self) -> None:
        self._watch(self._stream.flush)

    def _watch(self, call: Callable, *args: object):
        try:
            return call(*args)
        except BaseException as error:
            if self.error is None:
                self.error = error
            raise
