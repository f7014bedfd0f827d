"""Send tasks to a broker the way Airflow's executor does, with a fresh Celery app each time
(an app keeps its broker connection pool, so one app per broker URL)."""

from __future__ import annotations

from pathlib import Path

from celery import Celery

# The Celery app the tasks go to (task "shutdown_app.sleep"): a worker started as a
# subprocess runs it with this folder as its working directory and PYTHONPATH.
APP_DIR = Path(__file__).resolve().parent / "celery_app"


def send(broker: str, name: str, args: list, queue: str = "default", count: int = 1,
         **options) -> None:
    app = Celery("producer", broker=broker, set_as_current=False)
    app.conf.task_default_queue = "default"
    app.conf.task_default_exchange = "default"
    try:
        for _ in range(count):
            app.send_task(name, args=args, queue=queue, **options)
    finally:
        app.close()
