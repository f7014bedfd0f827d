"""The scheduler through an outage of Redis, Celery's broker and result backend.

Airflow's Celery executor, at each scheduler loop, sends the tasks queued to it
and then reads the state of every task it has out (its `heartbeat`). Neither
expects Redis to be away, as it is for seconds while it restarts or fails over:
- the read lets redis's ConnectionError escape the loop, and the scheduler exits
  (measured: Redis stopped for 5 s with one task running; Airflow alone, and so
  our process group, exited 1); on ECS its task is then replaced, a minute or
  more without scheduling;
- a send refused by the broker fails that try of the task ("Error sending Celery
  workload"); it runs again only after its retry_delay (5 minutes by default).
  Only a send that times out is sent again at the next loop, at most
  [celery] task_publish_max_retries times.

So, in a scheduler:
- a read that fails with a connection error is skipped;
- a send that fails with one counts as a send that timed out: the task stays
  queued to the executor, and Airflow sends it again;
- once either happened, each loop first asks Redis whether it answers (one
  connection, its socket timeouts PROBE_TIMEOUT_SECONDS) and skips the whole
  heartbeat, sends and reads, until it does: the tasks wait, queued to the
  executor, instead of using up their sends. Nothing else waits.
One warning names the error when an outage starts, one says when it ended. Any
other error still escapes, as in Airflow.

Installed from the Celery configuration, which the executor's module loads while
it is itself being imported, before its class exists: so the executors' common
heartbeat, complete by then, wraps the Celery executor's send and read at its
first call.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import Any

from entrypoint import private_apis
from entrypoint.worker import method_patch
from entrypoint.worker.broker import bounded_connection, unreachable

log = logging.getLogger("airflow-ecs.outage")

PROBE_TIMEOUT_SECONDS = 2.0


class Outage:
    """Since when Redis has not answered, to skip work meanwhile and say so once."""

    def __init__(self) -> None:
        self.since: float | None = None

    def failed(self, what: str, error: BaseException, now: float) -> None:
        if self.since is None:
            self.since = now
            log.warning("Redis did not answer the scheduler's %s (%s: %s); until it does, "
                        "the scheduler goes on without sending tasks or reading their states",
                        what, type(error).__name__, error)

    def answered(self, now: float) -> None:
        if self.since is not None:
            log.warning("Redis answers the scheduler again, after %.1f s", now - self.since)
            self.since = None


def tolerant_sync(original: Callable[..., Any], outage: Outage,
                  errors: tuple[type[BaseException], ...]) -> Callable[..., Any]:
    def sync(self: Any) -> Any:
        try:
            return original(self)
        except errors as error:
            outage.failed("read of task states", error, time.monotonic())
            return None

    return sync


def tolerant_send(original: Callable[..., Any], outage: Outage,
                  errors: tuple[type[BaseException], ...],
                  timeout: type[BaseException]) -> Callable[..., Any]:
    def send(self: Any, workload_tuples_to_send: Any) -> Any:
        sent = original(self, workload_tuples_to_send)
        for _key, _args, result in sent:
            failure = getattr(result, "exception", None)
            if isinstance(failure, errors) and not isinstance(failure, timeout):
                outage.failed("sending of a task", failure, time.monotonic())
                result.exception = timeout(f"the broker did not answer: {failure}")
        return sent

    return send


def broker_answers(app: Any) -> bool:
    """Whether the Celery app's broker takes a connection now (kombu's Redis transport
    pings it), each step within PROBE_TIMEOUT_SECONDS."""
    connection = bounded_connection(app, PROBE_TIMEOUT_SECONDS)
    try:
        connection.connect()
    except (*unreachable(), *connection.connection_errors):
        return False
    finally:
        connection.release()
    return True


def pausing(original: Callable[..., Any], outage: Outage,
            install_celery: Callable[[], bool]) -> Callable[..., Any]:
    """The heartbeat: wraps the Celery executor's send and read before its first call,
    and skips whole heartbeats while Redis does not answer."""
    pending = [install_celery]

    def heartbeat(self: Any) -> Any:
        if type(self).__module__ != private_apis.CELERY_EXECUTOR.module:
            return original(self)
        if pending:
            pending.pop()()
        if outage.since is not None:
            app = getattr(self, "celery_app", None)
            if app is not None and not broker_answers(app):
                return None
            outage.answered(time.monotonic())
        return original(self)

    return heartbeat


def install() -> bool:
    """Arrange for the Celery executor's sends and reads to ride out an outage; True when
    arranged. Only in a scheduler: a worker or an api-server has not imported it, and
    this does not import it for them."""
    if private_apis.SCHEDULER_JOB_RUNNER.module not in sys.modules:
        return False
    outage = Outage()
    errors = unreachable()

    def install_celery() -> bool:
        from airflow.providers.common.compat.sdk import AirflowTaskTimeout

        return (method_patch.replace(private_apis.CELERY_EXECUTOR,
                                     private_apis.CELERY_EXECUTOR_SYNC,
                                     lambda original: tolerant_sync(original, outage, errors))
                and method_patch.replace(private_apis.CELERY_EXECUTOR,
                                         private_apis.CELERY_EXECUTOR_SEND,
                                         lambda original: tolerant_send(
                                             original, outage, errors, AirflowTaskTimeout)))

    return method_patch.replace(private_apis.EXECUTOR, private_apis.EXECUTOR_HEARTBEAT,
                                lambda original: pausing(original, outage, install_celery))
