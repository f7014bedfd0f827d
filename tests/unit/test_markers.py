"""The markers pyproject.toml registers are on the tests (tests/conftest.py puts them there):
`-m "not images and not e2e"` (make test-fast) selects the unit and integration tests and
nothing else."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import _airflow_importers

ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "tests"


def collect(*args: str) -> tuple[list[str], str]:
    """The test ids `pytest --collect-only` selects with args, and its summary line."""
    result = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q",
                             "-p", "no:cacheprovider", *args], cwd=ROOT, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode in (0, 5), result.stdout + result.stderr  # 5: none selected
    lines = result.stdout.splitlines()
    return [line for line in lines if "::" in line], lines[-1] if lines else ""


def test_image_and_end_to_end_tests_are_left_out_of_the_fast_selection():
    every, _ = collect("tests/images", "tests/e2e")
    assert {test.split("/")[1] for test in every} == {"images", "e2e"}
    selected, summary = collect("-m", "not images and not e2e", "tests/images", "tests/e2e")
    assert selected == []
    assert f"{len(every)} deselected" in summary, summary


def test_each_test_carries_the_marker_of_its_folder(request):
    # The tests collected with this one: all of them under `make test`, unit and
    # integration under `make test-fast`.
    items = request.session.items
    assert request.node in items
    for item in items:
        folder = item.path.relative_to(TESTS).parts[0]
        marks = {mark.name for mark in item.iter_markers()}
        assert marks & {"integration", "images", "e2e"} == (
            {folder} if folder in ("integration", "images", "e2e") else set()), item.nodeid


def test_airflow_imports_are_found_when_a_module_loads_and_when_a_test_runs(tmp_path):
    source = tmp_path / "test_sample.py"
    source.write_text(
        "import os\n"
        "def test_plain():\n    import json\n"
        "def test_imports():\n    from airflow.sdk import dag\n"
        "class TestGroup:\n    def test_method(self):\n        import airflow.models\n"
        "def test_relative():\n    from .airflow import x\n")
    assert _airflow_importers(source) == (False, {"test_imports", "test_method"})
    source = tmp_path / "test_guarded.py"
    source.write_text("try:\n    import airflow\nexcept ImportError:\n    pass\n"
                      "def test_plain():\n    pass\n")
    assert _airflow_importers(source) == (True, frozenset())
