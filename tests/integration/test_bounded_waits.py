"""Waits and health probes against dependencies that accept connections and then stay
silent (a half-open connection during a failover, a blackholed port) or refuse them:
every one ends at its deadline, honours SIGTERM, and never shows a password."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from entrypoint import config, waits
from entrypoint.errors import ConfigError, WaitTimeout
from entrypoint.probe import health
from tests.support.servers import free_port
from tests.support.silent_servers import blackhole, silent_postgres, silent_resolver
from tests.support.waiting import wait_until

BIN = str(Path(sys.executable).parent / "airflow-ecs")
DRIVERS = ["postgresql", "postgresql+psycopg2", "postgresql+psycopg"]
# The images' HEALTHCHECK timeout: the probe must answer well inside it.
HEALTHCHECK_TIMEOUT = 15.0


@pytest.fixture(scope="module")
def silent_pg():
    with silent_postgres() as server:
        yield server


@pytest.fixture(scope="module")
def hole():
    with blackhole() as server:
        yield server


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(extra)
    return env


def run_cli(args, env, timeout=60):
    started = time.monotonic()
    result = subprocess.run([BIN, *args], env=env, capture_output=True, text=True,
                            timeout=timeout)
    return result, time.monotonic() - started


@pytest.mark.parametrize("driver", DRIVERS)
def test_wait_gives_up_on_a_silent_database_at_its_deadline(silent_pg, driver):
    url = f"{driver}://airflow:silent-secret@127.0.0.1:{silent_pg.port}/airflow"
    started = time.monotonic()
    with pytest.raises(WaitTimeout) as err:
        waits.wait_for_dependencies("exec", config.load({"AIRFLOW_ECS_WAIT_TIMEOUT": "3"}),
                                    {"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": url})
    elapsed = time.monotonic() - started
    assert elapsed <= 3 + 1, elapsed
    message = str(err.value)
    assert f"the metadata database at {driver}://127.0.0.1:{silent_pg.port}" in message
    assert "no answer" in message and "silent-secret" not in message
    assert silent_pg.queries, "the probe never got as far as its query"


@pytest.mark.parametrize("driver", DRIVERS)
def test_cli_wait_on_a_silent_database_exits_81(silent_pg, driver):
    env = clean_env(AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"{driver}://airflow:silent-secret@"
                    f"127.0.0.1:{silent_pg.port}/airflow", AIRFLOW_ECS_WAIT_TIMEOUT="3")
    result, _elapsed = run_cli(["wait"], env, timeout=30)
    assert result.returncode == 81, result.stderr
    assert "no answer" in result.stderr and "the metadata database" in result.stderr
    assert "silent-secret" not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("driver", DRIVERS)
def test_sigterm_while_a_silent_database_holds_the_query(silent_pg, driver):
    env = clean_env(AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"{driver}://airflow:pw@127.0.0.1:"
                    f"{silent_pg.port}/airflow", AIRFLOW_ECS_WAIT_TIMEOUT="300")
    before = len(silent_pg.queries)
    proc = subprocess.Popen([BIN, "wait"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        def query_held():  # its query hangs on the server
            if len(silent_pg.queries) != before:
                return True
            assert proc.poll() is None
            return False

        wait_until(query_held, "the query to reach the server", timeout=20, interval=0.05)
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        _, err = proc.communicate(timeout=10)
        ended = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 143, err
    assert ended <= 2.0 + 0.5, ended


def target(kind, silent_pg, hole):
    """(variable, URL) of a dependency that refuses, stays silent, or blackholes."""
    refused = free_port()
    return {
        "redis-refused": ("AIRFLOW__CELERY__BROKER_URL", f"redis://:pw@127.0.0.1:{refused}/0"),
        "redis-blackhole": ("AIRFLOW__CELERY__BROKER_URL",
                            f"redis://:pw@127.0.0.1:{hole.port}/0"),
        "db-refused": ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
                       f"postgresql+psycopg2://a:pw@127.0.0.1:{refused}/db"),
        "db-blackhole": ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
                         f"postgresql+psycopg2://a:pw@127.0.0.1:{hole.port}/db"),
        "db-silent": ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
                      f"postgresql+psycopg://a:pw@127.0.0.1:{silent_pg.port}/db"),
    }[kind]


@pytest.mark.parametrize("kind", ["redis-refused", "redis-blackhole", "db-refused",
                                  "db-blackhole", "db-silent"])
def test_wait_deadline_is_kept(kind, silent_pg, hole):
    """The back-off never sleeps past the deadline, and no attempt runs past it."""
    name, url = target(kind, silent_pg, hole)
    timeout = 7
    started = time.monotonic()
    with pytest.raises(WaitTimeout):
        waits.wait_for_dependencies(
            "exec", config.load({"AIRFLOW_ECS_WAIT_TIMEOUT": str(timeout)}), {name: url})
    elapsed = time.monotonic() - started
    assert timeout - 0.5 <= elapsed <= timeout + 1, elapsed


@pytest.mark.parametrize("server", ["silent", "blackhole"])
def test_group_health_probe_answers_inside_the_healthcheck_timeout(silent_pg, hole, server):
    port = silent_pg.port if server == "silent" else hole.port
    env = clean_env(AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"postgresql+psycopg2://airflow:"
                    f"hc-secret@127.0.0.1:{port}/airflow")
    result, elapsed = run_cli(["health", "scheduler+dag-processor+triggerer"], env)
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout.startswith("unhealthy: ")
    for member in ("scheduler", "dag-processor", "triggerer"):
        assert member in result.stdout
    assert "hc-secret" not in result.stdout + result.stderr
    assert elapsed <= health.BUDGET + 2 < HEALTHCHECK_TIMEOUT, elapsed


def test_worker_health_probe_with_a_blackholed_broker(hole):
    env = clean_env(AIRFLOW__CELERY__BROKER_URL=f"redis://:hc-secret@127.0.0.1:{hole.port}/0")
    result, elapsed = run_cli(["health", "worker"], env)
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout.startswith("unhealthy: worker")
    assert "hc-secret" not in result.stdout + result.stderr
    assert elapsed <= health.BUDGET + 2 < HEALTHCHECK_TIMEOUT, elapsed


# --- a DNS resolver that never answers -------------------------------------------------
# Behind it, getaddrinfo(3) takes 20 s for one name here (glibc: 5 s a try, 2 tries, A
# and AAAA): longer than any of these deadlines.
UNANSWERED = "deps.example.test"


@pytest.fixture(scope="module")
def no_dns(tmp_path_factory):
    with silent_resolver(tmp_path_factory.mktemp("dns")) as wrap:
        yield wrap


def run_without_dns(wrap, args, env, timeout=60):
    started = time.monotonic()
    result = subprocess.run(wrap([BIN, *args]), env=env, capture_output=True, text=True,
                            timeout=timeout)
    return result, time.monotonic() - started


@pytest.mark.parametrize("name,url", [
    ("AIRFLOW__CELERY__BROKER_URL", f"redis://:dns-secret@{UNANSWERED}:6379/0"),
    ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
     f"postgresql+psycopg2://airflow:dns-secret@{UNANSWERED}:5432/airflow"),
])
def test_wait_on_a_name_no_resolver_answers_ends_at_its_deadline(no_dns, name, url):
    result, elapsed = run_without_dns(no_dns, ["wait"],
                                      clean_env(**{name: url}, AIRFLOW_ECS_WAIT_TIMEOUT="3"))
    assert result.returncode == 81, result.stdout + result.stderr
    # The lookup's own timeout, or on a loaded machine the deadline's alarm just before it.
    assert (f"the DNS lookup of {UNANSWERED} got no answer" in result.stderr
            or "no answer before the deadline" in result.stderr), result.stderr
    assert "dns-secret" not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    # The deadline as the process counts it, and the wall time with the interpreter's
    # start-up: either way far from the 20 s of the lookup itself.
    waited = re.search(r"was not ready after (\d+)s", result.stderr)
    assert waited and int(waited.group(1)) <= 3 + 1, result.stderr
    assert elapsed < 12, elapsed


@pytest.mark.parametrize("role,name,url", [
    ("worker", "AIRFLOW__CELERY__BROKER_URL", f"redis://:dns-secret@{UNANSWERED}:6379/0"),
    ("scheduler+dag-processor+triggerer", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
     f"postgresql+psycopg2://airflow:dns-secret@{UNANSWERED}:5432/airflow"),
])
def test_health_probe_answers_inside_the_healthcheck_timeout_without_dns(no_dns, role, name,
                                                                         url):
    result, elapsed = run_without_dns(no_dns, ["health", role], clean_env(**{name: url}))
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout.startswith("unhealthy: ")
    assert f"the DNS lookup of {UNANSWERED} got no answer" in result.stdout, result.stdout
    assert "dns-secret" not in result.stdout + result.stderr
    assert elapsed <= health.BUDGET + 2 < HEALTHCHECK_TIMEOUT, elapsed


def test_a_name_with_several_addresses_reaches_the_one_that_listens(postgres_server):
    """The database is found by name (localhost: ::1 and 127.0.0.1 here, the server on
    127.0.0.1 only), through the addresses looked up before libpq connects."""
    assert set(health.lookup("localhost", None, 5)) >= {"127.0.0.1"}
    url = postgres_server.url().replace("@127.0.0.1:", "@localhost:")
    waits.probe_db(url, 5)
    rows = health.postgres_query(health.postgres_params(url), "SELECT 1", None, 5)
    assert rows == [(1,)]


def test_probe_budget_is_shared_and_kept(hole):
    """health.probe itself, in-process: one deadline for every member."""
    env = {"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN":
           f"postgresql://airflow:pw@127.0.0.1:{hole.port}/airflow",
           "AIRFLOW__CELERY__BROKER_URL": f"redis://127.0.0.1:{hole.port}/0"}
    started = time.monotonic()
    result = health.probe("scheduler+dag-processor+triggerer+worker", env, budget=4)
    elapsed = time.monotonic() - started
    assert not result.healthy
    assert elapsed <= 4 + 1, elapsed


# --- malformed URLs: a configuration error naming the variable, never an internal error -----
BAD_URLS = [
    ("AIRFLOW__CELERY__BROKER_URL", "redis://h:99999/0", "out of range"),
    ("AIRFLOW__CELERY__BROKER_URL", "redis://[::1", "does not parse"),
    ("AIRFLOW__CELERY__BROKER_URL", "redis:///0", "no host"),
    ("AIRFLOW__CELERY__BROKER_URL", "foo://h/0", "unknown URL scheme"),
    ("AIRFLOW__CELERY__BROKER_URL", "redis://:pass/word@h:6379/0", "percent-encode"),
    ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "postgres://a:pw@h/db", "postgresql://"),
    ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "postgresql://a:pw@:5432/db", "no host"),
    ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "postgresql://a:pw@h:port/db", "not a number"),
    ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "mongodb://a:pw@h/db", "unknown URL scheme"),
]


@pytest.mark.parametrize("name,url,words", BAD_URLS)
def test_malformed_urls_are_configuration_errors(name, url, words):
    with pytest.raises(ConfigError) as err:
        waits.wait_for_dependencies("exec", config.load({"AIRFLOW_ECS_WAIT_TIMEOUT": "2"}),
                                    {name: url})
    assert name in str(err.value) and words in str(err.value)
    result, _ = run_cli(["wait"], clean_env(**{name: url, "AIRFLOW_ECS_WAIT_TIMEOUT": "2"}))
    assert result.returncode == 78, result.stderr
    assert name in result.stderr and "Traceback" not in result.stderr
    role = "worker" if "BROKER" in name else "scheduler"
    probe = health.probe(role, {name: url})
    assert not probe.healthy and name in probe.reason, probe.reason


def test_secrets_in_malformed_urls_are_never_shown(hole):
    """A '/' in the password cuts the URL short: nothing of the password is shown."""
    broker = f"redis://:s3kr1t/t4il@127.0.0.1:{hole.port}/0"
    env = clean_env(AIRFLOW__CELERY__BROKER_URL=broker, AIRFLOW_ECS_WAIT_TIMEOUT="2")
    for args in (["wait"], ["health", "worker"], ["check", "worker"]):
        result, _ = run_cli(args, env)
        out = result.stdout + result.stderr
        assert "s3kr1t" not in out and "t4il" not in out, (args, out)
        assert "AIRFLOW__CELERY__BROKER_URL" in out, (args, out)
        assert "Traceback" not in out


def test_check_masks_the_execution_api_password():
    env = clean_env(AIRFLOW__CORE__EXECUTION_API_SERVER_URL="http://user:API-SECRET@api:8080/x")
    result, _ = run_cli(["check", "worker"], env)
    assert result.returncode == 78
    assert "AIRFLOW__CORE__EXECUTION_API_SERVER_URL" in result.stderr
    assert "API-SECRET" not in result.stdout + result.stderr
