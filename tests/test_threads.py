"""Several calls at once (cclink/local/threads.py): results in order, passing errors as results, late ones as None."""

from __future__ import annotations

import threading
import time

import pytest

from cclink.errors import CclinkError, NetworkError, NotFound
from cclink.local import threads


def test_results_come_back_in_the_order_of_the_calls_and_passing_errors_as_results() -> None:
    def fails() -> int:
        raise NotFound("nothing here")

    results = threads.at_once([lambda: 1, fails, lambda: 3], CclinkError)

    assert results[0] == 1 and results[2] == 3
    assert isinstance(results[1], NotFound)


def test_any_other_exception_is_raised_in_the_waiting_thread() -> None:
    def broken() -> int:
        raise ValueError("a bug")

    with pytest.raises(ValueError, match="a bug"):
        threads.at_once([lambda: 1, broken], NetworkError)
    with pytest.raises(NotFound):  # not a NetworkError: raised, not passed
        threads.at_once([lambda: (_ for _ in ()).throw(NotFound("x"))], NetworkError)


def test_a_call_still_running_at_the_deadline_gives_none_after_on_late() -> None:
    release = threading.Event()
    late: list[bool] = []

    results = threads.at_once(
        [lambda: "quick", lambda: release.wait(10)],
        CclinkError,
        deadline=time.monotonic() + 2.0,  # ample for the quick one, even on a loaded machine
        on_late=lambda: late.append(True),
    )
    release.set()

    assert results == ["quick", None] and late == [True]
