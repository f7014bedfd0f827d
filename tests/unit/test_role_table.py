"""The role table (entrypoint.rolenames.TABLE).

Adding a role is a change in one table plus its behaviour: with a row added (and
nothing else), the command line, the checks, the dependency waits, the launch and
the health probe all follow it. Every row is consistent, and the table says what the
modules' own lists said before there was one.
"""

from __future__ import annotations

import http.server
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from entrypoint import checks, cli, config, rolenames, roles, waits
from entrypoint.airflow_names import (
    API_SECRET_KEY,
    BROKER_URL,
    DB_URL,
    EXECUTION_API_URL,
    FERNET_KEY,
    JWT_SECRET,
    RESULT_BACKEND,
)
from entrypoint.probe import health
from entrypoint.rolenames import (
    DB,
    EXECUTION_API,
    REDIS,
    SCHEMA,
    Heartbeat,
    HttpGet,
    Role,
)

# An Airflow-like long-running role: heartbeat-probed, groupable, checked by default.
DUMMY_JOB = Role(
    "dummy-job", command=("dummy-job",),
    needs=(DB_URL, BROKER_URL),
    waits_for=frozenset({REDIS, DB, SCHEMA}),
    health=Heartbeat("DummyJob", "AIRFLOW__DUMMY__HEALTH_CHECK_THRESHOLD"),
    groupable=True, checked_by_default=True)
# A role on its own: probed over HTTP, waiting for the execution API only, taking no
# extra arguments, left out of a check without a role.
DUMMY_HTTP = Role(
    "dummy-http", command=("dummy", "serve"), extra_args=False,
    needs=(EXECUTION_API_URL,),
    waits_for=frozenset({EXECUTION_API}),
    health=HttpGet("AIRFLOW_DUMMY_PORT", "9", "/dummy/health"))

ENV = {
    DB_URL: "postgresql+psycopg2://airflow:pw@db.invalid:5432/airflow",
    BROKER_URL: "redis://:pw@redis.invalid:6379/0",
    EXECUTION_API_URL: "http://api.invalid:8080/execution/",
}


@pytest.fixture
def dummy_roles(monkeypatch):
    """The two dummy rows added to the table, and nothing else changed."""
    monkeypatch.setattr(rolenames, "TABLE", (*rolenames.TABLE, DUMMY_JOB, DUMMY_HTTP))


@pytest.fixture
def no_programs_on_path(monkeypatch):
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}:/usr/bin:/bin")


# --- adding a role is a row --------------------------------------------------------------------
def test_without_the_row_the_role_is_unknown(no_programs_on_path):
    with pytest.raises(ValueError, match="unknown role 'dummy-job'"):
        rolenames.parse_role("dummy-job")
    assert cli.official_form(["dummy-job"]) == ["exec", "--", "airflow", "dummy-job"]
    assert cli._fast_args(["health", "dummy-job"]) is None


def test_the_command_line_parses_the_new_role(dummy_roles, no_programs_on_path):
    assert rolenames.parse_role("dummy-job") == "dummy-job"
    assert rolenames.parse_role("scheduler + dummy-job") == "scheduler+dummy-job"
    with pytest.raises(ValueError, match=r"'dummy-http' can't be part of a process group; "
                                         r"groups combine .*flower, dummy-job$"):
        rolenames.parse_role("scheduler+dummy-http")
    with pytest.raises(ValueError, match=r"choose one of .*metrics, dummy-job, dummy-http"):
        rolenames.parse_role("dummy")

    parser = cli.build_parser()
    assert parser.parse_args(["run", "dummy-http"]).role == "dummy-http"
    assert parser.parse_args(["check", "dummy-job+worker"]).role == "dummy-job+worker"
    assert "dummy-job" in parser.format_help() and "dummy serve" in parser.format_help()
    assert cli._fast_args(["health", "scheduler+dummy-job"]).role == "scheduler+dummy-job"

    # The official image's form: the role's Airflow command starts the role...
    assert cli.official_form(["dummy-job", "-v"]) == ["run", "dummy-job", "--", "-v"]
    assert cli.official_form(["dummy", "serve"]) == ["run", "dummy-http", "--"]
    # ...and a role that takes no extra arguments leaves a longer line to Airflow.
    assert cli.official_form(["dummy", "serve", "-v"]) == \
        ["exec", "--", "airflow", "dummy", "serve", "-v"]


def test_the_new_role_is_launched_from_its_row(dummy_roles):
    settings = config.load({"AIRFLOW_ECS_STOP_TIMEOUT": "120"})
    launch = roles.prepare("dummy-job", settings, {}, ["-v"])
    assert (launch.kind, launch.argv) == ("exec", ("airflow", "dummy-job", "-v"))
    group = roles.prepare("dummy-job+worker", settings, {})
    assert [(p.name, p.argv, p.stop_seconds) for p in group.programs] == [
        ("dummy-job", ("airflow", "dummy-job"), 30),
        ("worker", ("airflow", "celery", "worker"), 118)]
    with pytest.raises(Exception, match="the dummy-http role takes no extra arguments"):
        roles.prepare("dummy-http", settings, {}, ["-v"])


def test_the_checks_require_what_the_row_needs(dummy_roles):
    settings = config.load({})
    assert checks.check("dummy-job", settings, ENV) == []
    assert checks.check("dummy-http", settings, ENV) == []

    problems = checks.check("dummy-job", settings, {k: v for k, v in ENV.items() if k != DB_URL})
    assert [p.split(";")[0] for p in problems] == \
        [f"required setting: {DB_URL} (needed by dummy-job)"]
    problems = checks.check("scheduler+dummy-job", settings,
                            {k: v for k, v in ENV.items() if k != BROKER_URL})
    assert f"required setting: {BROKER_URL} (needed by scheduler, dummy-job)" in \
        [p.split(";")[0] for p in problems]
    problems = checks.check("dummy-http", settings, {})
    assert [p.split(";")[0] for p in problems] == \
        [f"required setting: {EXECUTION_API_URL} (needed by dummy-http)"]

    # `airflow-ecs check` without a role: the row says whether it is included.
    assert "dummy-job" in checks.members(None)
    assert "dummy-http" not in checks.members(None)
    problems = checks.check(None, settings, {})
    assert any(p.startswith(f"required setting: {DB_URL} (needed by ") and "dummy-job" in p
               for p in problems)


def test_the_waits_follow_the_row(dummy_roles, monkeypatch):
    assert waits.needs("dummy-job") == (True, True, True, False)
    assert waits.needs("dummy-http") == (False, False, False, True)
    assert waits.needs("dummy-http+flower") == (True, False, False, True)

    waited = []
    monkeypatch.setattr(waits, "_wait", lambda what, target, *_a, **_k: waited.append(what))
    settings = config.load({})
    waits.wait_for_dependencies("dummy-job", settings, ENV)
    assert waited == ["Redis", "the metadata database",
                      "the schema migrated to Airflow's head revision"]
    waited.clear()
    waits.wait_for_dependencies("dummy-http", settings, ENV)
    assert waited == ["the execution API"]


def test_the_health_probe_selects_the_rows_job(dummy_roles, monkeypatch):
    queried = []

    def ages(url, job_types, host, timeout):
        queried.append(job_types)
        return {"SchedulerJob": 1.0, "DummyJob": 4.0}

    monkeypatch.setattr(health, "_heartbeat_ages", ages)
    result = health.probe("scheduler+dummy-job", ENV)
    assert result.healthy, result.reason
    assert "dummy-job: heartbeat 4s ago" in result.reason
    assert queried == [["SchedulerJob", "DummyJob"]]  # one query for the group's jobs

    # The threshold is the row's option.
    result = health.probe("dummy-job", {**ENV, "AIRFLOW__DUMMY__HEALTH_CHECK_THRESHOLD": "2"})
    assert not result.healthy
    assert result.reason == "dummy-job: last heartbeat 4s ago (threshold 2s)"


def test_the_health_probe_gets_the_rows_url(dummy_roles):
    paths = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            paths.append(self.path)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        result = health.probe("dummy-http", {"AIRFLOW_DUMMY_PORT": str(port)})
    finally:
        server.shutdown()
        server.server_close()
    assert result.healthy, result.reason
    assert result.reason == f"dummy-http: http://127.0.0.1:{port}/dummy/health answered HTTP 200"
    assert paths == ["/dummy/health"]


def test_a_role_without_a_health_probe_says_so(dummy_roles, monkeypatch):
    monkeypatch.setattr(rolenames, "TABLE",
                        (*rolenames.TABLE, DUMMY_JOB.replace(name="dummy-quiet", health=None)))
    result = health.probe("dummy-quiet", ENV)
    assert not result.healthy
    assert result.reason == "dummy-quiet: no health probe for this role"


# --- every row is consistent --------------------------------------------------------------------
@pytest.mark.parametrize("role", rolenames.TABLE, ids=lambda r: r.name)
def test_row_is_consistent(role):
    assert role.name == role.name.strip().lower() and "+" not in role.name
    assert role.name.replace("-", "").isalpha()
    assert role.name != rolenames.EXEC.name
    # It runs something: an Airflow command, or a program of ours that roles.execute runs.
    assert role.command is not None or role.program is not None
    assert role.program is None or role.program in roles.PROGRAMS
    # supervisord runs a group's members by their command, with the group's arguments.
    if role.groupable:
        assert role.command is not None and role.program is None and role.extra_args
    if role.warm_shutdown:  # the stop time it sets is a group member's
        assert role.groupable
    if role.admin_login or role.runs_executor:
        assert role.command is not None
    # Every required setting can be explained, once.
    assert len(set(role.needs)) == len(role.needs)
    assert set(role.needs) <= set(checks._HOW_TO_SET)
    # It waits only for what it is configured to reach.
    assert role.waits_for <= set(rolenames.WAITS)
    if REDIS in role.waits_for:
        assert BROKER_URL in role.needs
    if role.waits_for & {DB, SCHEMA}:
        assert DB_URL in role.needs
    if SCHEMA in role.waits_for:
        assert DB in role.waits_for
    if EXECUTION_API in role.waits_for:
        assert EXECUTION_API_URL in role.needs
    # A role checked by default is a long-running one, and long-running roles are probed.
    if role.checked_by_default:
        assert role.health is not None and role.command is not None
    if isinstance(role.health, Heartbeat):
        assert role.health.threshold_var.startswith("AIRFLOW__")
        assert DB_URL in role.needs  # the heartbeat is read from the metadata database
    if isinstance(role.health, HttpGet):
        assert role.health.path.startswith("/") and role.health.default_port.isdigit()
    # The command line accepts it.
    assert rolenames.parse_role(role.name) == role.name


def test_rows_do_not_collide():
    names = rolenames.names()
    assert len(set(names)) == len(names)
    jobs = [r.health.job_type for r in rolenames.TABLE if isinstance(r.health, Heartbeat)]
    assert len(set(jobs)) == len(jobs)
    # The official form reads the first command that matches: none may shadow another,
    # nor one of our own commands.
    commands = [r.command for r in rolenames.TABLE if r.command is not None]
    for a in commands:
        assert a[0] not in cli.OUR_COMMANDS
        for b in commands:
            assert a is b or a[:len(b)] != b, f"{a} is read as {b}"


def test_every_pair_of_groupable_roles_is_a_group():
    groupable = [r.name for r in rolenames.TABLE if r.groupable]
    for a in groupable:
        for b in groupable:
            if a != b:
                assert rolenames.parse_role(f"{a}+{b}") == f"{a}+{b}"


def test_exec_is_not_a_role():
    assert rolenames.EXEC not in rolenames.TABLE
    assert rolenames.EXEC.command is None and rolenames.EXEC.program is None
    assert rolenames.EXEC.needs == ()
    with pytest.raises(ValueError, match="unknown role"):
        rolenames.parse_role("exec")
    with pytest.raises(KeyError):
        rolenames.row("nope")


def test_the_table_is_import_light():
    """`airflow-ecs health ROLE` parses a role every 30 s: the table imports nothing of the
    runtime but the module of names, nor dataclasses (inspect)."""
    code = ("import sys; before = set(sys.modules); import entrypoint.rolenames; "
            "print(sorted(m for m in set(sys.modules) - before if m.startswith('entrypoint') "
            "or m in ('dataclasses', 'inspect')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == (
        "['entrypoint', 'entrypoint.airflow_names', 'entrypoint.rolenames']")


# --- what the modules listed before the table -----------------------------------------------------
SHARED = (FERNET_KEY, JWT_SECRET, API_SECRET_KEY)
BEFORE = {
    # rolenames.ROLES, and rolenames.COMMANDS (the argv after `airflow`)
    "commands": {"scheduler": ("scheduler",), "dag-processor": ("dag-processor",),
                 "triggerer": ("triggerer",), "webserver": ("api-server",),
                 "worker": ("celery", "worker"), "flower": ("celery", "flower"),
                 "migrate": ("db", "migrate"), "metrics": None},
    # rolenames.GROUPABLE_ROLES
    "groupable": ("scheduler", "dag-processor", "triggerer", "webserver", "worker", "flower"),
    # checks.members(None): checks.AIRFLOW_ROLES[:-1]
    "checked": ["scheduler", "dag-processor", "triggerer", "webserver", "worker", "flower"],
    # checks._NEEDS
    "needs": {"scheduler": (DB_URL, BROKER_URL, RESULT_BACKEND, *SHARED),
              "dag-processor": (DB_URL, *SHARED), "triggerer": (DB_URL, *SHARED),
              "webserver": (DB_URL, *SHARED),
              "worker": (DB_URL, BROKER_URL, RESULT_BACKEND, EXECUTION_API_URL, *SHARED),
              "flower": (BROKER_URL,), "migrate": (DB_URL,), "metrics": (BROKER_URL,),
              "exec": ()},
    # waits.REDIS_ROLES, DB_ROLES, SCHEMA_ROLES, and the worker's execution API
    "redis": {"scheduler", "worker", "flower", "metrics"},
    "db": {"scheduler", "dag-processor", "triggerer", "webserver", "worker", "migrate"},
    "schema": {"scheduler", "dag-processor", "triggerer", "webserver", "worker"},
    "api": {"worker"},
    # probe.health.JOBS
    "jobs": {"scheduler": ("SchedulerJob", "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_THRESHOLD"),
             "triggerer": ("TriggererJob", "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD"),
             "dag-processor": ("DagProcessorJob",
                               "AIRFLOW__DAG_PROCESSOR__HEALTH_CHECK_THRESHOLD")},
}


def test_the_table_says_what_the_modules_listed_before():
    table = {r.name: r for r in rolenames.TABLE}
    assert tuple(table) == tuple(BEFORE["commands"])
    assert {name: table[name].command for name in table} == BEFORE["commands"]
    assert tuple(r.name for r in rolenames.TABLE if r.groupable) == BEFORE["groupable"]
    assert checks.members(None) == BEFORE["checked"]
    assert {name: rolenames.row(name).needs for name in BEFORE["needs"]} == BEFORE["needs"]
    for position, key in enumerate(("redis", "db", "schema", "api")):
        assert {name for name in table if waits.needs(name)[position]} == BEFORE[key], key
    assert waits.needs("exec") == (True, True, False, False)
    jobs = {r.name: r.health for r in rolenames.TABLE if isinstance(r.health, Heartbeat)}
    assert {name: (job.job_type, job.threshold_var) for name, job in jobs.items()} == \
        BEFORE["jobs"]
    # What was keyed on one role's name.
    assert [r.name for r in rolenames.TABLE if r.warm_shutdown] == ["worker"]
    assert [r.name for r in rolenames.TABLE if r.admin_login] == ["webserver"]
    assert [r.name for r in rolenames.TABLE if r.runs_executor] == ["scheduler"]
    assert [r.name for r in rolenames.TABLE if not r.extra_args] == ["migrate"]
    assert {r.name: r.program for r in rolenames.TABLE if r.program} == \
        {"migrate": "migrate", "metrics": "metrics"}


def test_the_readme_reference_lists_a_row_added_to_the_table(dummy_roles):
    from entrypoint.tools import reference

    rows = [line for line in reference.render_roles() if line.startswith("| `dummy-")]
    assert rows == [
        "| `dummy-job` | `airflow dummy-job` | redis, db, schema | a fresh `DummyJob` heartbeat "
        "on this host (`AIRFLOW__DUMMY__HEALTH_CHECK_THRESHOLD`) | yes |",
        "| `dummy-http` | `airflow dummy serve` | execution-api | HTTP GET `/dummy/health` on "
        "`AIRFLOW_DUMMY_PORT` (default 9) | no |",
    ]


def test_the_readme_reference_lists_every_role():
    from entrypoint.tools import reference

    listed = [line.split("`")[1] for line in reference.render_roles() if line.startswith("| `")]
    assert listed == list(rolenames.names())
