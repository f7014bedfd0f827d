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

The DAG bundle classes `[dag_processor] dag_bundle_config_list` names are loaded here
too: every task builds its bundle (task_runner.parse), and a versioned bundle's module
(entrypoint.bundles) would otherwise be imported by every task process, inside the
time a task's start takes (BENCHMARKS.md, versioned bundles).

So are the TaskFlow decorators (`from airflow.sdk import dag, task`, `@task` resolving
to the standard provider's `task.python`): `airflow.sdk` loads them lazily, at their
first use, which is in every task process as it runs its DAG file; 27 modules, about
30 ms of CPU per task (measured in the worker image), on a worker whose tasks share its
CPUs (BENCHMARKS.md, the fan-out). They are Airflow's public names: no private API.
"""

from __future__ import annotations

import importlib
import logging

from entrypoint import private_apis

log = logging.getLogger(__name__)

# What a task process imports to parse and run its DAG file (task_runner.parse).
MODULES = (private_apis.TASK_RUNNER_MODULE, private_apis.DAGBAG_MODULE)


def install() -> list[str]:
    """Import MODULES, every ORM model, and configure the mappers; return what failed."""
    # A lookup imports the module; one that is missing or fails is named in its warning.
    failed = [entry.name for entry in MODULES if private_apis.lookup(entry) is None]
    failed += _bundle_modules()
    failed += _taskflow_decorators()
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


def _bundle_modules() -> list[str]:
    """Import the module of each bundle class Airflow's configuration names; return what
    failed (logged: a task naming that bundle then fails with Airflow's own error)."""
    try:
        from airflow.configuration import conf

        configs = conf.getjson("dag_processor", "dag_bundle_config_list") or []
        if not isinstance(configs, list):
            raise TypeError(f"a JSON list is expected, not {type(configs).__name__}")
        modules = {str(entry["classpath"]).rpartition(".")[0] for entry in configs}
    except Exception as exc:  # noqa: BLE001 - an optimisation never stops the worker
        failure = f"[dag_processor] dag_bundle_config_list: {type(exc).__name__}: {exc}"
        log.warning("DAG bundle classes not preloaded in the worker: %s", failure)
        return [failure]
    failed = []
    for module in sorted(m for m in modules if m):
        try:
            importlib.import_module(module)
        except Exception as exc:  # noqa: BLE001 - as above
            failure = f"{module}: {type(exc).__name__}: {exc}"
            log.warning("DAG bundle module not preloaded in the worker: %s", failure)
            failed.append(failure)
    return failed


def _taskflow_decorators() -> list[str]:
    """Load `airflow.sdk`'s lazily imported `dag` and `task`, and `task.python`, which
    `@task` resolves to (the standard provider's decorator); return what failed (logged:
    a DAG file using them then loads them itself, or fails with Airflow's own error)."""
    try:
        import airflow.sdk

        airflow.sdk.dag  # noqa: B018 - the attribute access imports the module
        airflow.sdk.task.python  # noqa: B018 - as above, and the provider's decorator
    except Exception as exc:  # noqa: BLE001 - an optimisation never stops the worker
        failure = f"airflow.sdk TaskFlow decorators: {type(exc).__name__}: {exc}"
        log.warning("not preloaded in the worker (each task will load it): %s", failure)
        return [failure]
    return []
