"""Twenty short tasks in parallel, then one that gathers them: shows work spread over
the Celery workers (`make demo` runs it and prints which worker ran each task)."""

from __future__ import annotations

import socket
from datetime import datetime

from airflow.sdk import dag, task


@dag(dag_id="example_fanout", schedule=None, start_date=datetime(2026, 1, 1), catchup=False,
     default_args={"retries": 2}, tags=["airflow-ecs", "example"])
def example_fanout():
    @task
    def work(n: int) -> dict:
        return {"n": n, "host": socket.gethostname()}

    @task
    def gather(results: list[dict]) -> int:
        hosts = sorted({r["host"] for r in results})
        print(f"{len(results)} tasks ran on {len(hosts)} worker(s): {', '.join(hosts)}")
        return len(results)

    gather(work.expand(n=list(range(20))))


example_fanout()
