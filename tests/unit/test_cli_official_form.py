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


# What the container starts and the health probes run, each read without argparse, and what
# only the parser reads (options, a bad role, more than one `--`).
FAST = [["run", "worker"], ["run", "scheduler+dag-processor+triggerer", "--"],
        ["run", "worker", "--", "-q", "heavy"],
        ["exec", "--", "true"], ["exec", "--", "bash", "-c", "echo -- ok"],
        ["exec", "--", "airflow", "dags", "list", "--", "x"], ["health", "scheduler"],
        ["health", "scheduler + triggerer"]]
PARSER_ONLY = [["run"], ["run", "-h"], ["run", "nosuchrole"], ["run", "worker", "x"],
               ["run", "worker", "--", "--", "x"], ["exec"], ["exec", "--"],
               ["exec", "true"], ["exec", "--", "--", "true"], ["health"],
               ["health", "worker", "extra"], ["health", "--help"], ["health", "nope"],
               ["check"], ["secrets"], ["sync-dags", "--loop"], ["--version"]]


def _meaning(args):
    """What _dispatch reads of the arguments."""
    out = {"command": args.command, "role": getattr(args, "role", None)}
    for name in ("extra", "argv"):
        if hasattr(args, name):
            out[name] = cli._strip_dashes(getattr(args, name))
    return out


@pytest.mark.parametrize("argv", FAST)
def test_the_fast_path_reads_a_line_as_the_parser_does(argv):
    fast = cli._fast_args(argv)
    assert fast is not None, argv
    assert _meaning(fast) == _meaning(cli.build_parser().parse_args(argv))


@pytest.mark.parametrize("argv", PARSER_ONLY)
def test_other_lines_go_through_the_parser(argv):
    assert cli._fast_args(argv) is None
