"""Roles: their initialisation and how each is launched (what each runs is its row in
the role table, rolenames.TABLE).

A single role replaces the entrypoint with Airflow's process (`os.execvpe`),
so tini delivers ECS's SIGTERM straight to Airflow and no Python parent
lingers. A `+`-joined group, or a role that keeps syncing DAGs beside it,
runs under supervisord (see `entrypoint.group`).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from entrypoint import config, defaults, logins, rolenames
from entrypoint.config import Settings
from entrypoint.errors import ConfigError
from entrypoint.log import log

SYNC_LOOP = ("airflow-ecs", "sync-dags", "--loop")


@dataclass(frozen=True)
class Program:
    name: str
    argv: tuple[str, ...]
    stop_seconds: int = 30


@dataclass(frozen=True)
class Launch:
    kind: str  # "exec" | "group" | a program of ours: "migrate", "metrics" (Role.program)
    env: dict[str, str]
    argv: tuple[str, ...] = ()
    programs: tuple[Program, ...] = field(default_factory=tuple)


def _stop_seconds(member: rolenames.Role, settings: Settings) -> int:
    # A worker's warm shutdown may use the whole stop timeout; the others stop
    # in seconds. supervisord's SIGKILL must come after Celery's own deadline.
    if member.warm_shutdown:
        return max(settings.stop_timeout - 2, 5)
    return min(30, max(settings.stop_timeout - 2, 5))


def prepare(role: str, settings: Settings, env: Mapping[str, str],
            extra_args: Sequence[str] = (), command: Sequence[str] = ()) -> Launch:
    """Initialise the role (files it needs at start) and say how to launch it."""
    env = dict(env)
    if role == "exec":
        return Launch(kind="exec", env=env, argv=tuple(command))
    members = rolenames.rows(role)
    if len(members) == 1 and extra_args and not members[0].extra_args:
        raise ConfigError(f"the {role} role takes no extra arguments")
    if len(members) == 1 and members[0].program is not None:
        return Launch(kind=members[0].program, env=env)
    if any(m.admin_login for m in members):
        path = defaults.write_admin_password_file(settings, env)
        if path:
            log.info("admin login %r configured for the webserver", settings.admin_username)
        logins.prepare_webserver(settings, env)
    # In versioned mode the dag-processor's bundle refreshes the DAGs itself, and
    # workers fetch each task's version: no sync runs beside any role.
    syncing = (settings.dags_source != "image" and settings.dags_refresh_seconds > 0
               and not settings.dags_versioned)
    if len(members) == 1 and not syncing:
        return Launch(kind="exec", env=env, argv=members[0].argv + tuple(extra_args))
    if extra_args and len(members) > 1:
        raise ConfigError(f"extra arguments can't be given to the group {role!r}; set the "
                          "roles' options through AIRFLOW__SECTION__KEY variables instead")
    programs = [Program(m.name, m.argv + tuple(extra_args), _stop_seconds(m, settings))
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
    program = PROGRAMS.get(launch.kind)
    if program is None:
        raise AssertionError(launch.kind)
    raise SystemExit(program(launch.env))


# --- our own programs, run in-process (the roles whose row names one: Role.program) ---
def _run_migrate(env: dict[str, str]) -> int:
    from entrypoint.migrations import run_migrations

    settings = config.load(env)
    run_migrations(settings, env)
    log.info("migrations done; the webserver writes the admin login from %s at its "
             "start", config.ADMIN_PASSWORD_VAR)
    return 0


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


PROGRAMS: dict[str, Callable[[dict[str, str]], int]] = {
    "migrate": _run_migrate,
    "metrics": _run_metrics,
}
