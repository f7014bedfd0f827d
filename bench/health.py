"""Cost of one health probe: `airflow-ecs health` against Airflow's own CLI probes.

Same condition for both: a fresh SchedulerJob heartbeat for this host in a
real Airflow 3.3 schema (PostgreSQL), and a live Celery worker on Redis.
CPU is the child's user+sys time (os.wait4), the cost ECS pays every 30 s.

The worker is `celery -A shutdown_app worker` (tests/support/celery_app), whose
app loads entrypoint.worker.celery_config as Airflow's worker does, so its
`worker_ready` hook starts the thread that pings the worker itself and keeps
the record `airflow-ecs health worker` reads (entrypoint.worker.liveness). That
thread's CPU is part of the probe's cost: its CPU per ping (from the record,
over the whole measurement) times the pings of one 30-s check interval at the
default AIRFLOW_ECS_WORKER_PING_SECONDS is added to the probe's own. The
worker pings every PING_SECONDS here, for more pings to average over; a ping
costs the same whatever the interval.
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from entrypoint import config
from entrypoint.probe.health import hostname
from entrypoint.worker import liveness
from tests.support.celery_producer import APP_DIR
from tests.support.servers import start_postgres, start_redis

BINDIR = Path(sys.executable).parent
AIRFLOW_CELERY_APP = "airflow.providers.celery.executors.celery_executor.app"
ROOT = Path(__file__).resolve().parents[1]  # this checkout's entrypoint, for the worker too
PING_SECONDS = 2
CHECK_INTERVAL = 30  # seconds between two health checks (the images' HEALTHCHECK, ECS)


def measure(argv, env, runs, before=None):
    walls, cpus, codes = [], [], []
    for _ in range(runs):
        if before:
            before()
        started = time.perf_counter()
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        walls.append(time.perf_counter() - started)
        cpus.append(usage.ru_utime + usage.ru_stime)
        codes.append(proc.returncode)
    return statistics.median(walls), statistics.median(cpus), sorted(set(codes))


def run() -> str:
    from sqlalchemy import create_engine, text

    postgres = start_postgres()
    redis_server = start_redis()
    worker = None
    home = tempfile.mkdtemp(prefix="bench-airflow-")
    try:
        postgres.create_database("bench")
        env = {**os.environ, "AIRFLOW_HOME": home, "PATH": f"{BINDIR}:{os.environ['PATH']}",
               "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": postgres.url(database="bench"),
               "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
               "AIRFLOW__CELERY__BROKER_URL": redis_server.url(db=2)}
        subprocess.run([str(BINDIR / "airflow"), "db", "migrate"], env=env, check=True,
                       capture_output=True)
        engine = create_engine(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
        with engine.begin() as conn:
            conn.execute(text(
                "INSERT INTO job (job_type, state, hostname, start_date, latest_heartbeat) "
                "VALUES ('SchedulerJob', 'running', :h, now(), now())"),
                {"h": hostname()})

        def beat():
            with engine.begin() as conn:
                conn.execute(text("UPDATE job SET latest_heartbeat = now()"))

        ours = measure([str(BINDIR / "airflow-ecs"), "health", "scheduler"], env, 10, beat)
        theirs = measure([str(BINDIR / "airflow"), "jobs", "check", "--job-type", "SchedulerJob",
                          "--local"], env, 10, beat)
        engine.dispose()

        # The worker's record and the probes' reading of it in the bench's own scratch folder.
        env["TMPDIR"] = home
        env["PYTHONPATH"] = str(ROOT)
        record_path = Path(liveness.record_path(env))
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "shutdown_app", "worker", "--loglevel",
             "WARNING", "--concurrency", "1"],
            env={**env, "PYTHONPATH": f"{APP_DIR}{os.pathsep}{ROOT}",
                 "AIRFLOW_ECS_WORKER_PING_SECONDS": str(PING_SECONDS)}, cwd=APP_DIR,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while not (record_path.exists()
                   and subprocess.run([str(BINDIR / "airflow-ecs"), "health", "worker"], env=env,
                                      capture_output=True).returncode == 0):
            if time.monotonic() > deadline:
                raise RuntimeError("the worker never answered its own ping")
            time.sleep(1)
        first = json.loads(record_path.read_text())
        ours_w = measure([str(BINDIR / "airflow-ecs"), "health", "worker"], env, 10)
        # The probe's own ping, as when there is no record (another scratch folder).
        direct_w = measure([str(BINDIR / "airflow-ecs"), "health", "worker"],
                           {**env, "TMPDIR": tempfile.mkdtemp(prefix="bench-norecord-")}, 10)
        ping = ["inspect", "ping", "-d", f"celery@{socket.gethostname()}", "--timeout", "5"]
        # Celery's own CLI with the smallest app that reaches the same worker...
        theirs_w = measure([sys.executable, "-m", "celery", "-A", "shutdown_app", *ping],
                           {**env, "PYTHONPATH": str(APP_DIR)}, 5)
        # ...and the worker health check of Airflow's docker-compose.yaml, which loads
        # Airflow's Celery app.
        compose_w = measure([sys.executable, "-m", "celery", "--app", AIRFLOW_CELERY_APP,
                             *ping], env, 5)
        last = json.loads(record_path.read_text())
    finally:
        if worker:
            worker.terminate()
            worker.wait(30)
        postgres.stop()
        redis_server.stop()

    def row(name, result):
        wall, cpu, codes = result
        return f"| {name} | {cpu:.3f} s | {wall:.3f} s | {', '.join(map(str, codes))} |"

    pings = last["pings"] - first["pings"]
    per_ping = (last["thread_cpu"] - first["thread_cpu"]) / pings
    per_check = CHECK_INTERVAL / config.Settings().worker_ping_seconds
    thread = per_ping * per_check
    ours_total = ours_w[1] + thread
    return "\n".join([
        "## Health probe cost",
        "",
        "| probe | CPU per call | wall per call | exit codes |",
        "| --- | --- | --- | --- |",
        row("`airflow-ecs health scheduler` (median of 10)", ours),
        row("`airflow jobs check --job-type SchedulerJob --local` (median of 10)", theirs),
        row("`airflow-ecs health worker`, reading the worker's record (median of 10)",
            ours_w),
        f"| the worker's own pings, their share of one check: {per_ping * 1000:.1f} ms of "
        f"thread CPU per ping ({pings} pings) x {per_check:g} pings per {CHECK_INTERVAL} s "
        f"| {thread:.3f} s | - | - |",
        f"| **`airflow-ecs health worker` in all: the probe + the worker's pings** | "
        f"{ours_total:.3f} s | {ours_w[0]:.3f} s | - |",
        row("`airflow-ecs health worker` with no record: the probe's own ping (median of 10)",
            direct_w),
        row("`celery -A <minimal app> inspect ping -d celery@HOST` (median of 5)", theirs_w),
        row(f"`celery --app {AIRFLOW_CELERY_APP} inspect ping -d celery@HOST`, Airflow's "
            "docker-compose worker health check (median of 5)", compose_w),
        "",
        f"CPU ratio, scheduler: {theirs[1] / ours[1]:.1f}x cheaper (goal: 10x). "
        f"CPU ratio, worker (the probe and the worker's pings together): "
        f"{compose_w[1] / ours_total:.1f}x cheaper than Airflow's docker-compose health check "
        f"and {theirs_w[1] / ours_total:.1f}x cheaper than Celery's CLI with a minimal app "
        f"(goal: 10x); the probe's own ping, without a record: "
        f"{theirs_w[1] / direct_w[1]:.1f}x. The worker pinged itself every {PING_SECONDS} s "
        f"here; a check's share counts the pings of {CHECK_INTERVAL} s at the default "
        f"{config.Settings().worker_ping_seconds} s. All probes saw the same fresh "
        "heartbeat row or the same live worker.",
    ])


if __name__ == "__main__":
    print(run())
