"""Code loaded inside Airflow's Celery worker (`AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS`).

`celery_config` is imported by Airflow's worker command; it installs the
shutdown deadline, scale-in protection, the task-exit and first-heartbeat
corrections to Airflow's task supervisor and the preload of Airflow's task
code. This is the only code that changes the behaviour of Airflow, Celery and
kombu. Like every use of another library's internals in this package, each
goes through `entrypoint.private_apis`, which checks the assumption first: when
it no longer holds, nothing is changed and the library behaves as it does
unpatched.

Rules: nothing here runs at container start; importing this package itself
imports nothing (each module is imported by `celery_config` on its own).
"""
