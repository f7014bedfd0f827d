"""One task that sleeps for `seconds` (DAG run conf, default 30): for shutdown tests."""

from __future__ import annotations

import time
from datetime import datetime

from airflow.sdk import dag, get_current_context, task


@dag(dag_id="sleep_task", schedule=None, start_date=datetime(2026, 1, 1), catchup=False,
     default_args={"retries": 1}, tags=["airflow-ecs", "test"])
def sleep_task():
    @task
    def sleep() -> float:
        seconds = float(get_current_context()["dag_run"].conf.get("seconds", 30))
        time.sleep(seconds)
        return seconds

    sleep()


sleep_task()
