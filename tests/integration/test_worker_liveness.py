"""A real Celery worker (our Celery configuration, real Redis) pings itself; the health probe
reads the record it keeps, and pings the worker itself when the record cannot speak."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from entrypoint.probe import health
from entrypoint.worker import liveness
from tests.support import celery_producer
from tests.support.celery_producer import APP_DIR
from tests.support.servers import start_redis
from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "liveness-test-pw-7d1c"
# A probe in a fresh interpreter, as ECS runs it, reporting what it imported.
PROBE = ("import sys; from entrypoint.cli import main; rc = main(['health', 'worker']); "
         "print('IMPORTED', sorted(m for m in ('kombu', 'redis', 'celery', 'airflow') "
         "if m in sys.modules)); sys.exit(rc)")

pytestmark = pytest.mark.airflow  # the workers load entrypoint.worker.celery_config


class Worker:
    """`celery -A shutdown_app worker` (entrypoint.worker.celery_config's hooks) with its
    scratch folder and its log in tmp_path."""

    def __init__(self, broker, tmp_path, seconds="1"):
        self.env = {**os.environ, "AIRFLOW__CELERY__BROKER_URL": broker,
                    "PYTHONPATH": f"{APP_DIR}{os.pathsep}{ROOT}", "TMPDIR": str(tmp_path),
                    "AIRFLOW_ECS_WORKER_PING_SECONDS": seconds}
        self.log = tmp_path / "worker.log"
        self.path = Path(liveness.record_path(self.env))
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "shutdown_app", "worker", "--loglevel",
                 "INFO", "--concurrency", "1"],
                env=self.env, cwd=APP_DIR, stdout=out, stderr=subprocess.STDOUT)

    def record(self):
        return json.loads(self.path.read_text())

    def wait_record(self, accept=lambda r: r["answered"] > 0, what="an answered ping"):
        return wait_until(lambda: self.record(), f"the worker's record to show {what}",
                          timeout=90, interval=0.2, accept=accept,
                          ignoring=(FileNotFoundError, ValueError), details=self.log.read_text)

    def probe(self):
        return subprocess.run([sys.executable, "-c", PROBE], env=self.env, capture_output=True,
                              text=True, timeout=60)

    def wait_probe(self, healthy, timeout=60):
        return wait_until(self.probe, f"the probe to say {'un' if not healthy else ''}healthy",
                          timeout=timeout, interval=0.5,
                          accept=lambda p: (p.returncode == 0) == healthy,
                          details=self.log.read_text)

    def stop(self):
        pool = self.pool()
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)
            self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(30)
        for child in pool:
            try:
                os.kill(child, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def pool(self):
        try:
            children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text()
        except OSError:
            return []
        return [int(pid) for pid in children.split()]


@pytest.fixture
def broker():
    server = start_redis(password=PASSWORD)
    yield server
    server.close()


def test_probe_reads_the_record_without_kombu_and_a_stopped_worker_turns_unhealthy(
        broker, tmp_path):
    worker = Worker(broker.url(db=3), tmp_path)
    try:
        record = worker.wait_record()
        assert record["node"] == health.worker_name() and record["pid"] == worker.proc.pid
        assert oct(worker.path.stat().st_mode & 0o777) == "0o600"
        result = worker.probe()
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.startswith(f"healthy: worker: {health.worker_name()} answered "
                                        "its own ping through the broker"), result.stdout
        assert "IMPORTED []" in result.stdout  # neither kombu nor redis-py: a file read
        assert worker.wait_record(lambda r: r["pings"] >= record["pings"] + 2,
                                  "more pings")["thread_cpu"] > record["thread_cpu"]

        # Its main process stopped: no more pings, and after the limit, unhealthy.
        os.kill(worker.proc.pid, signal.SIGSTOP)
        limit = liveness.stale_after(1.0)
        down = worker.wait_probe(healthy=False, timeout=limit + 30)
        assert down.returncode == 1, down.stdout + down.stderr
        assert "stopped or stuck" in down.stdout and f"(limit {limit:g}s)" in down.stdout
        os.kill(worker.proc.pid, signal.SIGCONT)
        up = worker.wait_probe(healthy=True, timeout=30)
        assert "answered its own ping" in up.stdout and "IMPORTED []" in up.stdout
    finally:
        worker.stop()


def test_a_replaced_pool_process_runs_tasks_while_the_pings_go_on(broker, tmp_path):
    url = broker.url(db=4)
    worker = Worker(url, tmp_path)
    try:
        worker.wait_record()
        first = wait_until(worker.pool, "the pool process", timeout=30)[0]
        os.kill(first, signal.SIGKILL)  # the main process forks a new one, pings ongoing
        wait_until(lambda: [p for p in worker.pool() if p != first], "a new pool process",
                   timeout=60, details=worker.log.read_text)
        marks = tmp_path / "marks"
        marks.mkdir()
        celery_producer.send(url, "shutdown_app.sleep", [0.1, str(marks)])
        wait_until(lambda: (marks / "finished").exists(), "the task to run in the new pool "
                   "process", timeout=60, interval=0.2, details=worker.log.read_text)
        before = worker.record()["answered"]
        worker.wait_record(lambda r: r["answered"] >= before + 2, "pings after the fork")
        assert worker.probe().returncode == 0
        log = worker.log.read_text()
        assert "Traceback" not in log, log
    finally:
        worker.stop()


def test_broker_down_is_unhealthy_naming_it_masked(broker, tmp_path):
    worker = Worker(broker.url(db=5), tmp_path)
    try:
        worker.wait_record()
        broker.stop()
        down = worker.wait_probe(healthy=False, timeout=liveness.stale_after(1.0) + 30)
        assert down.returncode == 1
        assert (f"no answer to {health.worker_name()}'s own pings through "
                f"redis://:****@127.0.0.1:{broker.port}/5 for ") in down.stdout, down.stdout
        assert "IMPORTED []" in down.stdout
        text = down.stdout + down.stderr + worker.path.read_text() + worker.log.read_text()
        assert PASSWORD not in text
        assert worker.log.read_text().count("did not answer its own ping") < 5  # rate-limited
    finally:
        worker.stop()


def test_without_a_usable_record_the_probe_pings_the_worker_itself(broker, tmp_path):
    url = broker.url(db=6)
    path = Path(liveness.record_path({"TMPDIR": str(tmp_path)}))
    path.parent.mkdir(mode=0o700)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    # Left by a worker that is gone (this container's earlier worker, say).
    path.write_text(json.dumps({"pid": gone.pid, "node": health.worker_name(), "interval": 1,
                                "timeout": 5, "started": 0, "last_success": 0}))
    env = {"AIRFLOW__CELERY__BROKER_URL": url, "TMPDIR": str(tmp_path),
           "PYTHONPATH": str(ROOT), "PATH": os.environ["PATH"]}
    probe = [sys.executable, "-c", PROBE]
    # No worker: the direct ping gets no answer, and the probe says why it sent one.
    result = subprocess.run(probe, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "did not answer a ping" in result.stdout
    assert f"(pid {gone.pid}) is not running" in result.stdout
    for corrupt in (b"\x00\xff{", b'{"pid": "x"}'):
        path.write_bytes(corrupt)
        result = subprocess.run(probe, env=env, capture_output=True, text=True, timeout=60)
        assert result.returncode == 1, result.stdout + result.stderr
        assert "is corrupt" in result.stdout and "Traceback" not in result.stderr, result
    # A worker with its pings turned off removes the record, and answers the probe's ping.
    worker = Worker(url, tmp_path, seconds="0")
    try:
        wait_until(lambda: not path.exists(), "the worker to remove the old record",
                   timeout=90, interval=0.2, details=worker.log.read_text)
        result = worker.wait_probe(healthy=True)
        assert " answered a ping in " in result.stdout and "'kombu'" in result.stdout
    finally:
        worker.stop()
