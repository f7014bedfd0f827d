"""Airflow settings tuned for Celery on ECS, applied under the user's environment.

Each default is set only where the variable is absent, so any of them can be
overridden with the usual `AIRFLOW__SECTION__KEY` variable. Airflow's own
defaults were measured to be slow or unsafe for this setup; the reason for
each value is next to it and in the README.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from entrypoint import logins
from entrypoint.airflow_names import (
    API_PORT,
    AUTH_MANAGER,
    DAGS_FOLDER,
    EXECUTOR,
    SIMPLE_AUTH_MANAGER_PASSWORDS_FILE,
    SIMPLE_AUTH_MANAGER_USERS,
    VISIBILITY_TIMEOUT,
    WORKER_CONCURRENCY,
)
from entrypoint.config import ADMIN_PASSWORD_VAR, Settings, exported_env
from entrypoint.logins import SIMPLE_AUTH_MANAGER


@dataclass(frozen=True)
class Default:
    name: str
    value: str
    why: str


def tuned(settings: Settings) -> list[Default]:
    """The defaults for these settings, with the reason for each (the README lists them)."""
    syncing = (settings.dags_source != "image" and settings.dags_refresh_seconds > 0
               and not settings.dags_versioned)
    # New files are found when the dag-processor lists the folder: with a sync
    # period set, list often (listing is cheap) so a synced DAG appears within
    # the sync period plus a few seconds, instead of Airflow's 300 s.
    refresh = "10" if syncing else "60"
    return [*_common(settings, refresh), *(_versioned(settings) if settings.dags_versioned
                                           else [])]


BUNDLE_CLASSES = {"git": "entrypoint.bundles.git.GitDagBundle",
                  "s3": "entrypoint.bundles.s3.S3DagBundle"}
# Airflow's name for its default bundle: DAGs keep their bundle when versioning is
# switched on or off.
BUNDLE_NAME = "dags-folder"


def bundle_config(settings: Settings) -> str:
    """[dag_processor] dag_bundle_config_list naming this image's bundle for the source."""
    import json  # here, like every import a start-up that needs none of it can skip

    kwargs = ({"refresh_interval": settings.dags_refresh_seconds}
              if settings.dags_refresh_seconds > 0 else {})
    return json.dumps([{"name": BUNDLE_NAME, "classpath": BUNDLE_CLASSES[settings.dags_source],
                        "kwargs": kwargs}])


def _versioned(settings: Settings) -> list[Default]:
    return [
        Default("AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST", bundle_config(settings),
                "AIRFLOW_ECS_DAGS_VERSIONED=true: the versioned bundle over the DAG sync, so "
                "each DAG run keeps the DAG version it started with (docs/dags.md); its "
                "refresh_interval is AIRFLOW_ECS_DAGS_REFRESH_SECONDS when set"),
        Default("AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_STORAGE_PATH",
                str(settings.dags_state_dir / "bundles"),
                "DAG versions are kept beside the sync's state (AIRFLOW_ECS_DAGS_STATE_DIR), "
                "on the writable volume, instead of in /tmp"),
        Default("AIRFLOW__DAG_PROCESSOR__STALE_BUNDLE_CLEANUP_INTERVAL", "0",
                "the bundle removes unused versions itself after "
                "AIRFLOW_ECS_DAGS_VERSION_KEEP_SECONDS, renaming each away before deleting "
                "it; Airflow's cleanup deletes a version in place, where a task starting on "
                "it could see half of it"),
    ]


def _common(settings: Settings, refresh: str) -> list[Default]:
    return [
        Default(EXECUTOR, "CeleryExecutor",
                "without it a scheduler silently runs tasks itself with the LocalExecutor"),
        Default("AIRFLOW__CORE__LOAD_EXAMPLES", "False",
                "Airflow otherwise loads 56 example DAGs into every deployment"),
        Default(DAGS_FOLDER, str(settings.dags_dir),
                "the folder the image bakes and the DAG sync publishes (AIRFLOW_ECS_DAGS_DIR)"),
        Default("AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL", refresh,
                "Airflow's 300 s makes new DAG files wait up to five minutes"),
        Default(WORKER_CONCURRENCY, "4",
                "Airflow's 16 slots don't fit a 2 GB Fargate task (4 slots used ~0.9 GB RSS)"),
        Default("AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT", "120",
                "a task on a worker that was killed is retried after 2 minutes instead of 5"),
        Default("AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT", "300",
                "a task whose broker message was lost is requeued after 5 minutes instead of 10 "
                "(long enough for a new Fargate worker to start)"),
        Default(VISIBILITY_TIMEOUT, "21600",
                "a message held by a killed worker is redelivered after 6 h instead of 24 h; "
                "keep it above the longest task's execution_timeout"),
        Default("AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS",
                "entrypoint.worker.celery_config.CELERY_CONFIG",
                "Airflow's Celery config plus the shutdown deadline: a task still running "
                "AIRFLOW_ECS_STOP_TIMEOUT - 10 s after SIGTERM has its message restored to the "
                "queue before ECS kills the container; and a finished task frees its worker "
                "slot the moment its process exits, where Airflow's supervisor could hold it "
                "for [workers] min_heartbeat_interval (5 s; a third of short tasks did). That "
                "fix lets Airflow's 5 s heartbeat stay: at 1 s every running task would call "
                "the API every second. It also drops the heartbeat Airflow sends right after a "
                "task's start call, which has just recorded one (1 of 6 API requests of a "
                "short task). In the scheduler, Celery's database result backend (where one "
                "is used) keeps one pooled connection instead of opening one for each "
                "task-state query (about 10 per fan-out run, each a new PostgreSQL server "
                "process). A worker closes the database connections its start opened before "
                "its pool forks: it held 2 for its life, shared with every pool process. "
                "The scheduler keeps its short pause after an idle loop "
                "(AIRFLOW_ECS_SCHEDULER_BUSY_SLEEP_SECONDS) for while it has tasks out, "
                "Airflow's own at rest (entrypoint.scheduler.pacing); and while Redis does not "
                "answer (restarted or failed over) it neither sends tasks nor reads their "
                "states, where Airflow's scheduler exits and the tasks it sends fail their "
                "try (entrypoint.scheduler.outage). A worker puts the messages it held when "
                "Redis went away back on their queue once Redis answers, where kombu leaves "
                "them for the visibility timeout (entrypoint.worker.restore)"),
        Default("AIRFLOW__CELERY__TASK_TRACK_STARTED", "False",
                "Airflow's Celery executor treats a STARTED result exactly as PENDING, task "
                "adoption included, so recording it only costs every task one more "
                "result-backend write to the database"),
        Default(API_PORT, str(settings.api_port),
                "the port of the webserver role (AIRFLOW_ECS_API_PORT)"),
        Default("AIRFLOW__LOGGING__COLORED_CONSOLE_LOG", "False",
                "CloudWatch Logs shows colour codes as noise"),
        Default(AUTH_MANAGER, logins.FAB_AUTH_MANAGER,
                "team logins: users in the database, managed in the UI, or from LDAP "
                "(AIRFLOW_ECS_LDAP_*), with Airflow's roles; Airflow's SimpleAuthManager "
                "(still selectable with this variable) knows only users listed in its "
                "configuration"),
    ]


def apply(role: str, settings: Settings, env: Mapping[str, str]) -> dict[str, str]:
    """Return env with the tuned defaults filled in where the user set nothing."""
    out = dict(env)
    for default in tuned(settings):
        out.setdefault(default.name, default.value)
    # Processes started beside or inside the role read these settings from its
    # environment (Airflow's worker, the health probe): fill in the value loaded where
    # the variable is unset or blank, which config reads as the default.
    for name, value in exported_env(settings).items():
        if not out.get(name, "").strip():
            out[name] = value
    # An arbitrary UID (OpenShift-style, or ECS `user`) has no passwd entry, and the
    # read-only root filesystem forbids adding one: Airflow's CLI calls
    # getpass.getuser(), which then fails unless USER is set.
    out.setdefault("USER", _user_name())
    if out.get(ADMIN_PASSWORD_VAR) and _uses_simple_auth_manager(out):
        # Users come from configuration, their passwords from a 0600 file the
        # webserver role writes under the scratch directory at start: Airflow's
        # own generated file under AIRFLOW_HOME works with neither a read-only
        # root filesystem nor several webserver tasks.
        out.setdefault(SIMPLE_AUTH_MANAGER_USERS, f"{settings.admin_username}:admin")
        out.setdefault(SIMPLE_AUTH_MANAGER_PASSWORDS_FILE,
                       str(logins.scratch_dir() / "simple-auth-passwords.json"))
    if logins.uses_fab(out):
        # FAB reads webserver_config.py from AIRFLOW_HOME by default, which is read-only
        # here: the webserver generates it in the scratch directory (entrypoint.logins).
        out.setdefault(logins.FAB_CONFIG_FILE, str(logins.config_path(settings)))
    return out


def _user_name() -> str:
    import pwd

    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return "airflow"


def _uses_simple_auth_manager(env: Mapping[str, str]) -> bool:
    return env.get(AUTH_MANAGER, SIMPLE_AUTH_MANAGER) == SIMPLE_AUTH_MANAGER


def write_admin_password_file(settings: Settings, env: Mapping[str, str]) -> Path | None:
    """Write the SimpleAuthManager passwords file (mode 0600) for the webserver role."""
    password = env.get(ADMIN_PASSWORD_VAR)
    path_value = env.get(SIMPLE_AUTH_MANAGER_PASSWORDS_FILE)
    if not password or not path_value or not _uses_simple_auth_manager(env):
        return None
    import json

    path = Path(path_value)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    users = [u.split(":")[0] for u in
             env.get(SIMPLE_AUTH_MANAGER_USERS, "").split(",") if u.strip()]
    passwords = {u.strip(): password for u in users if u.strip() == settings.admin_username}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        os.fchmod(handle.fileno(), 0o600)
        json.dump(passwords, handle)
    return path
