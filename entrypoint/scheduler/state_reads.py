"""The scheduler's reads of task states through an outage of Celery's result backend.

At each loop Airflow's Celery executor reads the state of every task it has out
from the result backend (`CeleryExecutor.sync`) and lets any error escape the
loop. With Redis or Valkey as the result backend, a server restarted or failed
over while a task runs makes that read raise redis's ConnectionError, and the
scheduler exits (measured: Redis stopped for 5 s with one task running; Airflow
alone, and so our process group, exited 1). On ECS the scheduler task is then
replaced: a minute or more without scheduling for an outage of seconds.

So a read that fails with a connection error is skipped: the loop goes on, the
tasks keep the state last read, and the next loop reads again. One warning names
the error when an outage starts; one line says when reads succeed again. Nothing
waits here: a read fails or answers as fast as the client does (Celery's socket
timeouts). Any other error still escapes, as in Airflow: only an unreachable
server is known to pass.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import Any

from entrypoint import private_apis
from entrypoint.worker import method_patch

log = logging.getLogger("airflow-ecs.state_reads")


def connection_errors() -> tuple[type[BaseException], ...]:
    """What an unreachable result backend raises: redis-py's connection and timeout
    errors (Redis, Valkey; public classes of redis-py) and the socket's own."""
    errors: tuple[type[BaseException], ...] = (OSError,)
    try:
        from redis import exceptions
    except ImportError:  # a deployment without redis-py has no Redis result backend
        return errors
    return (*errors, exceptions.ConnectionError, exceptions.TimeoutError)


class Outage:
    """When reads started failing, to say so once and say when it ended."""

    def __init__(self) -> None:
        self.since: float | None = None

    def failed(self, error: BaseException, now: float) -> None:
        if self.since is None:
            self.since = now
            log.warning("the Celery result backend did not answer (%s: %s); the scheduler "
                        "goes on and reads task states again at its next loop",
                        type(error).__name__, error)

    def answered(self, now: float) -> None:
        if self.since is not None:
            log.warning("the Celery result backend answers again, after %.1f s",
                        now - self.since)
            self.since = None


def tolerant(original: Callable[..., Any], outage: Outage,
             errors: tuple[type[BaseException], ...]) -> Callable[..., Any]:
    def sync(self: Any) -> Any:
        try:
            result = original(self)
        except errors as error:
            outage.failed(error, time.monotonic())
            return None
        outage.answered(time.monotonic())
        return result

    return sync


def install() -> bool:
    """Arrange for the Celery executor's state read to be wrapped; True when arranged.

    Only in a scheduler. The executor's module builds its Celery app, which loads
    this configuration, while it is itself being imported, before its class exists:
    so the executors' common heartbeat, complete by then, wraps the read of the
    executor it runs for, at its first call (the read is the last step of each
    heartbeat). A worker or an api-server has not imported the scheduler, and this
    does not import it for them."""
    if private_apis.SCHEDULER_JOB_RUNNER.module not in sys.modules:
        return False
    outage = Outage()
    errors = connection_errors()

    def wrap_sync() -> bool:
        return method_patch.replace(private_apis.CELERY_EXECUTOR,
                                    private_apis.CELERY_EXECUTOR_SYNC,
                                    lambda original: tolerant(original, outage, errors))

    return method_patch.replace(private_apis.EXECUTOR, private_apis.EXECUTOR_HEARTBEAT,
                                lambda original: wrapping_first(original, wrap_sync))


def wrapping_first(original: Callable[..., Any],
                   wrap_sync: Callable[[], bool]) -> Callable[..., Any]:
    """The heartbeat, which wraps the Celery executor's read once, before its first call."""
    pending = [wrap_sync]

    def heartbeat(self: Any) -> Any:
        if pending and type(self).__module__ == private_apis.CELERY_EXECUTOR.module:
            pending.pop()()
        return original(self)

    return heartbeat
