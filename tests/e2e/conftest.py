"""Session fixtures: the images built once, the stack started once, logs on failure."""

from __future__ import annotations

import os
import subprocess

import pytest

os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")
os.environ.setdefault("TESTCONTAINERS_CONNECTION_MODE", "docker_host")

from tests.e2e.stack import Stack, build_test_images
from tests.support.images import ROOT


def started_stack(tmp_path_factory, **options):
    """A started Stack(**options), the images built first; stopped after the yield."""
    subprocess.run(["make", "-s", "build"], cwd=ROOT, check=True, capture_output=True)
    build_test_images()
    environment = Stack(tmp_path_factory.mktemp("stack"), **options)
    try:
        environment.start()
    except BaseException:
        print(environment.all_logs())
        environment.stop()
        raise
    yield environment
    environment.stop()


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    yield from started_stack(tmp_path_factory)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed:
        for name in ("stack", "versions_stack"):
            if name in item.funcargs:
                report.sections.append(("containers' logs", item.funcargs[name].all_logs()))


@pytest.fixture(scope="module")
def versions_stack(tmp_path_factory):
    """The DAGs as a versioned bundle (AIRFLOW_ECS_DAGS_VERSIONED), one worker; Celery's
    broker and results on Valkey, the engine docs/deploy.md creates on ElastiCache."""
    yield from started_stack(tmp_path_factory, versioned=True, workers=1,
                             project="e2e-versions", broker="valkey")
