"""Command lines written for the official apache/airflow image run unchanged."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from entrypoint import cli


@pytest.mark.parametrize("argv,expected", [
    (["scheduler"], ["run", "scheduler", "--"]),
    (["scheduler", "--num-runs", "3"], ["run", "scheduler", "--", "--num-runs", "3"]),
    (["api-server"], ["run", "webserver", "--"]),
    (["dag-processor"], ["run", "dag-processor", "--"]),
    (["triggerer"], ["run", "triggerer", "--"]),
    (["celery", "worker"], ["run", "worker", "--"]),
    (["celery", "worker", "-q", "heavy"], ["run", "worker", "--", "-q", "heavy"]),
    (["celery", "flower"], ["run", "flower", "--"]),
    (["db", "migrate"], ["run", "migrate", "--"]),
    # `db migrate` with options is Airflow's own command, not the role (which takes none).
    (["db", "migrate", "--to-revision", "abc"],
     ["exec", "--", "airflow", "db", "migrate", "--to-revision", "abc"]),
    (["airflow", "dags", "list"], ["exec", "--", "airflow", "dags", "list"]),
    (["bash", "-c", "echo ok"], ["exec", "--", "bash", "-c", "echo ok"]),
    (["/bin/true"], ["exec", "--", "/bin/true"]),
    # Not a program on PATH: an Airflow subcommand, as the official image reads it.
    (["dags", "list"], ["exec", "--", "airflow", "dags", "list"]),
    (["version"], ["exec", "--", "airflow", "version"]),
])
def test_official_forms(argv, expected, monkeypatch):
    # As in the images: Airflow's venv first on PATH.
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}:/usr/bin:/bin")
    assert cli.official_form(argv) == expected


@pytest.mark.parametrize("argv", [
    [], ["--help"], ["-h"], ["--version"], ["run", "worker"], ["exec", "--", "true"],
    ["health", "worker"], ["check"], ["sync-dags", "--status"], ["secrets"], ["wait"],
    ["render"], ["deploy"],
])
def test_our_commands_stay_ours(argv):
    assert cli.official_form(argv) == argv


def test_our_commands_are_the_parsers():
    parser = cli.build_parser()
    (sub,) = [a for a in parser._actions if a.dest == "command"]
    assert tuple(sub.choices) == cli.OUR_COMMANDS


def test_help_still_lists_our_commands_and_the_convention(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for command in cli.OUR_COMMANDS:
        assert command in out
    assert "celery worker" in out and "apache/airflow" in out


def test_an_empty_command_is_a_usage_error_not_an_internal_one(monkeypatch):
    monkeypatch.setenv("AIRFLOW_ECS_DAGS_SOURCE", "image")
    assert cli.main(["exec", "--", ""]) == 78
