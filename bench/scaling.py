"""Scaling: the metrics role's cost per period, and scale-in protection's cost per task.

1. Metrics: 10 queues holding 10,000 messages in a real Redis; one period
   (discover, read, build the PutMetricData payload) measured in CPU time and
   Redis commands (from INFO commandstats), against the plain alternative of
   asking Celery (`celery inspect active` + LLEN per queue would need a live
   worker; the plain baseline here is a naive reader that LLENs and HGETALLs
   every key one command at a time).
2. Protection: 200 tasks of 10 ms through a real Celery worker, with the
   protection thread talking to a local agent endpoint, against the same
   worker with the feature off (no ECS_AGENT_URI). Reported as the ratio of
   the per-task wall time.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from entrypoint import config
from entrypoint.programs import metrics
from tests.support import celery_producer
from tests.support.celery_producer import APP_DIR
from tests.support.fake_agent import Agent, serve
from tests.support.servers import start_redis


def _commands(client) -> int:
    return sum(v["calls"] for v in client.info("commandstats").values())


def _fill(client, queues: int, messages: int) -> None:
    pipe = client.pipeline(transaction=False)
    body = json.dumps({"body": "x" * 200, "headers": {}, "properties": {}})
    for i in range(messages):
        queue = f"queue-{i % queues}"
        pipe.lpush(queue, body)
        if i % 1000 == 999:
            pipe.execute()
    for q in range(queues):
        pipe.sadd("_kombu.binding.default", f"queue-{q}{metrics.SEP}{metrics.SEP}queue-{q}")
    for i in range(40):  # 40 tasks reserved or running on workers
        pipe.hset("unacked", f"tag-{i}", json.dumps([{"body": "x"}, "default", f"queue-{i % 10}"]))
    pipe.execute()


def _naive(client) -> int:
    total = 0
    for key in client.keys("*"):
        kind = client.type(key)
        if kind == b"list":
            total += client.llen(key)
        elif kind == b"hash":
            total += len(client.hgetall(key))
    return total


def _measure(fn, runs: int = 20) -> tuple[float, float]:
    cpu, wall = [], []
    for _ in range(runs):
        r0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        fn()
        wall.append(time.perf_counter() - t0)
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        cpu.append((r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime))
    return statistics.median(cpu), statistics.median(wall)


def bench_metrics() -> list[str]:
    import redis

    server = start_redis()
    try:
        client = redis.Redis.from_url(server.url())
        _fill(client, 10, 10_000)
        settings = metrics.settings_from(config.load({}), {"AIRFLOW__CELERY__BROKER_URL":
                                                            server.url()})

        def period():
            sample = metrics.read_sample(client, metrics.discover_queues(client, settings))
            sample.workers = 4
            return metrics.metric_data(sample, settings)

        before = _commands(client)
        data = period()
        ours_cmds = _commands(client) - before - 1  # minus the INFO itself
        ours_cpu, ours_wall = _measure(period)
        before = _commands(client)
        _naive(client)
        naive_cmds = _commands(client) - before - 1
        naive_cpu, naive_wall = _measure(lambda: _naive(client), runs=5)
        backlog = next(d["Value"] for d in data if d["MetricName"] == "Backlog")
    finally:
        server.stop()
    return [
        "### Metrics role: one period, 10 queues, 10,000 queued messages, 40 running",
        "",
        "| | CPU per period | wall per period | Redis commands | round trips |",
        "| --- | --- | --- | --- | --- |",
        f"| metrics role (`discover_queues` + `read_sample` + payload) | {ours_cpu * 1000:.2f} ms "
        f"| {ours_wall * 1000:.2f} ms | {ours_cmds} | 3 |",
        f"| naive reader (KEYS, then TYPE and LLEN/HGETALL per key) | {naive_cpu * 1000:.2f} ms "
        f"| {naive_wall * 1000:.2f} ms | {naive_cmds} | {naive_cmds} |",
        "",
        f"Backlog read: {backlog:g} (10,000 queued + 40 running). CPU ratio naive/ours: "
        f"{naive_cpu / max(ours_cpu, 1e-9):.1f}. Our command count includes an LLEN per "
        "priority list of each queue (4 per queue), all sent in one pipelined round trip; the "
        "naive reader waits for each of its commands. The PutMetricData call (one per period) "
        "is not included: it is one HTTPS request whatever the queue sizes.",
    ]


def _run_tasks(broker: str, agent_uri: str | None, tasks: int, marker_dir: Path) -> float:
    import redis

    redis.Redis.from_url(broker).flushdb()
    env = {**os.environ, "AIRFLOW__CELERY__BROKER_URL": broker, "PYTHONPATH": str(APP_DIR),
           "AIRFLOW_ECS_PROTECTION_IDLE_SECONDS": "60"}
    env.pop("ECS_AGENT_URI", None)
    if agent_uri:
        env["ECS_AGENT_URI"] = agent_uri
    log = marker_dir / "worker.log"
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "shutdown_app", "worker", "--loglevel", "WARNING",
         "--concurrency", "1", "--hostname", f"bench-{time.time_ns()}@%h"],
        env=env, cwd=APP_DIR, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    try:
        # Warm up: the worker is ready when a first task has run.
        (marker_dir / "warm").mkdir(exist_ok=True)
        celery_producer.send(broker, "shutdown_app.sleep", [0, str(marker_dir / "warm")])
        deadline = time.monotonic() + 120
        while not (marker_dir / "warm" / "finished").exists():
            if time.monotonic() > deadline:
                raise RuntimeError("worker never ran the warm-up task:\n" + log.read_text())
            time.sleep(0.05)
        run_dir = marker_dir / "run"
        run_dir.mkdir()
        start = time.perf_counter()
        celery_producer.send(broker, "shutdown_app.sleep", [TASK_SECONDS, str(run_dir)],
                             count=tasks)
        while len(list(run_dir.glob("started-*"))) < tasks or not (run_dir / "finished").exists():
            if time.monotonic() > deadline + 300:
                raise RuntimeError("tasks did not finish:\n" + log.read_text())
            time.sleep(0.02)
        return (time.perf_counter() - start) / tasks
    finally:
        worker.terminate()
        worker.wait(60)


# Long enough in total (200 x 10 ms) for the once-a-second check to see the worker busy.
TASK_SECONDS = 0.01
RUNS = 3


def bench_protection(tasks: int = 200) -> list[str]:
    server = start_redis()
    agent = Agent()
    http = serve("127.0.0.1", 0, agent)
    uri = f"http://127.0.0.1:{http.server_address[1]}"
    try:
        results: dict[str, list[float]] = {"off": [], "on": []}
        for _ in range(RUNS):  # alternate to spread any drift of the machine over both
            for mode in ("off", "on"):
                with tempfile.TemporaryDirectory() as tmp:
                    results[mode].append(_run_tasks(server.url(db=1), uri if mode == "on"
                                                    else None, tasks, Path(tmp)))
        puts = sum(1 for method, _ in agent.calls if method == "PUT")
    finally:
        http.shutdown()
        server.stop()
    off = statistics.median(results["off"])
    on = statistics.median(results["on"])
    return [
        f"### Scale-in protection: {tasks} tasks of {TASK_SECONDS * 1000:.0f} ms on one worker "
        "(concurrency 1)",
        "",
        f"| | per task (median of {RUNS} runs) |",
        "| --- | --- |",
        f"| protection off (no ECS_AGENT_URI) | {off * 1000:.2f} ms |",
        f"| protection on (local agent endpoint) | {on * 1000:.2f} ms |",
        "",
        f"Ratio on/off: {on / off:.3f} (runs: off "
        f"{', '.join(f'{x * 1000:.2f}' for x in results['off'])} ms; on "
        f"{', '.join(f'{x * 1000:.2f}' for x in results['on'])} ms). Calls to the agent over "
        f"the {RUNS} 'on' runs: {puts} PUTs for {RUNS * (tasks + 1)} tasks: the protection "
        "is set when the worker becomes busy, not per task.",
    ]


def run() -> str:
    return "\n".join(["## Scaling", "", *bench_metrics(), "", *bench_protection()])


if __name__ == "__main__":
    print(run())
