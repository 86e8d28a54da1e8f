"""The lab's one event loop: every node's UDP socket in one selector, replies held back, datagrams lost.

A query reaches its node at once (loopback); the node's reply leaves after
the node's round trip, so a querier sees that round trip. Each datagram, in
either direction, is lost with the lab's loss probability. The loop runs in
a thread of its own; whoever changes the nodes (churn, introspection) holds
the lab's lock, which the loop holds while it handles a batch of datagrams.
"""

from __future__ import annotations

import heapq
import itertools
import random
import selectors
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from cclink.dev.dhtlab.node import LabNode
from cclink.net.endpoints import Endpoint

RECEIVE_SIZE = 65536
# Datagrams read from one socket per wake-up, so that one busy node cannot starve the others.
MAX_DATAGRAMS_PER_WAKE = 64


class LabError(Exception):
    """The lab cannot run here (addresses, ports, open files); the message says why in one sentence."""


@dataclass
class Stats:
    """What the lab's nodes received and sent, since it started."""

    received: int = 0  # datagrams that reached a node's socket, lost ones included
    lost_in: int = 0  # of those, dropped as lost on the way in
    lost_out: int = 0  # replies dropped as lost on the way out
    replies: int = 0  # replies sent, error replies included
    queries: Counter[str] = field(default_factory=Counter)  # by method, as the nodes saw them (after loss)
    errors: Counter[int] = field(default_factory=Counter)  # error replies by code

    def copy(self) -> Stats:
        return Stats(
            self.received, self.lost_in, self.lost_out, self.replies, Counter(self.queries), Counter(self.errors)
        )

    def since(self, earlier: Stats) -> Stats:
        """What happened between earlier (a copy) and now: the queries one lookup cost, say."""
        return Stats(
            self.received - earlier.received,
            self.lost_in - earlier.lost_in,
            self.lost_out - earlier.lost_out,
            self.replies - earlier.replies,
            self.queries - earlier.queries,
            self.errors - earlier.errors,
        )


class Loop:
    """Sockets for nodes, a selector over them, and the replies waiting for their time to leave."""

    def __init__(self, loss: float, rng: random.Random, clock: Callable[[], float], lock: threading.RLock) -> None:
        self.lock = lock
        self.stats = Stats()
        self._loss = loss
        self._rng = rng
        self._clock = clock
        self._selector = selectors.DefaultSelector()
        self._sockets: dict[LabNode, socket.socket] = {}
        self._due: list[tuple[float, int, LabNode, bytes, Endpoint]] = []  # (when, order, node, reply, to)
        self._order = itertools.count()
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._wake_reader.setblocking(False)
        self._selector.register(self._wake_reader, selectors.EVENT_READ, None)
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="dhtlab", daemon=True)

    def open(self, node: LabNode) -> None:
        """Bind node's socket at its address; LabError when the address cannot be had."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.bind(node.address)
        except OSError as error:
            sock.close()
            host, port = node.address
            raise LabError(
                f"cannot listen on {host}:{port} ({error.strerror}); is another lab running? Choose another port"
            ) from None
        if node.address[1] == 0:
            node.peer.bound_to(sock.getsockname()[1])
        sock.setblocking(False)
        self._selector.register(sock, selectors.EVENT_READ, node)
        self._sockets[node] = sock

    def close(self, node: LabNode) -> None:
        """Close node's socket: from now on nothing answers at its address."""
        sock = self._sockets.pop(node)
        self._selector.unregister(sock)
        sock.close()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping = True
        if self._thread.is_alive():
            self._wake_writer.send(b"\0")
            self._thread.join()
        for node in list(self._sockets):
            self.close(node)
        self._selector.close()
        self._wake_reader.close()
        self._wake_writer.close()

    def _run(self) -> None:
        while not self._stopping:
            wait = self._due[0][0] - time.monotonic() if self._due else None
            events = self._selector.select(None if wait is None else max(0.0, wait))
            with self.lock:
                for key, _ in events:
                    if key.data is None:
                        self._wake_reader.recv(64)
                    elif key.data in self._sockets:  # not closed by churn since select returned
                        self._receive(key.data, self._sockets[key.data])
                self._send_due()

    def _receive(self, node: LabNode, sock: socket.socket) -> None:
        for _ in range(MAX_DATAGRAMS_PER_WAKE):
            try:
                datagram, sender = sock.recvfrom(RECEIVE_SIZE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue
            self.stats.received += 1
            if self._lost():
                self.stats.lost_in += 1
                continue
            answer = node.answer(datagram, sender, self._clock())
            self.stats.queries[answer.method] += 1
            if answer.reply is None:
                continue
            if answer.error is not None:
                self.stats.errors[answer.error] += 1
            if self._lost():
                self.stats.lost_out += 1
                continue
            heapq.heappush(self._due, (time.monotonic() + node.rtt, next(self._order), node, answer.reply, sender))

    def _send_due(self) -> None:
        now = time.monotonic()
        while self._due and self._due[0][0] <= now:
            _, _, node, reply, to = heapq.heappop(self._due)
            sock = self._sockets.get(node)
            if sock is None:
                continue  # the node left before its reply was due
            try:
                sock.sendto(reply, to)
                self.stats.replies += 1
            except OSError:
                pass  # the querier's address is gone, or its buffer is full: a lost reply

    def _lost(self) -> bool:
        return self._loss > 0 and self._rng.random() < self._loss
