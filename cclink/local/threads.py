"""Several blocking calls at once, each in a thread of its own: lookups and puts under several keys, or on the
DHT and the relays together."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import TypeVar, overload

T = TypeVar("T")
E = TypeVar("E", bound=BaseException)


@overload
def at_once(calls: Sequence[Callable[[], T]], passing: type[E]) -> list[T | E]: ...


@overload
def at_once(
    calls: Sequence[Callable[[], T]], passing: type[E], *, deadline: float, on_late: Callable[[], object] = ...
) -> list[T | E | None]: ...


def at_once(
    calls: Sequence[Callable[[], T]],
    passing: type[E],
    *,
    deadline: float | None = None,
    on_late: Callable[[], object] = lambda: None,
) -> list[T | E | None] | list[T | E]:
    """Run calls at once and wait for them, until deadline (time.monotonic) if given: their results, in order.

    An exception of the passing class becomes its call's result; any other
    is raised here, in the waiting thread. A call still running at the
    deadline gives None, after on_late was called. The threads are daemons:
    a Ctrl-C does not wait for lookups and puts to give up.
    """
    results: list[T | BaseException | None] = [None] * len(calls)

    def run(index: int) -> None:
        try:
            results[index] = calls[index]()
        except BaseException as error:  # noqa: BLE001 - not swallowed: raised below, in the waiting thread
            results[index] = error

    threads = [threading.Thread(target=run, args=(index,), daemon=True) for index in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
    if any(thread.is_alive() for thread in threads):
        on_late()
    finished: list[T | E | None] = []
    for thread, result in zip(threads, results, strict=True):
        if thread.is_alive():
            finished.append(None)
        elif isinstance(result, BaseException) and not isinstance(result, passing):
            raise result
        else:
            finished.append(result)
    return finished
