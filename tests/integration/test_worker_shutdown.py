"""The worker's shutdown under ECS: warm when tasks end in time, messages restored when not.

A real Celery worker (prefork, Redis broker) runs with the worker role's Celery
configuration (entrypoint.worker.celery_config); tasks are sent by a real producer.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from tests.support import celery_producer
from tests.support.celery_producer import APP_DIR
from tests.support.waiting import wait_until

# The workers load entrypoint.worker.celery_config, which imports Airflow.
pytestmark = pytest.mark.airflow


def start_worker(broker: str, stop_timeout: int, log: Path) -> subprocess.Popen:
    env = {**os.environ, "AIRFLOW__CELERY__BROKER_URL": broker,
           "AIRFLOW_ECS_STOP_TIMEOUT": str(stop_timeout),
           "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT": "3600",
           "PYTHONPATH": str(APP_DIR),
           # Its liveness record beside its log, not in this machine's /tmp/airflow-ecs.
           "TMPDIR": str(log.parent)}
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "shutdown_app", "worker", "--loglevel", "INFO",
         "--pool", "prefork", "--hostname", f"shutdown-{time.time_ns()}@%h"],
        env=env, cwd=APP_DIR, stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )


def send(broker: str, seconds: float, marker_dir: Path) -> None:
    celery_producer.send(broker, "shutdown_app.sleep", [seconds, str(marker_dir)])


def wait_for_start(marker_dir: Path, what: str, log: Path) -> None:
    wait_until(lambda: any(marker_dir.glob("started-*")), what, timeout=60, interval=0.2,
               details=lambda: "worker log:\n" + log.read_text(errors="replace")[-4000:])


@pytest.fixture
def broker(redis_server):
    url = redis_server.url(db=5)
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield url
    client.flushdb()


def test_warm_shutdown_lets_the_running_task_finish_and_exits_zero(broker, tmp_path):
    log = tmp_path / "worker.log"
    worker = start_worker(broker, stop_timeout=60, log=log)
    try:
        send(broker, 4, tmp_path)
        wait_for_start(tmp_path, "the task to start", log)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(60) == 0, log.read_text()
    finally:
        if worker.poll() is None:
            worker.kill()
    assert (tmp_path / "finished").exists()
    client = redis.Redis.from_url(broker)
    assert client.llen("default") == 0
    assert client.hlen("unacked") == 0


def test_task_past_the_deadline_is_restored_to_the_queue(broker, tmp_path):
    log = tmp_path / "worker.log"
    # Deadline = stop timeout - 10 s = 3 s after SIGTERM; the task needs 60 s.
    worker = start_worker(broker, stop_timeout=13, log=log)
    try:
        send(broker, 60, tmp_path)
        wait_for_start(tmp_path, "the task to start", log)
        worker.send_signal(signal.SIGTERM)
        worker.wait(40)
    finally:
        if worker.poll() is None:
            worker.kill()
            pytest.fail("worker did not stop after its deadline:\n" + log.read_text())
    assert not (tmp_path / "finished").exists()
    client = redis.Redis.from_url(broker)
    assert client.llen("default") == 1, log.read_text()
    assert client.hlen("unacked") == 0
    assert "Restoring 1 unacknowledged message" in log.read_text()

    # Another worker picks the restored task up and runs it to the end.
    for marker in tmp_path.glob("started-*"):
        marker.unlink()
    log2 = tmp_path / "worker2.log"
    worker2 = start_worker(broker, stop_timeout=60, log=log2)
    try:
        wait_for_start(tmp_path, "the task to run again", log2)
    finally:
        worker2.kill()
        worker2.wait()
