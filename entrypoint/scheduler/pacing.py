"""The scheduler's pause after an idle loop: short while it has work, Airflow's at rest.

Airflow's scheduler loop pauses `[scheduler] scheduler_idle_sleep_time` (1 s)
after each loop that queued nothing and heard of no finished task. While tasks
run, that pause is how late the scheduler notices one has ended and queues the
next wave: up to 1 s per wave. A shorter pause for every loop, though, costs
the database (and the scheduler) CPU all the time, a query or more per loop,
where nothing is waiting to be noticed (BENCHMARKS.md, the scheduler at rest).

So the scheduler pauses AIRFLOW_ECS_SCHEDULER_BUSY_SLEEP_SECONDS while its
executors hold queued or running tasks, and for HOLD_SECONDS after they last
did or it last queued one (a run triggered on the heels of another, a chain of
asset-triggered runs); otherwise Airflow's own setting applies. A DAG run
created while the scheduler is at rest starts up to that setting later (1 s by
default), as with Airflow unchanged.

Written against Airflow's scheduler loop, which reads the runner's
`_scheduler_idle_sleep_time` at every pause: the wrapped `_do_scheduling`
sets it before that pause (entrypoint.private_apis checks both).
"""

from __future__ import annotations

import os
import sys
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from entrypoint import config, private_apis
from entrypoint.worker import method_patch

# How long the short pause outlasts the last sign of work. Runs triggered one after
# another (a client's loop, TriggerDagRunOperator, asset events) arrive within seconds
# of the previous one's end; the price is at most this long at the short pause's CPU
# after each burst of work.
HOLD_SECONDS = float(config.SCHEDULER_BUSY_HOLD_SECONDS)


@dataclass
class _Pace:
    rest: float  # Airflow's setting, as the runner was built with it
    busy: float
    last_work: float | None = None


_paces: weakref.WeakKeyDictionary[Any, _Pace] = weakref.WeakKeyDictionary()


def busy_sleep(environ: Mapping[str, str]) -> float:
    # A scheduler started some other way with a bad value gets the declared default.
    return float(config.setting_or_default(environ, "scheduler_busy_sleep_seconds")[0])


def install(environ: Mapping[str, str] | None = None) -> bool:
    """Wrap the scheduler's scheduling step; True when the pacing is (already) in place.

    Only in a scheduler: `airflow scheduler` imports its runner's module before the
    runner builds its executor, which loads this configuration; a worker or an
    api-server has not imported it, and this does not import it for them."""
    if private_apis.SCHEDULER_JOB_RUNNER.module not in sys.modules:
        return False
    busy = busy_sleep(os.environ if environ is None else environ)
    if not private_apis.available(private_apis.SCHEDULER_LOOP):
        return False
    return method_patch.replace(private_apis.SCHEDULER_JOB_RUNNER, private_apis.DO_SCHEDULING,
                                lambda original: _pacing(original, busy))


def has_work(executors: Any) -> bool:
    """Whether any executor holds a task queued to it or running (private_apis.BASE_EXECUTOR;
    read with defaults, not looked up: the check makes an executor, which the scheduler
    should not pay for. Without them, only the tasks this loop queued count as work)."""
    return any(getattr(executor, "queued_tasks", None) or getattr(executor, "running", None)
               for executor in executors)


def next_pause(pace: _Pace, queued: int, working: bool, now: float) -> float:
    """The pause after this loop, if it turns out idle; records the work seen."""
    if queued or working:
        pace.last_work = now
    if pace.last_work is not None and now - pace.last_work < HOLD_SECONDS:
        return min(pace.busy, pace.rest)
    return pace.rest


def _pacing(original: Callable[..., Any], busy: float) -> Callable[..., Any]:
    def _do_scheduling(self: Any, session: Any) -> Any:
        queued = original(self, session)
        pace = _paces.get(self)
        if pace is None:
            pace = _paces[self] = _Pace(rest=float(self._scheduler_idle_sleep_time), busy=busy)
        self._scheduler_idle_sleep_time = next_pause(
            pace, int(queued or 0), has_work(self.executors), time.monotonic())
        return queued

    return _do_scheduling
