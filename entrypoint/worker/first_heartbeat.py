"""Skip the heartbeat Airflow's task supervisor sends right after starting a task.

The supervisor starts a task with the execution API's `run` call, which marks
the task instance running and records a heartbeat (`last_heartbeat_at`) in the
same write. Its heartbeat loop, though, times heartbeats from a last attempt
that starts at zero, so its first pass sends another heartbeat at once: one
more API request, database update and round trip per task, beside the few
a short task makes (run, heartbeat, rendered fields, XCom, state, and the
XCom reads of a downstream task).

Here the `run` call counts as that first attempt, so the next heartbeat goes
out `[workers] min_heartbeat_interval` after the start, as every later one
does; Airflow's heartbeat timeout is measured from `last_heartbeat_at`, which
the `run` call has just set. Installed in the Celery worker's main process
before the pool forks (entrypoint.worker.celery_config), only if the supervisor
still has the shape this was written against (entrypoint.private_apis).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from entrypoint import private_apis
from entrypoint.worker import method_patch


def install() -> bool:
    """Patch Airflow's task supervisor; True when the fix is (already) in place."""
    return method_patch.replace(private_apis.ACTIVITY_SUBPROCESS, private_apis.ON_CHILD_STARTED,
                                _counting_start_as_heartbeat)


def _counting_start_as_heartbeat(original: Callable[..., Any]) -> Callable[..., Any]:
    def _on_child_started(self: Any, *, ti: Any, dag_rel_path: Any, bundle_info: Any,
                          sentry_integration: Any) -> None:
        original(self, ti=ti, dag_rel_path=dag_rel_path, bundle_info=bundle_info,
                 sentry_integration=sentry_integration)
        # Set by Airflow when the run call succeeded (it raises otherwise).
        if self._last_successful_heartbeat:
            self._last_heartbeat_attempt = self._last_successful_heartbeat

    return _on_child_started
