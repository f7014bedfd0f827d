"""The images read their command the way apache/airflow's does: `docker run IMAGE airflow
version`, `IMAGE bash ...`, `IMAGE python ...` run after the start-up sequence (secrets
resolved first), and Airflow's role commands start the matching role. Each runs as an
arbitrary UID with GID 0 on a read-only root, as on ECS."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from tests.support.images import docker, image

PLANTED = "planted-value-7f3a"


@pytest.fixture(scope="module")
def secret_file():
    """The file AIRFLOW_VAR_GREETING_FILE names (world-readable: an arbitrary UID reads it)."""
    with tempfile.TemporaryDirectory(dir="/tmp") as scratch:
        path = Path(scratch) / "greeting"
        path.write_text(PLANTED)
        os.chmod(scratch, 0o755)
        path.chmod(0o644)
        yield path


def run(*command: str, secret: Path | None = None, role: str = "base", env=()):
    args = ["run", "--rm", "--user", "12345:0", "--read-only", "--tmpfs", "/tmp",
            "--tmpfs", "/opt/airflow/logs", "-e", "AIRFLOW_ECS_DAGS_SOURCE=image"]
    if secret is not None:
        args += ["-v", f"{secret}:/run/secrets/greeting:ro",
                 "-e", "AIRFLOW_VAR_GREETING_FILE=/run/secrets/greeting"]
    for item in env:
        args += ["-e", item]
    return docker(*args, image(role), *command, check=False, timeout=300)


def test_airflow_version_runs_as_airflow_would(secret_file):
    """Expected exit code 0 and Airflow's version (3.3.x) on the last line."""
    result = run("airflow", "version", secret=secret_file)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1].startswith("3.3.")
    assert "invalid choice" not in result.stderr


def test_a_word_that_is_no_program_is_an_airflow_subcommand():
    """Expected exit code 0: `IMAGE version` is `airflow version`, as in apache/airflow."""
    result = run("version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1].startswith("3.3.")


def test_bash_runs_after_the_secrets_are_resolved(secret_file):
    """Expected exit code 0; the shell sees AIRFLOW_VAR_GREETING resolved from its _FILE."""
    result = run("bash", "-c", 'echo "ok $AIRFLOW_VAR_GREETING"', secret=secret_file)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == f"ok {PLANTED}"


def test_python_runs_after_the_secrets_are_resolved(secret_file):
    """Expected exit code 0; prints 1 and the resolved value."""
    result = run("python", "-c", "import os; print(1, os.environ['AIRFLOW_VAR_GREETING'])",
                 secret=secret_file)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == f"1 {PLANTED}"


def test_a_missing_program_exits_127_naming_it():
    """Expected exit code 127 (`exec`: not found), naming the program."""
    result = run("/no/such/program")
    assert result.returncode == 127
    assert "/no/such/program" in result.stderr


@pytest.mark.parametrize("official,ours", [
    (["scheduler"], ["run", "scheduler"]),
    (["api-server"], ["run", "webserver"]),
    (["dag-processor"], ["run", "dag-processor"]),
    (["triggerer"], ["run", "triggerer"]),
    (["celery", "worker"], ["run", "worker"]),
])
def test_airflow_role_commands_start_the_matching_role(official, ours):
    """Expected exit code 78 for both, with the same problems listed: the role's own
    configuration check ran (no database, broker or keys are given here)."""
    theirs = run(*official)
    expected = run(*ours)
    assert theirs.returncode == expected.returncode == 78, theirs.stderr
    assert theirs.stderr == expected.stderr
    assert "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN" in theirs.stderr


def test_help_lists_our_commands():
    """Expected exit code 0; --help (the images' default command) lists our commands."""
    result = run("--help")
    assert result.returncode == 0, result.stderr
    for command in ("run", "exec", "health", "check", "sync-dags"):
        assert command in result.stdout
