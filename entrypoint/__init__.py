"""airflow-ecs: the entrypoint runtime of the airflow-ecs images.

Where each part of this package runs:

- the modules at this level: container start. `cli` is the `airflow-ecs`
  command; `startup.start()` is the start-up sequence, top to bottom (settings,
  secrets, checks, waits, the role's initialisation, then `exec` of Airflow or
  supervisord). They run once per container, before Airflow, and import
  neither Airflow nor Celery at module level.
  `rolenames` (the table of roles), `config` (the table of our settings) and
  `airflow_names` (Airflow's variable names) are the facts every other part
  reads, each declared once.
- `dagsync/`: DAG sync, at start and then as the refresh loop beside a role.
- `bundles/`: versioned DAG bundles over the DAG sync, loaded inside Airflow's
  dag-processor and its tasks (AIRFLOW_ECS_DAGS_VERSIONED).
- `worker/`: loaded inside Airflow's Celery worker process; with `bundles/`,
  `scheduler/`, `webserver/` and `programs/airflow_migrate`, the only code that
  changes the behaviour of Airflow, FAB, Celery and kombu. `private_apis` lists
  every private name of those libraries (and botocore's, s3fs's) we rely on, with
  its fallback; a test fails when an upgrade changes one.
- `scheduler/`: loaded inside Airflow's scheduler, by the Celery configuration its
  executor imports: the pause after an idle loop follows the scheduler's work.
- `webserver/`: loaded inside the api-server by FAB's auth manager, through the
  webserver_config.py the start-up generates (`logins`).
- `probe/`: `airflow-ecs health ROLE`, started every 30 s by Docker and ECS
  beside a running role. Import cost is its budget: no Airflow, no boto3.
- `programs/`: our own long-running or child programs a role runs after
  start-up (the `metrics` role, the migrate child, the FAB admin account).
- `tools/`: operator tooling, run on an operator's machine or in CI, never in
  a container: ECS rendering and deployment, the README's reference tables.
"""

__version__ = "0.1.0"
