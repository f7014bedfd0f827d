"""Our own programs a role runs after start-up, in place of or beside Airflow's.

`metrics`: the `metrics` role's loop (Celery backlog from Redis to CloudWatch).
`airflow_migrate`: `airflow db migrate` in a child process of the migrate role.
Each runs with the environment start-up resolved; none is imported at start.
"""
