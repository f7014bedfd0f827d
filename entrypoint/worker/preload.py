"""Airflow's code every task needs, loaded once in the Celery worker's main process.

A Celery pool process forks Airflow's task supervisor, which forks the task process.
The task process parses its DAG file through Airflow's DAG bag (and its serializers and
ORM models), and the pool process's first result write makes SQLAlchemy configure
Airflow's mappers, which imports every model. Loaded lazily, each pool process pays
for that once, at its first task, all of them together on a new worker: exactly when a
scale-out needs the worker to be quick (BENCHMARKS.md, the fan-out's first run). Loaded
here, before the pool forks, every pool process and task process inherits them.

Only public module paths and Airflow's `import_all_models()` are used; any of them
missing (an Airflow upgrade) is logged and skipped: the worker then runs as before,
its first tasks slower.
"""

from __future__ import annotations

import importlib
import logging

log = logging.getLogger(__name__)

# What a task process imports to parse and run its DAG file (task_runner.parse).
MODULES = (
    "airflow.sdk.execution_time.task_runner",
    "airflow.dag_processing.dagbag",
)


def install() -> list[str]:
    """Import MODULES, every ORM model, and configure the mappers; return what failed."""
    failed = []
    for name in MODULES:
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - an optimisation never stops the worker
            failed.append(f"{name}: {type(exc).__name__}: {exc}")
    try:
        from airflow import models
        from sqlalchemy.orm import configure_mappers

        models.import_all_models()  # type: ignore[no-untyped-call]  # unannotated in Airflow
        configure_mappers()
    except Exception as exc:  # noqa: BLE001 - as above
        failed.append(f"airflow.models.import_all_models: {type(exc).__name__}: {exc}")
    for failure in failed:
        log.warning("not preloaded in the worker (its first tasks will load it): %s", failure)
    return failed
