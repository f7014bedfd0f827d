"""Cost of one health probe: `airflow-ecs health` against Airflow's own CLI probes.

Same condition for both: a fresh SchedulerJob heartbeat for this host in a
real Airflow 3.3 schema (PostgreSQL), and a live Celery worker on Redis.
CPU is the child's user+sys time (os.wait4), the cost ECS pays every 30 s.
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from entrypoint.probe.health import hostname
from tests.support.celery_producer import APP_DIR
from tests.support.servers import start_postgres, start_redis

BINDIR = Path(sys.executable).parent
AIRFLOW_CELERY_APP = "airflow.providers.celery.executors.celery_executor.app"


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

        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "shutdown_app", "worker", "--loglevel",
             "WARNING", "--concurrency", "1"],
            env={**env, "PYTHONPATH": str(APP_DIR)}, cwd=APP_DIR,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while subprocess.run([str(BINDIR / "airflow-ecs"), "health", "worker"], env=env,
                             capture_output=True).returncode != 0:
            if time.monotonic() > deadline:
                raise RuntimeError("the worker never answered")
            time.sleep(1)
        ours_w = measure([str(BINDIR / "airflow-ecs"), "health", "worker"], env, 10)
        ping = ["inspect", "ping", "-d", f"celery@{socket.gethostname()}", "--timeout", "5"]
        # Celery's own CLI with the smallest app that reaches the same worker...
        theirs_w = measure([sys.executable, "-m", "celery", "-A", "shutdown_app", *ping],
                           {**env, "PYTHONPATH": str(APP_DIR)}, 5)
        # ...and the worker health check of Airflow's docker-compose.yaml, which loads
        # Airflow's Celery app.
        compose_w = measure([sys.executable, "-m", "celery", "--app", AIRFLOW_CELERY_APP,
                             *ping], env, 5)
    finally:
        if worker:
            worker.terminate()
            worker.wait(30)
        postgres.stop()
        redis_server.stop()

    def row(name, result):
        wall, cpu, codes = result
        return f"| {name} | {cpu:.3f} s | {wall:.3f} s | {', '.join(map(str, codes))} |"

    return "\n".join([
        "## Health probe cost",
        "",
        "| probe | CPU per call | wall per call | exit codes |",
        "| --- | --- | --- | --- |",
        row("`airflow-ecs health scheduler` (median of 10)", ours),
        row("`airflow jobs check --job-type SchedulerJob --local` (median of 10)", theirs),
        row("`airflow-ecs health worker` (median of 10)", ours_w),
        row("`celery -A <minimal app> inspect ping -d celery@HOST` (median of 5)", theirs_w),
        row(f"`celery --app {AIRFLOW_CELERY_APP} inspect ping -d celery@HOST`, Airflow's "
            "docker-compose worker health check (median of 5)", compose_w),
        "",
        f"CPU ratio, scheduler: {theirs[1] / ours[1]:.1f}x cheaper (goal: 10x). "
        f"CPU ratio, worker: {compose_w[1] / ours_w[1]:.1f}x cheaper than Airflow's "
        f"docker-compose health check and {theirs_w[1] / ours_w[1]:.1f}x cheaper than "
        "Celery's CLI with a minimal app (goal: 10x). All probes saw the same fresh "
        "heartbeat row or the same live worker.",
    ])


if __name__ == "__main__":
    print(run())
