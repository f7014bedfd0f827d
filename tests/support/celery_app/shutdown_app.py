"""A Celery app configured exactly as the worker role is (entrypoint.worker.celery_config)."""

import os
import time
from pathlib import Path

from celery import Celery

from entrypoint.worker.celery_config import CELERY_CONFIG

app = Celery("shutdown_app")
app.config_from_object(CELERY_CONFIG)
app.conf.result_backend = None
app.conf.worker_concurrency = 1


@app.task(name="shutdown_app.sleep")
def sleep(seconds: float, marker_dir: str) -> str:
    Path(marker_dir, f"started-{os.getpid()}-{time.time()}").touch()
    time.sleep(seconds)
    Path(marker_dir, "finished").touch()
    return "done"
