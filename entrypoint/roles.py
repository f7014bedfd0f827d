"""Roles: what each one runs, its initialisation, and how it is launched.

A single role replaces the entrypoint with Airflow's process (`os.execvpe`),
so tini delivers ECS's SIGTERM straight to Airflow and no Python parent
lingers. A `+`-joined group, or a role that keeps syncing DAGs beside it,
runs under supervisord (see `entrypoint.group`).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from entrypoint import config, defaults, logins
from entrypoint.config import Settings
from entrypoint.errors import ConfigError
from entrypoint.log import log
from entrypoint.rolenames import COMMANDS

SYNC_LOOP = ("airflow-ecs", "sync-dags", "--loop")


@dataclass(frozen=True)
class Program:
    name: str
    argv: tuple[str, ...]
    stop_seconds: int = 30


@dataclass(frozen=True)
class Launch:
    kind: str  # "exec" | "group" | "migrate"
    env: dict[str, str]
    argv: tuple[str, ...] = ()
    programs: tuple[Program, ...] = field(default_factory=tuple)


def _stop_seconds(member: str, settings: Settings) -> int:
    # A worker's warm shutdown may use the whole stop timeout; the others stop
    # in seconds. supervisord's SIGKILL must come after Celery's own deadline.
    if member == "worker":
        return max(settings.stop_timeout - 2, 5)
    return min(30, max(settings.stop_timeout - 2, 5))


def prepare(role: str, settings: Settings, env: Mapping[str, str],
            extra_args: Sequence[str] = (), command: Sequence[str] = ()) -> Launch:
    """Initialise the role (files it needs at start) and say how to launch it."""
    env = dict(env)
    if role == "exec":
        return Launch(kind="exec", env=env, argv=tuple(command))
    if role == "migrate":
        if extra_args:
            raise ConfigError("the migrate role takes no extra arguments")
        return Launch(kind="migrate", env=env)
    if role == "metrics":
        return Launch(kind="metrics", env=env)
    members = role.split("+")
    if "webserver" in members:
        path = defaults.write_admin_password_file(settings, env)
        if path:
            log.info("admin login %r configured for the webserver", settings.admin_username)
        logins.prepare_webserver(settings, env)
    syncing = settings.dags_source != "image" and settings.dags_refresh_seconds > 0
    if len(members) == 1 and not syncing:
        return Launch(kind="exec", env=env, argv=COMMANDS[role] + tuple(extra_args))
    if extra_args and len(members) > 1:
        raise ConfigError(f"extra arguments can't be given to the group {role!r}; set the "
                          "roles' options through AIRFLOW__SECTION__KEY variables instead")
    programs = [Program(m, COMMANDS[m] + tuple(extra_args), _stop_seconds(m, settings))
                for m in members]
    if syncing:
        programs.append(Program("sync-dags", SYNC_LOOP, 10))
    return Launch(kind="group", env=env, programs=tuple(programs))


def execute(launch: Launch) -> None:
    """Become the role. Returns only for roles that run in-process and then exit."""
    if launch.kind == "exec":
        # Only the program (and an Airflow subcommand): arguments may hold anything.
        shown = launch.argv[:3] if launch.argv[0] == "airflow" else launch.argv[:1]
        log.info("starting %s", " ".join(shown))
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            os.execvpe(launch.argv[0], list(launch.argv), launch.env)
        except FileNotFoundError:
            log.error("command not found: %s (is it on PATH?)", launch.argv[0])
            raise SystemExit(127) from None
        except PermissionError:
            log.error("command not executable: %s", launch.argv[0])
            raise SystemExit(126) from None
    if launch.kind == "group":
        from entrypoint.group import run_group

        raise SystemExit(run_group(launch.programs, launch.env))
    if launch.kind == "migrate":
        from entrypoint.migrations import run_migrations

        settings = config.load(launch.env)
        run_migrations(settings, launch.env)
        log.info("migrations done; the webserver writes the admin login from %s at its "
                 "start", config.ADMIN_PASSWORD_VAR)
        raise SystemExit(0)
    if launch.kind == "metrics":
        raise SystemExit(_run_metrics(launch.env))
    raise AssertionError(launch.kind)


def _run_metrics(env: dict[str, str]) -> int:
    import signal
    import threading

    from entrypoint.programs import metrics

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    publisher = metrics.Publisher(metrics.settings_from(config.load(env), env), env)
    publisher.run(stop)
    return 0
