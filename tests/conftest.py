"""Session-wide servers for the integration tests, and the AWS test environment."""

from __future__ import annotations

import ast
import functools
import os
import sys
from pathlib import Path

import pytest
from hypothesis import settings

from tests.support.servers import airflow_env, start_moto, start_postgres, start_redis

# Hypothesis: the same examples on every run (`make test` and CI are repeatable; a
# failure found once fails again until fixed). HYPOTHESIS_PROFILE=explore draws new ones.
settings.register_profile("repeatable", derandomize=True, print_blob=True)
settings.register_profile("explore", print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))

# Tests never talk to real AWS: fixed fake credentials, a fixed region.
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "eu-west-1")
os.environ.pop("AWS_PROFILE", None)


TESTS = Path(__file__).resolve().parent
# Each of these folders holds the tests of its marker's kind (pyproject.toml lists them).
FOLDER_MARKERS = ("integration", "images", "e2e")
# Fixtures that run Airflow itself.
AIRFLOW_FIXTURES = {"migrated_db"}


def _is_airflow_import(node: ast.AST) -> bool:
    if isinstance(node, ast.Import):
        return any(alias.name.split(".")[0] == "airflow" for alias in node.names)
    if isinstance(node, ast.ImportFrom):
        return node.level == 0 and (node.module or "").split(".")[0] == "airflow"
    return False


@functools.cache
def _airflow_importers(path: Path) -> tuple[bool, frozenset[str]]:
    """Whether the module at path imports Airflow when it loads, and the names of its
    functions that import Airflow when they run."""
    tree = ast.parse(path.read_text(), str(path))
    at_load = any(_is_airflow_import(node) for statement in tree.body
                  if not isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef |
                                    ast.ClassDef)
                  for node in ast.walk(statement))
    functions = frozenset(
        node.name for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and any(_is_airflow_import(inner) for inner in ast.walk(node)))
    return at_load, functions


def pytest_collection_modifyitems(items):
    """Markers by what a test needs: its folder says whether it needs servers, images or
    the whole stack; `airflow` goes on a test whose module or function imports Airflow,
    or that uses a fixture running it. Tests that run Airflow only in a child process (a
    Celery worker, the airflow CLI) carry the marker themselves."""
    for item in items:
        if not item.path.is_relative_to(TESTS):
            continue
        folder = item.path.relative_to(TESTS).parts[0]
        if folder in FOLDER_MARKERS:
            item.add_marker(folder)
        at_load, functions = _airflow_importers(item.path)
        if (at_load or getattr(item, "originalname", item.name) in functions
                or AIRFLOW_FIXTURES & set(getattr(item, "fixturenames", ()))):
            item.add_marker("airflow")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A skipped test is a failure here: `make test` installs everything a test needs,
    so a test that can't run points at a broken setup, and must not count as green."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped, which counts as a failure: {reason}"


@pytest.fixture(scope="session")
def redis_server():
    server = start_redis(password="redis-test-pw")
    yield server
    server.close()


@pytest.fixture(scope="session")
def postgres_server():
    server = start_postgres()
    yield server
    server.close()


@pytest.fixture(scope="session")
def moto_server():
    server = start_moto()
    yield server
    server.close()


@pytest.fixture
def moto(moto_server):
    """A moto server with no state left from other tests."""
    moto_server.reset()
    return moto_server


@pytest.fixture(scope="session")
def migrated_db(postgres_server, tmp_path_factory):
    """A database migrated to Airflow's head by the real `airflow db migrate`."""
    import subprocess

    env = airflow_env(postgres_server, "airflow_migrated", tmp_path_factory.mktemp("afhome"))
    result = subprocess.run([str(Path(sys.executable).parent / "airflow"), "db", "migrate"],
                            env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    return env
