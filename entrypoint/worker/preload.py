"""Airflow's code every task needs, loaded once in the Celery worker's main process.

A Celery pool process forks Airflow's task supervisor, which forks the task process.
The task process parses its DAG file through Airflow's DAG bag (and its serializers and
ORM models), and the pool process's first result write makes SQLAlchemy configure
Airflow's mappers, which imports every model. Loaded lazily, each pool process pays
for that once, at its first task, all of them together on a new worker: exactly when a
scale-out needs the worker to be quick (BENCHMARKS.md, the fan-out's first run). Loaded
here, before the pool forks, every pool process and task process inherits them.

The module paths and Airflow's `import_all_models()` are Airflow internals, declared in
entrypoint.private_apis; any of them missing or failing (an Airflow upgrade) is logged
and skipped: the worker then runs as before, its first tasks slower.
"""

from __future__ import annotations

import logging

from entrypoint import private_apis

log = logging.getLogger(__name__)

# What a task process imports to parse and run its DAG file (task_runner.parse).
MODULES = (private_apis.TASK_RUNNER_MODULE, private_apis.DAGBAG_MODULE)


def install() -> list[str]:
    """Import MODULES, every ORM model, and configure the mappers; return what failed."""
    # A lookup imports the module; one that is missing or fails is named in its warning.
    failed = [entry.name for entry in MODULES if private_apis.lookup(entry) is None]
    import_all_models = private_apis.lookup(private_apis.IMPORT_ALL_MODELS)
    if import_all_models is None:
        failed.append(private_apis.IMPORT_ALL_MODELS.name)
        return failed
    try:
        from sqlalchemy.orm import configure_mappers

        import_all_models()
        configure_mappers()
    except Exception as exc:  # noqa: BLE001 - an optimisation never stops the worker
        failure = f"{private_apis.IMPORT_ALL_MODELS.name}: {type(exc).__name__}: {exc}"
        log.warning("not preloaded in the worker (its first tasks will load it): %s", failure)
        failed.append(failure)
    return failed
