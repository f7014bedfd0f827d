"""Tuned defaults never override what the user set."""

from entrypoint import config, defaults


def test_defaults_fill_only_missing_values():
    settings = config.load({})
    env = defaults.apply("worker", settings, {"AIRFLOW__CELERY__WORKER_CONCURRENCY": "8"})
    assert env["AIRFLOW__CELERY__WORKER_CONCURRENCY"] == "8"
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "False"
    # Airflow's own 5 s: the worker frees a finished task's slot without a faster heartbeat.
    assert "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL" not in env
    assert env["AIRFLOW__CORE__DAGS_FOLDER"] == "/opt/airflow/dags"
    assert env["AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS"] == \
        "entrypoint.worker.celery_config.CELERY_CONFIG"


def test_dag_listing_follows_the_sync_period():
    image = config.load({})
    syncing = config.load({"AIRFLOW_ECS_DAGS_SOURCE": "git", "AIRFLOW_ECS_DAGS_GIT_URL":
                           "https://example.com/d.git", "AIRFLOW_ECS_DAGS_REFRESH_SECONDS": "60"})
    assert defaults.apply("dag-processor", image, {})[
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL"] == "60"
    assert defaults.apply("dag-processor", syncing, {})[
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL"] == "10"


def test_fab_is_the_default_auth_manager_and_simple_stays_selectable():
    settings = config.load({})
    env = defaults.apply("webserver", settings, {config.ADMIN_PASSWORD_VAR: "pw"})
    assert env["AIRFLOW__CORE__AUTH_MANAGER"] == \
        "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager"
    # FAB's config file lives in the scratch directory: AIRFLOW_HOME is read-only.
    assert env["AIRFLOW__FAB__CONFIG_FILE"].endswith("/airflow-ecs/webserver_config.py")
    assert "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS" not in env
    simple = ("airflow.api_fastapi.auth.managers.simple.simple_auth_manager."
              "SimpleAuthManager")
    env = defaults.apply("webserver", settings, {config.ADMIN_PASSWORD_VAR: "pw",
                                                 "AIRFLOW__CORE__AUTH_MANAGER": simple})
    assert env["AIRFLOW__CORE__AUTH_MANAGER"] == simple
    assert env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] == "admin:admin"
    assert "AIRFLOW__FAB__CONFIG_FILE" not in env


def test_a_users_webserver_config_is_the_one_fab_reads():
    settings = config.load({"AIRFLOW_ECS_WEBSERVER_CONFIG_FILE": "/etc/airflow/wc.py"})
    assert defaults.apply("webserver", settings, {})["AIRFLOW__FAB__CONFIG_FILE"] == \
        "/etc/airflow/wc.py"
    # Airflow's own variable, set explicitly, wins over both.
    assert defaults.apply("webserver", settings, {"AIRFLOW__FAB__CONFIG_FILE": "/x.py"})[
        "AIRFLOW__FAB__CONFIG_FILE"] == "/x.py"


def test_no_admin_users_without_a_password():
    env = defaults.apply("webserver", config.load({}), {})
    assert "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS" not in env


def test_every_default_names_an_airflow_setting_and_a_reason():
    for default in defaults.tuned(config.load({})):
        assert default.name.startswith("AIRFLOW__")
        assert len(default.why) > 20


def test_celery_config_module_is_loadable_and_keeps_airflow_defaults():
    from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG

    from entrypoint.worker import celery_config

    for key, value in DEFAULT_CELERY_CONFIG.items():
        if key != "worker_soft_shutdown_timeout":
            assert celery_config.CELERY_CONFIG[key] == value
    assert celery_config.CELERY_CONFIG["task_acks_late"] is True
    assert celery_config.shutdown_deadline({"AIRFLOW_ECS_STOP_TIMEOUT": "120"}) == 110
    assert celery_config.shutdown_deadline({"AIRFLOW_ECS_STOP_TIMEOUT": "5"}) == 1
