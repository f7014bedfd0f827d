"""Names of the environment variables the runtime reads or sets, each spelled once here.

Airflow's own options (`AIRFLOW__SECTION__KEY`) that more than one module reads,
checks or fills in, and the prefix of ours (whose settings `entrypoint.config`
declares). Only names, no code: the health probe imports this module, and each
import costs every probe.
"""

from __future__ import annotations

# Ours: every AIRFLOW_ECS_* setting is a field of entrypoint.config.Settings.
PREFIX = "AIRFLOW_ECS_"

# The keys every Airflow role must share with the others (fingerprinted in Redis).
FERNET_KEY = "AIRFLOW__CORE__FERNET_KEY"
JWT_SECRET = "AIRFLOW__API_AUTH__JWT_SECRET"
API_SECRET_KEY = "AIRFLOW__API__SECRET_KEY"
SHARED_KEYS = (FERNET_KEY, JWT_SECRET, API_SECRET_KEY)

# Where the roles reach each other.
DB_URL = "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"
BROKER_URL = "AIRFLOW__CELERY__BROKER_URL"
RESULT_BACKEND = "AIRFLOW__CELERY__RESULT_BACKEND"
EXECUTION_API_URL = "AIRFLOW__CORE__EXECUTION_API_SERVER_URL"
API_PORT = "AIRFLOW__API__PORT"
FLOWER_PORT = "AIRFLOW__CELERY__FLOWER_PORT"

# Options the start-up fills in (entrypoint.defaults) and checks (entrypoint.checks).
EXECUTOR = "AIRFLOW__CORE__EXECUTOR"
DAGS_FOLDER = "AIRFLOW__CORE__DAGS_FOLDER"
DEFAULT_QUEUE = "AIRFLOW__OPERATORS__DEFAULT_QUEUE"
WORKER_CONCURRENCY = "AIRFLOW__CELERY__WORKER_CONCURRENCY"
VISIBILITY_TIMEOUT = "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT"
TASK_TIMEOUT = "AIRFLOW__CORE__DEFAULT_TASK_EXECUTION_TIMEOUT"
AUTH_MANAGER = "AIRFLOW__CORE__AUTH_MANAGER"
SIMPLE_AUTH_MANAGER_USERS = "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"
SIMPLE_AUTH_MANAGER_PASSWORDS_FILE = "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"
SIMPLE_AUTH_MANAGER_ALL_ADMINS = "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS"
