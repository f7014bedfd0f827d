"""Celery configuration of the worker role: Airflow's own, plus a shutdown deadline.

ECS stops a container with SIGTERM, waits the task definition's stopTimeout,
then sends SIGKILL. Celery's warm shutdown (SIGTERM) lets running tasks
finish and exits 0, but a task still running at the SIGKILL dies with its
message stranded in Redis's unacked set until the visibility timeout.

So when a warm shutdown starts, a timer escalates it to a cold shutdown
(SIGQUIT) `AIRFLOW_ECS_STOP_TIMEOUT - 10` seconds later. The cold shutdown
stops the pool and closes the broker channel, and kombu's Redis transport
restores every unacknowledged message to its queue, so another worker picks
the task up.

Celery's own soft shutdown (`REMAP_SIGTERM=SIGQUIT` with
`worker_soft_shutdown_timeout`) is not used for this: in Celery 5.6 it sleeps
the whole timeout even when the running tasks finish early, and always exits
with status 1, so every scale-in would take the full stop timeout and look
like a failure.

In a worker it also makes Airflow's task supervisor notice a task process's
exit at once (entrypoint.worker.task_exit), so a finished task frees its slot, and
skips the heartbeat it sent right after starting a task
(entrypoint.worker.first_heartbeat), and loads the Airflow code every task needs
before the pool forks (entrypoint.worker.preload), and closes the database connections its
start opened (entrypoint.worker.orm_release), and puts back on their queue, once Redis
answers again, the messages it held when Redis went away (entrypoint.worker.restore).

Airflow loads this module (through `[celery] celery_config_options`)
wherever it builds its Celery app, scheduler and worker alike, so importing
Airflow here is fine; the shutdown hook only fires in a worker.

In a worker it also pings the worker's own node through the broker every
AIRFLOW_ECS_WORKER_PING_SECONDS and records the outcome for the health probe
(entrypoint.worker.liveness), which then has no ping of its own to send.

In every process that loads it, the scheduler above all, Celery's database result
backend keeps one pooled engine instead of connecting anew for each state query
(entrypoint.worker.result_engine). In the scheduler, the pause after an idle loop is
short only while the scheduler has tasks queued or running (entrypoint.scheduler.pacing), and
while Redis does not answer, the executor neither sends tasks nor reads their states, where
the scheduler would exit and the tasks sent fail their try (entrypoint.scheduler.outage).
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Mapping

from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG
from celery.signals import (
    celeryd_after_setup,
    worker_init,
    worker_ready,
    worker_shutdown,
    worker_shutting_down,
)

from entrypoint import config, private_apis
from entrypoint.scheduler import outage, pacing
from entrypoint.worker import (
    first_heartbeat,
    liveness,
    orm_release,
    preload,
    protection,
    restore,
    result_engine,
    task_exit,
)

STOP_MARGIN_SECONDS = 10

CELERY_CONFIG = dict(DEFAULT_CELERY_CONFIG)
# No sleeping soft-shutdown phase: the escalation below decides when to go cold.
CELERY_CONFIG["worker_soft_shutdown_timeout"] = 0.0

# The scheduler reads task states through the result backend at each loop.
result_engine.install()
# In the scheduler: a short pause after an idle loop only while it has work.
pacing.install()
# In the scheduler: sends and reads wait while Redis does not answer, instead of failing.
outage.install()


def shutdown_deadline(environ: Mapping[str, str]) -> float:
    # A worker started some other way with a bad value still gets a deadline: the
    # declared default's.
    stop_timeout = config.setting_or_default(environ, "stop_timeout")[0]
    return max(float(stop_timeout - STOP_MARGIN_SECONDS), 1.0)


_timer: threading.Timer | None = None


# Celery ships no type information: its signal decorators are untyped.
@worker_shutting_down.connect  # type: ignore[untyped-decorator]
def _escalate_at_deadline(sig: str = "", how: str = "", exitcode: int = 0, **_: object) -> None:
    global _timer
    if how != "Warm" or _timer is not None:
        return
    deadline = shutdown_deadline(os.environ)
    _timer = threading.Timer(deadline, os.kill, args=(os.getpid(), signal.SIGQUIT))
    _timer.daemon = True
    _timer.start()


@worker_init.connect  # type: ignore[untyped-decorator]  # Celery is untyped
def _correct_task_supervisor(**_: object) -> None:
    # In the main process, before the pool forks: every pool process inherits them.
    task_exit.install()
    first_heartbeat.install()
    preload.install()
    orm_release.install()
    restore.install()


@worker_ready.connect  # type: ignore[untyped-decorator]  # Celery is untyped
def _start_scale_in_protection(**_: object) -> None:
    # The main process's count of requests handed to the pool: no per-task work.
    if not private_apis.available(private_apis.CELERY_ACTIVE_REQUESTS):
        return
    from celery.worker import state

    protection.start_in_worker(os.environ, lambda: len(state.active_requests))


_liveness: threading.Event | None = None
_node: tuple[object, str] | None = None  # the worker's app and node name


@celeryd_after_setup.connect  # type: ignore[untyped-decorator]  # Celery is untyped
def _learn_node(sender: str = "", instance: object = None, **_: object) -> None:
    # Documented: the sender is the worker's node name, instance the worker.
    global _node
    app = getattr(instance, "app", None)
    if sender and app is not None:
        _node = (app, str(sender))


@worker_ready.connect  # type: ignore[untyped-decorator]  # Celery is untyped
def _start_liveness(**_: object) -> None:
    global _liveness
    if _liveness is None and _node is not None:
        _liveness = liveness.start_in_worker(os.environ, *_node)


@worker_shutdown.connect  # type: ignore[untyped-decorator]  # Celery is untyped
def _stop_liveness(**_: object) -> None:
    if _liveness is not None:
        _liveness.set()
