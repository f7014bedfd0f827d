"""One pooled engine per process for Celery's database result backend.

Airflow's Celery executor reads the state of every running task from Celery's result
backend (`[celery] result_backend`, `db+postgresql://...` here) at each scheduler loop.
Celery's database backend keeps a pooled engine only in a process it knows to be forked
(a worker's pool process); anywhere else, the scheduler included, it makes a new engine
with NullPool for every query: a new PostgreSQL connection each time, with its
authentication, SQLAlchemy's dialect set-up queries and a new server process. In the
fan-out benchmark that was about 10 connections per run from the scheduler, the
database server's CPU for them (its exited backends) a quarter of the database's CPU
during the runs, on the same CPUs the tasks need (BENCHMARKS.md, the fan-out); on RDS
it is also connection churn.

Here, outside Celery's own pooled path, the engine is kept for the process and the
database URL, with `pool_pre_ping` (a connection the database or a failover closed is
replaced, not used) unless the backend's engine options say otherwise, and the pool's
defaults otherwise, as Celery's engine options give them. A process forked from one
holding it (a ProcessPoolExecutor, Celery's prefork pool) never uses the inherited
engine: it makes its own, and drops the inherited one without closing its connections,
which still belong to the parent (SQLAlchemy's rule for engines across a fork).

Celery's SessionManager is a private API (entrypoint.private_apis); when it changes,
the replacement is not installed and Celery runs as before.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from entrypoint import private_apis
from entrypoint.worker import method_patch

# (process id, database URL) -> engine; only this module's replacement reads it.
_ENGINES: dict[tuple[int, str], Any] = {}


def install() -> bool:
    """Replace SessionManager.get_engine; True when the replacement is in place."""
    return method_patch.replace(private_apis.RESULT_SESSION_MANAGER,
                                private_apis.RESULT_GET_ENGINE, _pooled)


def release() -> int:
    """Close the pooled connections of this process's engines (they stay usable and
    connect again when asked); return how many engines there were."""
    pid = os.getpid()
    engines = [engine for key, engine in _ENGINES.items() if key[0] == pid]
    for engine in engines:
        engine.dispose()
    return len(engines)


def _pooled(original: Callable[..., Any]) -> Callable[..., Any]:
    def get_engine(self: Any, dburi: str, **kwargs: Any) -> Any:
        if self.forked:
            return original(self, dburi, **kwargs)
        pid = os.getpid()
        engine = _ENGINES.get((pid, dburi))
        if engine is None:
            from sqlalchemy import create_engine

            for inherited in [key for key in _ENGINES if key[0] != pid]:
                _ENGINES.pop(inherited).dispose(close=False)
            engine = _ENGINES[(pid, dburi)] = create_engine(
                dburi, **{"pool_pre_ping": True, **kwargs})
        return engine

    return get_engine
