"""Session fixtures: the images built once, the stack started once, logs on failure."""

from __future__ import annotations

import os
import subprocess

import pytest

os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")
os.environ.setdefault("TESTCONTAINERS_CONNECTION_MODE", "docker_host")

from tests.e2e.stack import Stack, build_test_images
from tests.support.images import ROOT


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    subprocess.run(["make", "-s", "build"], cwd=ROOT, check=True, capture_output=True)
    build_test_images()
    environment = Stack(tmp_path_factory.mktemp("stack"))
    try:
        environment.start()
    except BaseException:
        print(environment.all_logs())
        environment.stop()
        raise
    yield environment
    environment.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed and "stack" in item.funcargs:
        report.sections.append(("containers' logs", item.funcargs["stack"].all_logs()))
