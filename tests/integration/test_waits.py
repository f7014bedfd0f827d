"""Dependency waits against real Redis, PostgreSQL and Airflow migrations."""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from entrypoint import config, migrations, waits
from entrypoint.errors import MigrationError, WaitTimeout
from tests.support.servers import RedisServer, airflow_env, free_port, start_redis

BIN = str(Path(sys.executable).parent / "airflow-ecs")


def settings(**env):
    return config.load({"AIRFLOW_ECS_WAIT_TIMEOUT": "20", **env})


def test_redis_and_db_up(redis_server, postgres_server):
    env = {"AIRFLOW__CELERY__BROKER_URL": redis_server.url(),
           "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": postgres_server.url()}
    waits.wait_for_dependencies("exec", settings(), env)


def test_redis_down_at_start_then_up_before_the_deadline(tmp_path, caplog):
    port = free_port()
    server = RedisServer(port=port, proc=None, workdir=tmp_path, password="late-pw")
    timer = threading.Timer(2.5, server.start)
    timer.start()
    try:
        waits.wait_for_dependencies("exec", settings(),
                                    {"AIRFLOW__CELERY__BROKER_URL": server.url()})
    finally:
        timer.join()
        server.stop()
    progress = [r.getMessage() for r in caplog.records if "waiting for Redis" in r.getMessage()]
    assert progress, "no progress line was logged"
    assert all("late-pw" not in line and ":****@" in line for line in progress)


def test_redis_down_past_the_deadline_names_target_and_last_error():
    port = free_port()
    with pytest.raises(WaitTimeout) as err:
        waits.wait_for_dependencies("exec", settings(AIRFLOW_ECS_WAIT_TIMEOUT="3"),
                                    {"AIRFLOW__CELERY__BROKER_URL":
                                     f"redis://:hidden-pw@127.0.0.1:{port}/0"})
    message = str(err.value)
    assert f"Redis at redis://:****@127.0.0.1:{port}/0 was not ready after" in message
    assert "last error:" in message and "Connection refused" in message
    assert "hidden-pw" not in message


def test_wrong_redis_password_fails_at_the_first_attempt(redis_server, caplog):
    with pytest.raises(WaitTimeout) as err:
        waits.wait_for_dependencies("exec", settings(), {
            "AIRFLOW__CELERY__BROKER_URL": redis_server.url(password="wrong-pw")})
    assert "refused us" in str(err.value) and "rejected" in str(err.value)
    assert not [r for r in caplog.records if "waiting for Redis" in r.getMessage()]
    with pytest.raises(WaitTimeout, match="requires a password"):
        waits.wait_for_dependencies("exec", settings(), {
            "AIRFLOW__CELERY__BROKER_URL": redis_server.url(password="")})


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(tmp / "key.pem"),
                    "-out", str(tmp / "cert.pem")], check=True, capture_output=True)
    port = free_port()
    proc = subprocess.Popen(["redis-server", "--port", "0", "--tls-port", str(port),
                             "--bind", "127.0.0.1", "--tls-cert-file", str(tmp / "cert.pem"),
                             "--tls-key-file", str(tmp / "key.pem"), "--tls-auth-clients", "no",
                             "--save", "", "--dir", str(tmp)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    from tests.support.servers import wait_port

    wait_port(port)
    yield port, tmp / "cert.pem"
    proc.terminate()
    proc.wait()


def test_a_redis_result_backend_that_cannot_log_in_fails_at_start_naming_it(redis_server):
    # Celery's results in Redis, database 1 (docs/deploy.md): a wrong password there would
    # otherwise fail every task's result write after a start that looked healthy.
    env = {"AIRFLOW__CELERY__BROKER_URL": redis_server.url(),
           "AIRFLOW__CELERY__RESULT_BACKEND": redis_server.url(db=1, password="wrong-pw")}
    with pytest.raises(WaitTimeout) as err:
        waits.wait_for_dependencies("scheduler", settings(), env)
    message = str(err.value)
    assert "the result backend's Redis" in message and "refused us" in message
    assert "check the credentials in AIRFLOW__CELERY__RESULT_BACKEND" in message
    assert "wrong-pw" not in message
    # A role that writes no results does not wait for it.
    waits.wait_for_dependencies("exec", settings(), {
        **env, "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "", "AIRFLOW__CELERY__BROKER_URL":
        redis_server.url()})


def test_tls_mismatches_give_the_tls_hint(tls_redis, redis_server):
    port, cert = tls_redis
    waits.wait_for_dependencies("exec", settings(), {
        "AIRFLOW__CELERY__BROKER_URL": f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={cert}"})
    with pytest.raises(WaitTimeout) as err:
        waits.wait_for_dependencies("exec", settings(AIRFLOW_ECS_WAIT_TIMEOUT="3"), {
            "AIRFLOW__CELERY__BROKER_URL": f"redis://127.0.0.1:{port}/0"})
    assert "rediss://" in str(err.value)
    with pytest.raises(WaitTimeout) as err:
        waits.wait_for_dependencies("exec", settings(AIRFLOW_ECS_WAIT_TIMEOUT="3"), {
            "AIRFLOW__CELERY__BROKER_URL":
                f"rediss://:redis-test-pw@127.0.0.1:{redis_server.port}/0"})
    assert "if the server does not speak TLS, use redis://" in str(err.value)
    assert "redis-test-pw" not in str(err.value)


def test_db_wrong_password_fails_fast_naming_user_and_host(postgres_server):
    with pytest.raises(WaitTimeout) as err:
        waits.wait_for_dependencies("exec", settings(), {
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": postgres_server.url(password="bad-secret")})
    message = str(err.value)
    assert "refused us" in message and 'user "airflow"' in message
    assert f"127.0.0.1:{postgres_server.port}" in message
    assert "bad-secret" not in message


def test_db_down_past_the_deadline():
    url = f"postgresql+psycopg2://airflow:pw@127.0.0.1:{free_port()}/airflow"
    with pytest.raises(WaitTimeout, match=r"the metadata database at .* was not ready"):
        waits.wait_for_dependencies("exec", settings(AIRFLOW_ECS_WAIT_TIMEOUT="3"),
                                    {"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": url})


@pytest.mark.airflow  # reads Airflow's revisions in a child process
def test_head_revisions_match_airflows_own():
    code = ("from airflow.utils.db import _REVISION_HEADS_MAP; import airflow; "
            "print(_REVISION_HEADS_MAP[airflow.__version__.rsplit('.', 1)[0] + '.0'])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()[-1]
    assert migrations.head_revisions() == {out}


@pytest.mark.airflow  # migrates with the airflow CLI
def test_roles_wait_for_the_schema_until_migrated(postgres_server, tmp_path):
    env = airflow_env(postgres_server, "airflow_wait_schema", tmp_path)
    with pytest.raises(WaitTimeout) as err:
        waits.wait_for_dependencies("scheduler", settings(AIRFLOW_ECS_WAIT_TIMEOUT="3"), env)
    assert "the schema migrated to Airflow's head revision at postgresql" in str(err.value)
    assert "run the migrate role" in str(err.value)
    migrations.run_migrations(settings(), env)
    waits.wait_for_dependencies("scheduler", settings(), env)


@pytest.mark.airflow  # migrates with the airflow CLI
def test_db_migrate_setting_migrates_first_and_twice_at_once_is_safe(postgres_server, tmp_path):
    env = airflow_env(postgres_server, "airflow_concurrent", tmp_path)
    s = settings(AIRFLOW_ECS_DB_MIGRATE="true")
    errors = []

    def migrate():
        try:
            waits.wait_for_dependencies("webserver", s, env)
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=migrate) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    assert errors == []
    waits.wait_for_dependencies("worker", settings(),
                                {k: v for k, v in env.items()
                                 if k != "AIRFLOW__CORE__EXECUTION_API_SERVER_URL"})


def test_failed_migration_exits_non_zero(postgres_server, tmp_path):
    postgres_server.create_database("airflow_readonly")
    postgres_server.psql("CREATE ROLE reader LOGIN PASSWORD 'reader-pw'")
    postgres_server.psql("REVOKE CREATE ON SCHEMA public FROM PUBLIC", database="airflow_readonly")
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path),
           "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
           "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN":
               f"postgresql+psycopg2://reader:reader-pw@127.0.0.1:{postgres_server.port}/"
               "airflow_readonly"}
    with pytest.raises(MigrationError) as err:
        migrations.run_migrations(settings(), env)
    assert "airflow db migrate exited" in str(err.value)
    assert "reader-pw" not in str(err.value)


def test_sigterm_during_a_wait_exits_143_promptly():
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update({"AIRFLOW__CELERY__BROKER_URL": f"redis://127.0.0.1:{free_port()}/0",
                "AIRFLOW_ECS_WAIT_TIMEOUT": "300"})
    proc = subprocess.Popen([BIN, "wait"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    time.sleep(2)
    proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=5)  # a correctness bound, not a speed claim
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, err


def test_cli_wait_exit_code_and_masked_message():
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    port = free_port()
    env.update({"AIRFLOW__CELERY__BROKER_URL": f"redis://:cli-secret-pw@127.0.0.1:{port}/0",
                "AIRFLOW_ECS_WAIT_TIMEOUT": "3"})
    result = subprocess.run([BIN, "wait"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 81
    assert f"127.0.0.1:{port}" in result.stderr
    assert "cli-secret-pw" not in result.stderr + result.stdout


def test_start_redis_helper_cleans_up():
    server = start_redis()
    proc = server.proc
    server.close()
    assert server.proc is None and proc.poll() is not None
    assert not server.workdir.exists()
