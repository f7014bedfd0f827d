"""The roles, declared once: one row per role, importable without the rest of the runtime.

Every module that behaves per role reads the row here rather than keeping its own
list: the command line's role parsing and the official image's command form (cli),
the settings a role requires (checks), what it waits for at start (waits), how it is
launched (roles) and how its health is probed (probe.health). They look rows up when
they run, so a row added here (a test adds one) is followed everywhere at once.

Adding a role is a row here, plus whatever behaviour is new: an Airflow command
with the existing kinds of waits and health probes needs nothing else; a program of
our own needs its launch in `roles.PROGRAMS`, a new kind of health probe its code in
`probe.health`.

`airflow-ecs health ROLE` parses a role too, and runs every 30 s: it must not pay
for the configuration module to do so. This module imports only `typing` (already
loaded by every entry point), not even `dataclasses` (which loads `inspect`).
"""

from __future__ import annotations

from typing import Any

# --- what a row refers to ---------------------------------------------------------------------
# Settings a role requires (`checks`: "required setting: NAME (needed by ROLE)"), and
# the options its probe reads; each name is spelled once, in entrypoint.airflow_names.
from entrypoint.airflow_names import (
    BROKER_URL,
    DB_URL,
    EXECUTION_API_URL,
    FLOWER_PORT,
    RESULT_BACKEND,
    SHARED_KEYS,
)

# What a role waits for at start (`waits.wait_for_dependencies`), where it is configured.
REDIS = "redis"  # an authenticated PING to the broker
DB = "db"  # a query on the metadata database
SCHEMA = "schema"  # the schema at Airflow's head (or migrating it, AIRFLOW_ECS_DB_MIGRATE)
EXECUTION_API = "execution-api"  # the api-server's execution API answers
WAITS = (REDIS, DB, SCHEMA, EXECUTION_API)


class _Row:
    """A record with a repr; plain classes with __slots__, not NamedTuples: creating a
    NamedTuple class is a cost every health probe would pay at import."""

    __slots__: tuple[str, ...] = ()

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"{type(self).__name__}({fields})"


# The kinds of health probe (`probe.health`).
class Heartbeat(_Row):
    """Healthy while the role's job on this host, in Airflow's `job` table, has a heartbeat
    younger than the threshold (Airflow's own option, read from threshold_var)."""

    __slots__ = ("job_type", "threshold_var")

    def __init__(self, job_type: str, threshold_var: str) -> None:
        self.job_type = job_type
        self.threshold_var = threshold_var


class HttpGet(_Row):
    """Healthy while http://127.0.0.1:PORT/PATH answers below HTTP 400 (PORT: the value of
    port_var, else default_port)."""

    __slots__ = ("port_var", "default_port", "path")  # noqa: RUF023 - repr order

    def __init__(self, port_var: str, default_port: str, path: str) -> None:
        self.port_var = port_var
        self.default_port = default_port
        self.path = path


class CeleryPing(_Row):
    """Healthy while this host's Celery worker answers a ping sent to it alone through the
    broker: the worker pings itself every interval_var seconds and records the outcome,
    which the probe reads; without a usable record, the probe sends the ping."""

    __slots__ = ("interval_var",)

    def __init__(self, interval_var: str) -> None:
        self.interval_var = interval_var


HealthProbe = Heartbeat | HttpGet | CeleryPing


class Role(_Row):
    """One row of the table. Rows are not changed in place: a test adds or replaces rows.

    - name: as ROLE says it.
    - command: what the role runs, Airflow's command (the argv after `airflow`; the
      official apache/airflow image takes the same words as its command), and/or
    - program: a program of ours run in-process (the kind of `roles.Launch`, run by
      `roles.PROGRAMS`). Neither: not a role (`EXEC` below).
    - extra_args: whether `-- EXTRA_ARGS` are accepted (and appended to the command).
      False: refused, and the official form `<command> ARGS...` runs Airflow's command
      rather than the role.
    - needs: the settings it refuses to start without, in the order problems are listed.
    - waits_for: what it waits for at start (WAITS).
    - health: how `airflow-ecs health` probes it; None: "no health probe for this role".
    - groupable: whether it may be '+'-joined with others into a process group under
      supervisord.
    - checked_by_default: whether `airflow-ecs check` without a role checks it (the
      long-running Airflow roles; not the one-off migration, nor our metrics sidecar).
    - warm_shutdown: its stop may take the whole stop timeout (a Celery worker finishing
      its tasks); other group members get at most 30 s.
    - admin_login: it serves the UI's login, so requires the admin password (Airflow's
      SimpleAuthManager) and writes the password file at start.
    - runs_executor: it runs the executor, which must be the CeleryExecutor.
    """

    __slots__ = ("name", "command", "program", "extra_args", "needs",  # noqa: RUF023 - repr order
                 "waits_for", "health", "groupable", "checked_by_default", "warm_shutdown",
                 "admin_login", "runs_executor")

    def __init__(self, name: str, *, command: tuple[str, ...] | None = None,
                 program: str | None = None, extra_args: bool = True,
                 needs: tuple[str, ...] = (), waits_for: frozenset[str] = frozenset(),
                 health: HealthProbe | None = None, groupable: bool = False,
                 checked_by_default: bool = False, warm_shutdown: bool = False,
                 admin_login: bool = False, runs_executor: bool = False) -> None:
        self.name = name
        self.command = command
        self.program = program
        self.extra_args = extra_args
        self.needs = needs
        self.waits_for = waits_for
        self.health = health
        self.groupable = groupable
        self.checked_by_default = checked_by_default
        self.warm_shutdown = warm_shutdown
        self.admin_login = admin_login
        self.runs_executor = runs_executor

    @property
    def argv(self) -> tuple[str, ...]:
        """The Airflow command line this role execs."""
        if self.command is None:
            raise ValueError(f"the {self.name} role runs no Airflow command")
        return ("airflow", *self.command)

    def replace(self, **changes: Any) -> Role:
        """A copy of this row with some fields changed."""
        fields = {name: getattr(self, name) for name in self.__slots__}
        fields.update(changes)
        return Role(**fields)


# --- the table --------------------------------------------------------------------------------
# Its order is the order roles are listed in messages and help.
TABLE: tuple[Role, ...] = (
    Role("scheduler", command=("scheduler",),
         needs=(DB_URL, BROKER_URL, RESULT_BACKEND, *SHARED_KEYS),
         waits_for=frozenset({REDIS, DB, SCHEMA}),
         health=Heartbeat("SchedulerJob",
                          "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_THRESHOLD"),
         groupable=True, checked_by_default=True, runs_executor=True),
    Role("dag-processor", command=("dag-processor",),
         needs=(DB_URL, *SHARED_KEYS),
         waits_for=frozenset({DB, SCHEMA}),
         health=Heartbeat("DagProcessorJob", "AIRFLOW__DAG_PROCESSOR__HEALTH_CHECK_THRESHOLD"),
         groupable=True, checked_by_default=True),
    Role("triggerer", command=("triggerer",),
         needs=(DB_URL, *SHARED_KEYS),
         waits_for=frozenset({DB, SCHEMA}),
         health=Heartbeat("TriggererJob",
                          "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD"),
         groupable=True, checked_by_default=True),
    Role("webserver", command=("api-server",),
         needs=(DB_URL, *SHARED_KEYS),
         waits_for=frozenset({DB, SCHEMA}),
         health=HttpGet("AIRFLOW_ECS_API_PORT", "8080", "/api/v2/monitor/health"),
         groupable=True, checked_by_default=True, admin_login=True),
    Role("worker", command=("celery", "worker"),
         needs=(DB_URL, BROKER_URL, RESULT_BACKEND, EXECUTION_API_URL, *SHARED_KEYS),
         waits_for=frozenset({REDIS, DB, SCHEMA, EXECUTION_API}),
         health=CeleryPing("AIRFLOW_ECS_WORKER_PING_SECONDS"),
         groupable=True, checked_by_default=True, warm_shutdown=True),
    Role("flower", command=("celery", "flower"),
         needs=(BROKER_URL,),
         waits_for=frozenset({REDIS}),
         health=HttpGet(FLOWER_PORT, "5555", "/healthcheck"),
         groupable=True, checked_by_default=True),
    # One-off: `airflow db migrate` under our lock (entrypoint.migrations), then exit.
    Role("migrate", command=("db", "migrate"), program="migrate", extra_args=False,
         needs=(DB_URL,),
         waits_for=frozenset({DB})),
    # Our CloudWatch metrics publisher (entrypoint.programs.metrics); extra arguments are
    # accepted and unused.
    Role("metrics", program="metrics",
         needs=(BROKER_URL,),
         waits_for=frozenset({REDIS})),
)

# `airflow-ecs exec -- CMD` (and `wait`): any command after the start-up sequence. Not
# a role ROLE accepts; it requires nothing and waits for what is configured of these.
EXEC = Role("exec", waits_for=frozenset({REDIS, DB}))


# --- lookups (at call time, so that a row added to TABLE is followed) --------------------------
def names() -> tuple[str, ...]:
    return tuple(r.name for r in TABLE)


def row(name: str) -> Role:
    """The row of one role (or of `exec`); KeyError for any other name."""
    if name == EXEC.name:
        return EXEC
    for candidate in TABLE:
        if candidate.name == name:
            return candidate
    raise KeyError(name)


def rows(role: str) -> tuple[Role, ...]:
    """The rows of a role, or of each member of a '+'-joined group."""
    return tuple(row(name) for name in role.split("+"))


def parse_role(value: str) -> str:
    """Validate ROLE (or a '+'-joined group); return it in canonical form."""
    parts = [p.strip() for p in value.split("+")]
    if len(parts) == 1:
        if parts[0] not in names():
            raise ValueError(f"unknown role {value!r}; choose one of {', '.join(names())} "
                             "or a '+'-joined group such as scheduler+dag-processor+triggerer")
        return parts[0]
    groupable = tuple(r.name for r in TABLE if r.groupable)
    for part in parts:
        if part not in groupable:
            raise ValueError(f"{part!r} can't be part of a process group; groups combine "
                             f"{', '.join(groupable)}")
    if len(set(parts)) != len(parts):
        raise ValueError(f"role group {value!r} names a role twice")
    return "+".join(parts)
