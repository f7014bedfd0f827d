"""One task that sleeps for `seconds` (DAG run conf, default 30): for shutdown tests.

One retry after 5 s, so a task whose worker was killed runs again promptly once
the scheduler sees its heartbeat stop."""

from __future__ import annotations

import time
from datetime import datetime, timedelta

from airflow.sdk import dag, get_current_context, task


@dag(dag_id="sleep_task", schedule=None, start_date=datetime(2026, 1, 1), catchup=False,
     default_args={"retries": 1, "retry_delay": timedelta(seconds=5)}, tags=["airflow-ecs", "test"])
def sleep_task():
    @task
    def sleep() -> float:
        seconds = float(get_current_context()["dag_run"].conf.get("seconds", 30))
        time.sleep(seconds)
        print(f"slept {seconds:g} s")
        return seconds

    sleep()


sleep_task()
