"""One bounded wait for the tests: poll until something holds, or fail saying what was
awaited and what was seen last."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import tenacity

T = TypeVar("T")


class WaitTimeout(TimeoutError):
    """What a test waited for did not happen in time."""


def wait_until(
    probe: Callable[[], T],
    what: str,
    *,
    timeout: float,
    interval: float = 0.1,
    accept: Callable[[T], object] = bool,
    ignoring: type[Exception] | tuple[type[Exception], ...] = (),
    details: Callable[[], str] | None = None,
) -> T:
    """Call `probe` every `interval` seconds until `accept(value)` holds for the value it
    returns (by default: until the value is true), and return that value.

    `what` names what is awaited ("the task to start"). An exception of a type in
    `ignoring` counts as "not yet"; any other one ends the wait at once, so a probe can
    assert what must hold while it waits. Past `timeout` seconds, raise WaitTimeout with
    `what`, the last value or error the probe gave and, when given, `details()` (a log,
    say), read only then.
    """
    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_delay(timeout),
        wait=tenacity.wait_fixed(interval),
        retry=(tenacity.retry_if_exception_type(ignoring)
               | tenacity.retry_if_result(lambda value: not accept(value))),
    )
    try:
        return retrying(probe)
    except tenacity.RetryError as error:
        outcome = error.last_attempt
        last_error = outcome.exception() if outcome.failed else None
        seen = (f"last error: {last_error!r}" if last_error is not None
                else f"last value: {outcome.result()!r}")
        message = f"timed out after {timeout:g} s waiting for {what}; {seen}"
        if details is not None:
            message += "\n" + details()
        raise WaitTimeout(message) from last_error
