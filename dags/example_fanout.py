"""Twenty short tasks in parallel, then one that gathers them: shows work spread over
the Celery workers (`make demo` runs it and prints which worker ran each task)."""

from __future__ import annotations

import socket
from datetime import datetime

from airflow.sdk import dag, task


@dag(dag_id="example_fanout", schedule=None, start_date=datetime(2026, 1, 1), catchup=False,
     default_args={"retries": 2}, tags=["airflow-ecs", "example"])
def example_fanout():
    # Each task returns one value: one XCom per task. (A task annotated `-> dict`
    # gets multiple_outputs, which pushes every key as an XCom of its own too:
    # three execution-API writes per task instead of one.)
    @task
    def work(n: int) -> str:
        return socket.gethostname()

    @task
    def gather(hosts: list[str]) -> int:
        # `hosts` is read lazily: iterating over it asks for the values one by one (20
        # execution-API requests); a slice fetches them all in one.
        hosts = hosts[:]
        names = sorted(set(hosts))
        print(f"{len(hosts)} tasks ran on {len(names)} worker(s): {', '.join(names)}")
        return len(hosts)

    gather(work.expand(n=list(range(20))))


example_fanout()
