"""The worker loads the code every task needs before its pool forks (entrypoint.worker.preload)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from entrypoint.worker import preload

pytestmark = pytest.mark.airflow


def test_preload_loads_the_dag_bag_and_configures_every_mapper():
    # A fresh interpreter: this test process may have loaded them already.
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
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:2] == ["[]", "True True True"], result.stdout


def test_a_module_airflow_no_longer_has_is_skipped_with_a_warning(monkeypatch):
    warnings = []
    monkeypatch.setattr(preload, "MODULES", ("airflow.no_such_module_here",))
    # Airflow's logging set-up, once imported, owns the handlers: record the call itself.
    monkeypatch.setattr(preload.log, "warning", lambda msg, *args: warnings.append(msg % args))
    failed = preload.install()
    assert len(failed) == 1 and failed[0].startswith("airflow.no_such_module_here: ")
    assert warnings == [f"not preloaded in the worker (its first tasks will load it): "
                        f"{failed[0]}"]
