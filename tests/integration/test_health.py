"""Health probes against real services: job heartbeats in a real Airflow schema, a real
Celery worker, HTTP endpoints; and the CLI's cost rule (no Airflow, no boto3 imported)."""

import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import redis
from sqlalchemy import create_engine, text

from entrypoint.probe import health
from tests.support import celery_producer
from tests.support.celery_producer import APP_DIR
from tests.support.servers import free_port
from tests.support.waiting import wait_until

BIN = str(Path(sys.executable).parent / "airflow-ecs")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def jobs(migrated_db):
    engine = create_engine(migrated_db["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM job"))

    def add(job_type, age_seconds, host=None, state="running"):
        with engine.begin() as conn:
            conn.execute(text(
                "INSERT INTO job (job_type, state, hostname, start_date, latest_heartbeat) "
                "VALUES (:t, :s, :h, now(), now() - make_interval(secs => :age))"),
                {"t": job_type, "s": state, "h": host or health.hostname(), "age": age_seconds})

    yield add
    engine.dispose()


def test_fresh_scheduler_heartbeat_is_healthy(jobs, migrated_db):
    jobs("SchedulerJob", 3)
    result = health.probe("scheduler", migrated_db)
    assert result.healthy, result.reason
    assert result.reason.startswith("scheduler: heartbeat 3s ago")


def test_old_heartbeat_other_host_or_none_is_unhealthy(jobs, migrated_db):
    assert "no running TriggererJob" in health.probe("triggerer", migrated_db).reason
    jobs("TriggererJob", 3, host="some-other-host")
    assert not health.probe("triggerer", migrated_db).healthy
    jobs("DagProcessorJob", 95)
    result = health.probe("dag-processor", migrated_db)
    assert not result.healthy
    assert "last heartbeat 95s ago (threshold 30s)" in result.reason


def test_threshold_follows_airflow_setting(jobs, migrated_db):
    jobs("SchedulerJob", 45)
    env = {**migrated_db, "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_THRESHOLD": "60"}
    assert health.probe("scheduler", env).healthy
    assert not health.probe("scheduler", migrated_db).healthy


def test_group_needs_every_member(jobs, migrated_db):
    jobs("SchedulerJob", 1)
    jobs("TriggererJob", 1)
    result = health.probe("scheduler+triggerer+dag-processor", migrated_db)
    assert not result.healthy
    assert "scheduler: heartbeat" in result.reason and "no running DagProcessorJob" in \
        result.reason
    jobs("DagProcessorJob", 1)
    assert health.probe("scheduler+triggerer+dag-processor", migrated_db).healthy


class Answer(BaseHTTPRequestHandler):
    code = 200

    def do_GET(self):
        self.send_response(self.code)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


def test_webserver_probe():
    port = free_port()
    env = {"AIRFLOW_ECS_API_PORT": str(port)}
    assert not health.probe("webserver", env).healthy
    server = ThreadingHTTPServer(("127.0.0.1", port), Answer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        result = health.probe("webserver", env)
        assert result.healthy, result.reason
        Answer.code = 503
        assert "answered HTTP 503" in health.probe("webserver", env).reason
    finally:
        Answer.code = 200
        server.shutdown()


def start_worker(broker, node=None, concurrency=1, scratch=None):
    # Pings of its own turned off, in a scratch folder of its own: these tests are about
    # the probe's own ping (tests/integration/test_worker_liveness.py: the worker's).
    env = {**os.environ, "AIRFLOW__CELERY__BROKER_URL": broker,
           "PYTHONPATH": f"{APP_DIR}{os.pathsep}{ROOT}", "AIRFLOW_ECS_WORKER_PING_SECONDS": "0"}
    if scratch:
        env["TMPDIR"] = str(scratch)
    args = [sys.executable, "-m", "celery", "-A", "shutdown_app", "worker", "--loglevel",
            "WARNING", "--concurrency", str(concurrency)]
    if node:
        args += ["--hostname", node]
    return subprocess.Popen(args, env=env, cwd=APP_DIR, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def wait_healthy(env, want=True, timeout=60):
    return wait_until(lambda: health.probe("worker", env),
                      f"the worker's probe to say {'healthy' if want else 'unhealthy'}",
                      timeout=timeout, interval=0.5, accept=lambda result: result.healthy == want)


@pytest.mark.airflow  # the workers load entrypoint.worker.celery_config
def test_worker_ping_only_this_worker_and_busy_is_healthy(redis_server, tmp_path):
    broker = redis_server.url(db=8)
    redis.Redis.from_url(broker).flushdb()
    env = {"AIRFLOW__CELERY__BROKER_URL": broker, "TMPDIR": str(tmp_path)}
    other = start_worker(broker, node="someone-else@elsewhere", scratch=tmp_path)
    try:
        time.sleep(3)
        result = health.probe("worker", env)
        assert not result.healthy and "did not answer a ping" in result.reason
    finally:
        other.terminate()
        other.wait(30)
    worker = start_worker(broker, concurrency=1, scratch=tmp_path)
    try:
        assert " answered a ping in " in wait_healthy(env).reason
        celery_producer.send(broker, "shutdown_app.sleep", [30, str(tmp_path)])
        wait_until(lambda: any(tmp_path.glob("started-*")), "the task to start", timeout=30,
                   interval=0.2)
        result = health.probe("worker", env)  # its only slot is busy
        assert result.healthy, result.reason
        # A probe cleans up after itself: no reply queue or binding is left behind.
        keys = [k.decode() for k in redis.Redis.from_url(broker).keys("*")]
        assert not [k for k in keys if "reply" in k], keys
    finally:
        worker.kill()
        worker.wait(30)
    assert not wait_healthy(env, want=False, timeout=20).healthy


def test_worker_probe_imports_neither_celery_nor_otel_nor_yaml(redis_server, tmp_path):
    broker = redis_server.url(db=9)
    code = ("import sys; from entrypoint.cli import main; rc = main(['health', 'worker']); "
            "bad = [m for m in ('celery', 'airflow', 'opentelemetry.sdk.metrics', "
            "'opentelemetry.metrics', 'yaml', 'urllib.request') if sys.modules.get(m)]; "
            "from kombu.utils import compat; "
            "print('IMPORTED', bad, 'PLUGINS', compat.entrypoints.__name__)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={**os.environ, "AIRFLOW__CELERY__BROKER_URL": broker,
                                 "TMPDIR": str(tmp_path)})  # no worker's record there
    # kombu's plugin search is given back once the probe has imported kombu.
    assert "IMPORTED [] PLUGINS entrypoints" in result.stdout, result.stdout + result.stderr
    assert "did not answer a ping" in result.stdout + result.stderr  # no worker: unhealthy


def test_cli_health_imports_neither_airflow_nor_boto3(jobs, migrated_db):
    jobs("SchedulerJob", 1)
    code = ("import sys; from entrypoint.cli import main; rc = main(['health', 'scheduler']); "
            "bad = [m for m in ('airflow', 'boto3', 'botocore') if m in sys.modules]; "
            "print('IMPORTED', bad); sys.exit(rc if not bad else 9)")
    result = subprocess.run([sys.executable, "-c", code], env=migrated_db, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("healthy: scheduler: heartbeat")
    down = subprocess.run([BIN, "health", "triggerer"], env=migrated_db, capture_output=True,
                          text=True, timeout=60)
    assert down.returncode == 1
    assert down.stdout.strip().startswith("unhealthy: triggerer: no running TriggererJob")
    assert "pg-test-pw" not in down.stdout + down.stderr


def test_dag_sync_status_in_health(tmp_path):
    from entrypoint import config
    from entrypoint.dagsync import publish

    env = {"AIRFLOW_ECS_DAGS_SOURCE": "s3", "AIRFLOW_ECS_DAGS_S3_URI": "s3://bucket/dags/",
           "AIRFLOW_ECS_DAGS_DIR": str(tmp_path / "dags"), "AIRFLOW_ECS_API_PORT": "9"}
    settings = config.load(env)
    result = health._dag_sync(env)
    assert not result.healthy and result.reason == "DAGs not synced yet"
    publish.record(settings, "s3", "abcdef0123456789", 3, None)
    assert health._dag_sync(env).reason.startswith("dags abcdef012345 synced 0s ago")
    publish.record(settings, "s3", None, 0, "bucket gone")
    stale = health._dag_sync(env)
    assert stale.healthy and "dags stale" in stale.reason and "bucket gone" in stale.reason


def test_cli_health_reads_the_resolved_values_from_the_running_role(jobs, migrated_db):
    """A probe gets the task definition's environment only; the values resolved from SSM
    at start live in the role's process, marked by the entrypoint."""
    from entrypoint.running_env import MARKER

    jobs("SchedulerJob", 1)
    url = migrated_db["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    bare = {k: v for k, v in migrated_db.items() if k != "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"}
    probe = [BIN, "health", "scheduler"]

    def health():
        return subprocess.run(probe, env=bare, capture_output=True, text=True, timeout=60)

    unmarked = subprocess.Popen(["sleep", "60"], env={**bare,
                                                      "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": url})
    try:
        result = health()
        assert result.returncode == 1, result.stdout
        assert "required setting: AIRFLOW__DATABASE__SQL_ALCHEMY_CONN" in result.stdout
        role = subprocess.Popen(["sleep", "60"], env={
            **bare, "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": url, MARKER: "1"})
        try:
            result = health()
            assert result.returncode == 0, result.stdout + result.stderr
            assert result.stdout.startswith("healthy: scheduler: heartbeat")
            assert "pg-test-pw" not in result.stdout + result.stderr
        finally:
            role.kill()
            role.wait()
        assert health().returncode == 1
    finally:
        unmarked.kill()
        unmarked.wait()
