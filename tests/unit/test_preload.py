"""The worker loads the code every task needs before its pool forks (entrypoint.worker.preload)."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys

import pytest

from entrypoint import private_apis
from entrypoint.worker import preload

pytestmark = pytest.mark.airflow


def _in_a_fresh_interpreter(script: str, env: dict[str, str] | None = None):
    """Run script in a new Python (this test process may have loaded the modules already);
    it must exit 0."""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    return result


def test_preload_loads_the_dag_bag_and_configures_every_mapper():
    script = (
        "import sys\n"
        "from entrypoint.worker import preload\n"
        "assert 'airflow.dag_processing.dagbag' not in sys.modules\n"
        "print(preload.install())\n"
        "import sqlalchemy\n"
        "from airflow.models.taskinstance import TaskInstance\n"
        "from airflow.models.dagrun import DagRun\n"
        "print('airflow.dag_processing.dagbag' in sys.modules,\n"
        "      sqlalchemy.inspect(TaskInstance).configured,\n"
        "      sqlalchemy.inspect(DagRun).configured)\n"
    )
    result = _in_a_fresh_interpreter(script)
    assert result.stdout.split("\n")[:2] == ["[]", "True True True"], result.stdout


def test_preload_loads_the_configured_dag_bundle_class():
    """A versioned bundle's module is loaded before the pool forks, not by each task."""
    script = (
        "import sys\n"
        "from entrypoint.worker import preload\n"
        "assert 'entrypoint.bundles.git' not in sys.modules\n"
        "print(preload.install())\n"
        "print('entrypoint.bundles.git' in sys.modules)\n"
    )
    bundles = ('[{"name": "dags-folder", "classpath": "entrypoint.bundles.git.GitDagBundle", '
               '"kwargs": {}}]')
    env = {**os.environ, "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": bundles}
    result = _in_a_fresh_interpreter(script, env)
    assert result.stdout.split("\n")[:2] == ["[]", "True"], result.stdout


def test_preload_loads_the_taskflow_decorators():
    """`@dag` and `@task` (the standard provider's decorator) are loaded before the pool
    forks, not by each task process running its DAG file."""
    script = (
        "import sys\n"
        "from entrypoint.worker import preload\n"
        "decorators = ('airflow.sdk.definitions.decorators',\n"
        "              'airflow.providers.standard.decorators.python')\n"
        "assert not any(m in sys.modules for m in decorators)\n"
        "print(preload.install())\n"
        "print(all(m in sys.modules for m in decorators))\n"
    )
    result = _in_a_fresh_interpreter(script)
    assert result.stdout.split("\n")[:2] == ["[]", "True"], result.stdout


def test_a_failing_taskflow_decorator_is_named(monkeypatch):
    import airflow.sdk

    class Broken:
        def __getattr__(self, name):
            raise ImportError(f"no decorator {name}")

    monkeypatch.setattr(airflow.sdk, "task", Broken(), raising=False)
    monkeypatch.setattr(preload.log, "warning", lambda *args: None)
    assert preload._taskflow_decorators() == [
        "airflow.sdk TaskFlow decorators: ImportError: no decorator python"]


def test_a_bundle_class_that_does_not_import_is_named(monkeypatch):
    # Airflow's configuration reads its AIRFLOW__SECTION__KEY variables at each lookup.
    monkeypatch.setenv("AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST",
                       '[{"name": "dags-folder", "classpath": "acme.no_such_bundle.Bundle", '
                       '"kwargs": {}}]')
    monkeypatch.setattr(preload.log, "warning", lambda *args: None)
    failed = preload._bundle_modules()
    assert len(failed) == 1, failed
    assert failed[0].startswith("acme.no_such_bundle: ModuleNotFoundError"), failed


def test_a_module_airflow_no_longer_has_is_skipped_with_a_warning(monkeypatch):
    warnings = []
    gone = dataclasses.replace(private_apis.DAGBAG_MODULE, module="airflow.no_such_module_here")
    monkeypatch.setattr(preload, "MODULES", (private_apis.TASK_RUNNER_MODULE, gone))
    monkeypatch.setattr(private_apis, "_warned", set())
    # Airflow's logging set-up, once imported, owns the handlers: record the call itself.
    monkeypatch.setattr(private_apis.log, "warning", lambda msg, *args: warnings.append(msg % args))
    assert preload.install() == ["airflow.no_such_module_here"]
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith("private API changed: airflow.no_such_module_here "
                                  "(apache-airflow-core ")
    assert "does not import (ModuleNotFoundError" in warnings[0]
    assert warnings[0].endswith("; so not preloaded in the worker; its first tasks load it")


def test_import_all_models_gone_skips_the_models_and_says_so(monkeypatch):
    from airflow import models

    monkeypatch.setattr(private_apis, "_warned", set())
    monkeypatch.delattr(models, "import_all_models")
    monkeypatch.setattr(preload, "MODULES", ())
    assert preload.install() == ["airflow.models.import_all_models"]
