"""Free a Celery worker slot as soon as its task process exits.

Airflow's task supervisor (one per running task, in the Celery pool process)
waits for its task process in a select() loop over the process's sockets, and
checks whether the process has exited after each wake-up. The task process
closes its sockets and then exits; when the supervisor's check runs in the
instant between the two, every socket is gone, so the next select() has
nothing to wake it and sleeps its whole timeout,
`[workers] min_heartbeat_interval` (5 s by default), before the exit is
noticed. The task has already reported its state, but its worker slot stays
taken meanwhile; on the local stack, consecutive short tasks of one pool
process often slept the full interval.

The fix here replaces only that sleep: when the supervisor has no socket left
to wait on and the process has not been reaped yet, it waits on the process
itself, for at most the time select() would have slept, and so returns the
moment the process exits. Every other path runs Airflow's own code unchanged.
It is installed in the Celery worker's main process before the pool forks
(entrypoint.worker.celery_config), and only if the supervisor still has the shape it
was written against (every attribute and method it uses is declared in
entrypoint.private_apis); otherwise it logs why and changes nothing.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from typing import Any

from entrypoint import private_apis
from entrypoint.worker import method_patch


def install() -> bool:
    """Patch Airflow's task supervisor; True when the fix is (already) in place."""
    return method_patch.replace(private_apis.SUPERVISOR, private_apis.SERVICE_SUBPROCESS,
                                _waiting_on_exit,
                                uses=(private_apis.CHECK_SUBPROCESS_EXIT,
                                      private_apis.PROCESS_WAIT))


def _waiting_on_exit(original: Callable[..., Any]) -> Callable[..., Any]:
    import psutil

    # What a wait that times out raises, whichever process handle the supervisor holds:
    # Airflow's tracker over psutil (whose TimeoutExpired is psutil's), a bare
    # psutil.Process (Airflow's in-process supervisors; it has no TimeoutExpired
    # attribute to read), or a subprocess.Popen (the other backend of Airflow's tracker).
    timed_out = (psutil.TimeoutExpired, subprocess.TimeoutExpired)

    def _service_subprocess(self: Any, max_wait_time: float, raise_on_timeout: bool = False,
                            expect_signal: int | None = None) -> Any:
        if self._exit_code is None and not self.selector.get_map():
            # Nothing left for select() to wake on: wait for the exit instead of sleeping.
            try:
                self._process.wait(timeout=max(0.01, max_wait_time))
            except timed_out:
                pass
            return self._check_subprocess_exit(raise_on_timeout=raise_on_timeout,
                                               expect_signal=expect_signal)
        return original(self, max_wait_time, raise_on_timeout=raise_on_timeout,
                        expect_signal=expect_signal)

    return _service_subprocess
