"""Code loaded inside Airflow's Celery worker (`AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS`).

`celery_config` is imported by Airflow's worker command; it installs the
shutdown deadline, scale-in protection, the task-exit and first-heartbeat
corrections to Airflow's task supervisor and the preload of Airflow's task
code. This is the only code that reaches into Airflow's, Celery's and kombu's
internals: every such use goes through `entrypoint.private_apis`, checks its
assumption first and falls back to the unchanged library behaviour.

Rules: nothing here runs at container start; importing this package itself
imports nothing (each module is imported by `celery_config` on its own).
"""
