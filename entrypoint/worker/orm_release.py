"""The worker's main process closes its metadata-database connections before the pool forks.

`airflow celery worker` connects to the metadata database while it starts (its CLI
action logger writes a row to the `log` table) and SQLAlchemy's pool keeps those
connections open. The worker's main process has no use for them afterwards: tasks
reach the database through the execution API, and Celery's result backend has an
engine of its own in each pool process. Kept, they stayed open for the worker's life,
idle, and every pool process inherited their sockets: Airflow's after-fork hook drops
the engine in a child without closing its connections, so they would outlive even a
close by the parent. On `make up`'s stack a worker of concurrency 4 held 6 connections
(2 of them these); with this, 4, one per pool process (BENCHMARKS.md, connections). On
RDS, what a fleet of workers holds at its maximum decides the smallest instance class
that can serve it (docs/cost.md).

Disposing the engine closes the pooled connections; the engine stays usable and opens
one again if this process ever needs it. `airflow.settings.engine` is an Airflow
internal (entrypoint.private_apis); when it is missing the connections stay open, as
before.
"""

from __future__ import annotations

import logging

from entrypoint import private_apis
from entrypoint.worker import result_engine

log = logging.getLogger(__name__)


def install() -> bool:
    """Close the pooled connections of Airflow's engine and of the result backend's in
    this process; True when Airflow's were closed."""
    result_engine.release()
    engine = private_apis.lookup(private_apis.SETTINGS_ENGINE)
    if engine is None:
        return False
    try:
        engine.dispose()
    except Exception as exc:  # noqa: BLE001 - the connections then stay open, as before
        log.warning("the worker keeps its start-up database connections open: %s: %s",
                    type(exc).__name__, exc)
        return False
    return True
