"""Session-wide servers for the integration tests, and the AWS test environment."""

from __future__ import annotations

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
    server.stop()


@pytest.fixture(scope="session")
def postgres_server():
    server = start_postgres()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def moto_server():
    server = start_moto()
    yield server
    server.stop()


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
