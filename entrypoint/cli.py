"""The `airflow-ecs` command line: parses arguments and maps failures to exit codes.

Imports of the heavier modules happen inside each command, so `health` and
a start-up with nothing to resolve pay only for what they use.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING

from entrypoint import __version__
from entrypoint.errors import (
    EXIT_INTERNAL,
    EXIT_OK,
    EXIT_UNHEALTHY,
    EntrypointError,
    Terminated,
)
from entrypoint.log import log, redact

if TYPE_CHECKING:
    import argparse


def _role(value: str) -> str:
    import argparse

    from entrypoint.rolenames import parse_role

    try:
        return parse_role(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


# The subcommands of build_parser(); any other first word is a command to run after the
# start-up sequence (see official_form).
OUR_COMMANDS = ("run", "exec", "secrets", "wait", "health", "check", "sync-dags", "render",
                "deploy", "cost")


def official_form(argv: Sequence[str]) -> list[str]:
    """Read a command line the way the official apache/airflow image does.

    Every official image (apache/airflow, docker-library's postgres) takes the program
    to run as its command: `docker run IMAGE bash`, `IMAGE airflow dags list`, and
    apache/airflow also `IMAGE scheduler` or `IMAGE celery worker` for its roles and
    `IMAGE dags list` for any Airflow subcommand. So a task definition written for
    apache/airflow runs unchanged on these images:
    - our own commands and options are ours;
    - Airflow's role commands (Role.command in rolenames.TABLE) start the matching role,
      with the rest of the line as the role's extra arguments (`db migrate`, whose role
      takes none, only alone);
    - a program on PATH (or a path) runs after the start-up sequence, as `exec --`;
    - anything else is an Airflow subcommand, run as `airflow ARGS...` after it.
    """
    argv = list(argv)
    if not argv or argv[0] in OUR_COMMANDS or argv[0].startswith("-"):
        return argv
    from entrypoint import rolenames

    for role in rolenames.TABLE:
        if role.command is None:
            continue
        words = list(role.command)
        if argv[:len(words)] == words and (role.extra_args or len(argv) == len(words)):
            return ["run", role.name, "--", *argv[len(words):]]
    import shutil

    if "/" in argv[0] or shutil.which(argv[0]):
        return ["exec", "--", *argv]
    return ["exec", "--", "airflow", *argv]


def build_parser() -> argparse.ArgumentParser:
    import argparse  # here: the health probe's fast path doesn't need it

    from entrypoint import rolenames

    role_commands = ", ".join(" ".join(r.command) for r in rolenames.TABLE if r.command)
    parser = argparse.ArgumentParser(
        prog="airflow-ecs",
        description="Entrypoint runtime of the airflow-ecs images: resolve secrets, sync DAGs, "
        "wait for Redis and the metadata DB, then run an Airflow role.",
        epilog="As with the official apache/airflow image, a first word that is none of these "
        f"commands runs after the start-up sequence: Airflow's role commands ({role_commands}) "
        "start the matching role; a program on PATH runs as itself (airflow dags list, "
        "bash, python -c ...); any other word is an Airflow subcommand (dags list).",
    )
    parser.add_argument("--version", action="version", version=f"airflow-ecs {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the start-up sequence, then the role")
    run.add_argument("role", type=_role, metavar="ROLE",
                     help=f"{', '.join(rolenames.names())}, or a '+'-joined group such as "
                     "scheduler+dag-processor+triggerer")
    run.add_argument("extra", nargs=argparse.REMAINDER, metavar="-- EXTRA_ARGS",
                     help="arguments appended to the role's Airflow command")

    ex = sub.add_parser("exec", help="run the start-up sequence, then exec any command")
    ex.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- CMD [ARGS...]")

    sub.add_parser("secrets", help="resolve secrets and print each variable's NAME and SOURCE "
                   "(never the value)")
    sub.add_parser("wait", help="only the dependency waits")

    health = sub.add_parser("health", help="probe a role's health (exit 0 healthy, 1 not)")
    health.add_argument("role", type=_role, metavar="ROLE")

    check = sub.add_parser("check", help="validate the configuration without side effects")
    check.add_argument("role", type=_role, nargs="?", default=None, metavar="ROLE",
                       help="check what this role needs (default: every role)")

    sync = sub.add_parser("sync-dags", help="sync the DAG folder once (or continuously)")
    mode = sync.add_mutually_exclusive_group()
    mode.add_argument("--loop", action="store_true",
                      help="keep syncing every AIRFLOW_ECS_DAGS_REFRESH_SECONDS")
    mode.add_argument("--status", action="store_true",
                      help="print the last sync's revision and age, then exit")

    render = sub.add_parser("render", help="render the ECS task and service definitions into "
                            "build/task-definitions/ and validate them")
    deploy = sub.add_parser("deploy", help="render, register the task definitions, run the "
                            "migrate task and update the services")
    for p in (render, deploy):
        p.add_argument("--settings", type=Path, default=None, metavar="FILE",
                       help="settings file (JSON); environment variables override it")
        p.add_argument("--out", type=Path, default=Path("build/task-definitions"), metavar="DIR")
    deploy.add_argument("--skip-migrate", action="store_true",
                        help="do not run the migrate task before updating the services")
    cost = sub.add_parser("cost", help="render in memory and print the deployment's monthly "
                          "bill beside AWS MWAA's (Markdown; prices: entrypoint/tools/"
                          "prices.json)")
    cost.add_argument("--settings", type=Path, default=None, metavar="FILE",
                      help="settings file (JSON); environment variables override it")
    cost.add_argument("--region", default=None, metavar="REGION",
                      help="price the deployment in this region (default: the settings' region)")
    return parser


def _strip_dashes(args: list[str]) -> list[str]:
    return args[1:] if args and args[0] == "--" else args


def _fast_args(argv: Sequence[str]) -> SimpleNamespace | None:
    """The command lines of every container start and every health probe, read without
    argparse: `health ROLE`, `run ROLE [-- EXTRA...]` and `exec -- CMD [ARGS...]` (the
    forms official_form writes). ECS and Docker run the probe every 30 s in every
    container, and importing argparse and building the whole parser is CPU each probe and
    each start would pay (BENCHMARKS.md, start-up overhead). Anything else (options, a
    bad role, a second `--`) goes through the parser and its errors; the parser reads these
    forms the same way (tests/unit/test_cli_official_form.py)."""
    command, rest = (argv[0], list(argv[1:])) if argv else ("", [])
    if command == "exec":
        if len(rest) > 1 and rest[0] == "--" and rest[1] != "--":
            return SimpleNamespace(command="exec", argv=rest)
        return None
    if command not in ("health", "run") or not rest or rest[0].startswith("-"):
        return None
    extra = rest[1:]
    if (command == "health" and extra) or (command == "run" and extra and (
            extra[0] != "--" or extra[1:2] == ["--"])):
        return None
    from entrypoint.rolenames import parse_role

    try:
        role = parse_role(rest[0])
    except ValueError:
        return None
    if command == "health":
        return SimpleNamespace(command="health", role=role)
    return SimpleNamespace(command="run", role=role, extra=extra)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    argv = official_form(argv)
    args = _fast_args(argv) or build_parser().parse_args(argv)
    if args.command not in ("run", "exec", "health"):
        # run and exec install them inside the start-up sequence; health is short.
        from entrypoint import procs

        procs.install_signal_handlers()
    try:
        return _dispatch(args)
    except EntrypointError as exc:
        # The message is built without secret values; redact() is a second line of defence.
        log.error("%s failed:\n%s", exc.label, redact(str(exc)))
        return exc.exit_code
    except Terminated as exc:
        log.error("stopped: %s", exc)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - last resort: one line, no traceback with locals
        log.error("internal error: %s: %s", type(exc).__name__, redact(str(exc)))
        return EXIT_INTERNAL


def _dispatch(args: argparse.Namespace | SimpleNamespace) -> int:
    if args.command == "run":
        from entrypoint.startup import start

        start(args.role, extra_args=_strip_dashes(args.extra))
        return EXIT_OK
    if args.command == "exec":
        from entrypoint.errors import ConfigError
        from entrypoint.startup import start

        command = _strip_dashes(args.argv)
        if not command or not command[0]:
            raise ConfigError("usage: airflow-ecs exec -- CMD [ARGS...] (no command given)")
        start("exec", command=command)
        return EXIT_OK
    if args.command == "secrets":
        return _secrets()
    if args.command == "wait":
        return _wait()
    if args.command == "health":
        from entrypoint.probe.health import probe
        from entrypoint.running_env import running_env

        result = probe(args.role, running_env(os.environ))
        print(("healthy: " if result.healthy else "unhealthy: ") + result.reason, flush=True)
        return EXIT_OK if result.healthy else EXIT_UNHEALTHY
    if args.command == "check":
        return _check(args.role)
    if args.command == "sync-dags":
        from entrypoint import config, dagsync

        settings = config.load(os.environ)
        if args.status:
            return dagsync.print_status(settings)
        from entrypoint import secrets

        resolved = secrets.resolve(os.environ, settings)
        if args.loop:
            return dagsync.run_loop(settings, resolved.env)
        dagsync.sync_once(settings, resolved.env, first=True)
        return EXIT_OK
    if args.command == "render":
        from entrypoint.tools.ecs.render import render_all

        for path in render_all(args.settings, dict(os.environ), args.out):
            print(path)
        return EXIT_OK
    if args.command == "deploy":
        from entrypoint.tools.ecs.deploy import deploy

        deploy(args.settings, dict(os.environ), args.out, run_migrate=not args.skip_migrate)
        return EXIT_OK
    if args.command == "cost":
        from entrypoint.tools import cost

        print(cost.run(args.settings, dict(os.environ), args.region), end="", flush=True)
        return EXIT_OK
    raise AssertionError(args.command)


def _secrets() -> int:
    from entrypoint import config, secrets

    settings = config.load(os.environ)
    resolved = secrets.resolve(os.environ, settings)
    for name in sorted(resolved.sources):
        print(f"{name}\t{resolved.sources[name]}")
    return EXIT_OK


def _wait() -> int:
    from entrypoint import config, defaults, secrets, waits

    settings = config.load(os.environ)
    resolved = secrets.resolve(os.environ, settings)
    env = defaults.apply("exec", settings, resolved.env)
    waits.wait_for_dependencies("exec", settings, env)
    return EXIT_OK


def _check(role: str | None) -> int:
    from entrypoint import checks, config, defaults, secrets

    settings = config.load(os.environ)
    resolved = secrets.resolve(os.environ, settings)
    env = defaults.apply(role or "exec", settings, resolved.env)
    problems = checks.check(role, settings, env)
    if problems:
        for problem in problems:
            # Problems are written without secret values; redact() is a second line of defence.
            print(f"problem: {redact(problem)}", file=sys.stderr)
        print(f"{len(problems)} problem(s) found", file=sys.stderr)
        return 78
    print(f"configuration OK for {role or 'every role'}")
    return EXIT_OK
