"""The suite's one bounded wait (tests.support.waiting): it returns what it waited for, keeps
to its bound, and says what it waited for and what it saw last when it gives up."""

from __future__ import annotations

import time

import pytest

from tests.support.waiting import WaitTimeout, wait_until


def counter():
    calls = []

    def probe():
        calls.append(time.monotonic())
        return len(calls)

    return probe, calls


def test_returns_the_first_accepted_value():
    probe, calls = counter()
    assert wait_until(probe, "three calls", timeout=5, interval=0.01,
                      accept=lambda n: n >= 3) == 3
    assert len(calls) == 3


def test_a_true_value_ends_the_wait_by_default():
    values = iter([0, "", None, "ready"])
    assert wait_until(lambda: next(values), "a value", timeout=5, interval=0.01) == "ready"


def test_gives_up_after_the_timeout_naming_what_and_the_last_value():
    probe, calls = counter()
    started = time.monotonic()
    with pytest.raises(WaitTimeout) as caught:
        wait_until(probe, "the count to reach 1000", timeout=0.3, interval=0.05,
                   accept=lambda n: n >= 1000)
    took = time.monotonic() - started
    assert 0.3 <= took < 2, took
    message = str(caught.value)
    assert message.startswith("timed out after 0.3 s waiting for the count to reach 1000")
    assert f"last value: {len(calls)}" in message
    assert len(calls) >= 2  # polled, not called once


def test_ignored_errors_mean_not_yet_and_the_last_one_is_named():
    attempts = []

    def probe():
        attempts.append(1)
        if len(attempts) < 3:
            raise ConnectionRefusedError("not listening yet")
        return "up"

    assert wait_until(probe, "the server", timeout=5, interval=0.01,
                      ignoring=OSError) == "up"

    def refused():
        raise ConnectionRefusedError("still not listening")

    with pytest.raises(WaitTimeout, match=r"last error: ConnectionRefusedError\("
                                          r"'still not listening'\)") as caught:
        wait_until(refused, "the server", timeout=0.2, interval=0.05, ignoring=OSError)
    assert isinstance(caught.value.__cause__, ConnectionRefusedError)


def test_other_errors_end_the_wait_at_once():
    probe, calls = counter()

    def checked():
        if probe() == 2:
            raise AssertionError("an invariant broke while waiting")
        return False

    with pytest.raises(AssertionError, match="an invariant broke"):
        wait_until(checked, "never", timeout=30, interval=0.01, ignoring=OSError)
    assert len(calls) == 2


def test_details_are_read_only_on_failure_and_appended():
    read = []

    def details():
        read.append(1)
        return "the worker's log"

    assert wait_until(lambda: True, "nothing", timeout=1, details=details)
    assert read == []
    with pytest.raises(WaitTimeout, match="waiting for the log line; last value: False\n"
                                          "the worker's log"):
        wait_until(lambda: False, "the log line", timeout=0.1, interval=0.05, details=details)
    assert read == [1]


def test_a_timeout_is_also_a_timeout_error():
    # Callers outside the tests (the benchmarks) catch TimeoutError from the servers' waits.
    assert issubclass(WaitTimeout, TimeoutError)
