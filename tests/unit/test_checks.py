"""Configuration checks: each misconfiguration users hit gets a precise problem and fix."""

import pytest

from entrypoint import checks, config, defaults
from entrypoint.checks import (
    API_SECRET_KEY,
    BROKER_URL,
    DB_URL,
    EXECUTION_API_URL,
    FERNET_KEY,
    JWT_SECRET,
    RESULT_BACKEND,
    VISIBILITY_TIMEOUT,
)

GOOD = {
    FERNET_KEY: "Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6cXV4Zm9vYmFyYmE=",
    JWT_SECRET: "s" * 64,
    API_SECRET_KEY: "api-secret",
    DB_URL: "postgresql+psycopg2://airflow:pw@db:5432/airflow",
    BROKER_URL: "redis://:pw@redis:6379/0",
    RESULT_BACKEND: "db+postgresql://airflow:pw@db:5432/airflow",
    EXECUTION_API_URL: "http://api:8080/execution/",
    "AIRFLOW_ECS_ADMIN_PASSWORD": "admin-pw",
}


def run(role, env):
    settings = config.load({})
    return checks.check(role, settings, defaults.apply(role or "exec", settings, env))


def test_complete_configuration_has_no_problem():
    assert run(None, GOOD) == []
    assert run("worker", GOOD) == []


@pytest.mark.parametrize("role,missing", [
    ("worker", EXECUTION_API_URL),
    ("scheduler", BROKER_URL),
    ("webserver", JWT_SECRET),
    ("triggerer", FERNET_KEY),
    ("dag-processor", API_SECRET_KEY),
])
def test_missing_essential_is_named_for_the_role(role, missing):
    env = {k: v for k, v in GOOD.items() if k != missing}
    problems = run(role, env)
    assert any(p.startswith(f"required setting: {missing} (needed by {role})") for p in problems)


def test_other_roles_do_not_need_the_execution_api():
    env = {k: v for k, v in GOOD.items() if k != EXECUTION_API_URL}
    assert run("scheduler+dag-processor+triggerer", env) == []


def test_short_jwt_secret():
    problems = run("webserver", {**GOOD, JWT_SECRET: "short"})
    assert problems == [p for p in problems if "is 5 bytes long; use at least 64" in p]
    assert len(problems) == 1


def test_execution_api_url_must_end_in_execution():
    problems = run("worker", {**GOOD, EXECUTION_API_URL: "http://api:8080"})
    assert len(problems) == 1
    assert "must end in '/execution/'" in problems[0]
    assert "e.g. http://api:8080/execution/" in problems[0]


def test_bad_fernet_key():
    problems = run("worker", {**GOOD, FERNET_KEY: "not-a-key"})
    assert len(problems) == 1 and "is not a Fernet key" in problems[0]


@pytest.mark.parametrize("value", ["[object Object]", "ssm:/airflow/prod/x",
                                   "{{resolve:ssm:/a/b}}", "${FERNET}",
                                   "arn:aws:ssm:eu-west-1:1:parameter/x"])
def test_unresolved_values(value):
    problems = run("worker", {**GOOD, API_SECRET_KEY: value})
    assert any(p.startswith(f"invalid setting: {API_SECRET_KEY} ") for p in problems)
    if value != "[object Object]":
        assert all(value not in p for p in problems)


def test_unescaped_password_in_broker_url():
    pw = "p@ss/w#rd"
    problems = run("worker", {**GOOD, BROKER_URL: f"redis://:{pw}@redis:6379/0"})
    joined = "\n".join(problems)
    assert BROKER_URL in joined
    assert "quote" in joined or "percent" in joined
    assert pw not in joined


def test_visibility_timeout_shorter_than_task_timeout():
    problems = run("worker", {**GOOD, VISIBILITY_TIMEOUT: "3600",
                              "AIRFLOW__CORE__DEFAULT_TASK_EXECUTION_TIMEOUT": "7200"})
    assert len(problems) == 1
    assert "is not longer than the longest task timeout" in problems[0]


def test_scheduler_must_use_celery():
    problems = run("scheduler", {**GOOD, "AIRFLOW__CORE__EXECUTOR": "LocalExecutor"})
    assert len(problems) == 1 and "CeleryExecutor" in problems[0]


@pytest.mark.parametrize("manager", [
    "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager",
    "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
])
def test_webserver_needs_an_admin_password(manager):
    env = {k: v for k, v in GOOD.items() if k != "AIRFLOW_ECS_ADMIN_PASSWORD"}
    problems = run("webserver", {**env, "AIRFLOW__CORE__AUTH_MANAGER": manager})
    assert len(problems) == 1 and "AIRFLOW_ECS_ADMIN_PASSWORD" in problems[0]
    assert run("webserver", {**GOOD, "AIRFLOW__CORE__AUTH_MANAGER": manager}) == []


def test_a_users_webserver_config_must_exist_and_replaces_the_admin_requirement(tmp_path):
    env = {k: v for k, v in GOOD.items() if k != "AIRFLOW_ECS_ADMIN_PASSWORD"}
    own = tmp_path / "webserver_config.py"
    settings = config.load({"AIRFLOW_ECS_WEBSERVER_CONFIG_FILE": str(own)})
    problems = checks.check("webserver", settings, defaults.apply("webserver", settings, env))
    assert len(problems) == 1, problems
    assert "AIRFLOW_ECS_WEBSERVER_CONFIG_FILE" in problems[0] and "not a readable file" in \
        problems[0]
    own.write_text("AUTH_TYPE = 1\n")
    assert checks.check("webserver", settings, defaults.apply("webserver", settings, env)) == []


@pytest.mark.parametrize("extra,named", [
    ({"AIRFLOW_ECS_DAGS_SOURCE": "git",
      "AIRFLOW_ECS_DAGS_GIT_URL": "https://bot:planted-token@git.example.com/dags.git"},
     "AIRFLOW_ECS_DAGS_GIT_URL"),
    ({"AIRFLOW_ECS_DAGS_SOURCE": "git", "AIRFLOW_ECS_DAGS_GIT_URL": "https://g.example/d.git",
      "AIRFLOW_ECS_DAGS_GIT_REF": "main..bad"}, "AIRFLOW_ECS_DAGS_GIT_REF"),
])
def test_check_refuses_what_the_dag_sync_would_refuse(extra, named):
    """`airflow-ecs check` runs the DAG sync's own checks: nothing it passes is refused later."""
    settings = config.load(extra)
    env = defaults.apply("scheduler", settings, {**GOOD, **extra})
    problems = checks.check("scheduler", settings, env)
    assert any(named in p for p in problems), problems
    assert not any("planted-token" in p for p in problems)


LDAP_ENV = {
    "AIRFLOW_ECS_LDAP_URI": "ldaps://ldap.example.com",
    "AIRFLOW_ECS_LDAP_BIND_USER": "cn=airflow,dc=example,dc=com",
    "AIRFLOW_ECS_LDAP_SEARCH_BASE": "ou=people,dc=example,dc=com",
    "AIRFLOW_ECS_LDAP_DEFAULT_ROLE": "Viewer",
}


def test_ldap_needs_a_bind_password_and_makes_the_admin_password_optional():
    env = {k: v for k, v in GOOD.items() if k != "AIRFLOW_ECS_ADMIN_PASSWORD"}
    settings = config.load(LDAP_ENV)
    problems = checks.check("webserver", settings,
                            defaults.apply("webserver", settings, {**env, **LDAP_ENV}))
    assert len(problems) == 1 and "AIRFLOW_ECS_LDAP_BIND_PASSWORD" in problems[0], problems
    full = {**env, **LDAP_ENV, "AIRFLOW_ECS_LDAP_BIND_PASSWORD": "bind-pw"}
    assert checks.check("webserver", settings, defaults.apply("webserver", settings, full)) == []
    # Only the webserver logs users in.
    assert checks.check("worker", settings, defaults.apply("worker", settings,
                                                           {**env, **LDAP_ENV})) == []


def test_ldap_needs_fab_and_a_readable_ca_file(tmp_path):
    extra = {**LDAP_ENV, "AIRFLOW_ECS_LDAP_TLS_CA_FILE": str(tmp_path / "missing.pem")}
    settings = config.load(extra)
    env = {**GOOD, **extra, "AIRFLOW_ECS_LDAP_BIND_PASSWORD": "bind-pw",
           "AIRFLOW__CORE__AUTH_MANAGER":
               "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"}
    problems = checks.check("webserver", settings, defaults.apply("webserver", settings, env))
    assert any("AIRFLOW_ECS_LDAP_TLS_CA_FILE" in p and "not a readable file" in p
               for p in problems), problems
    assert any("AIRFLOW__CORE__AUTH_MANAGER is not FAB's" in p for p in problems), problems


@pytest.mark.parametrize("url", [
    "rediss://:pw@redis:6379/1",
    "rediss://:pw@redis:6379/1?ssl_cert_reqs=required",
    "rediss://:pw@redis:6379/1?ssl_cert_reqs=CERT_REQUIRED",
    "rediss://:pw@redis:6379/1?ssl_cert_reqs=none",
    "rediss://:pw@redis:6379/1?ssl_cert_reqs=strict",
    "rediss://:pw@redis:6379/1?ssl_ca_certs=/etc/ca.pem",
    "redis://:pw@redis:6379/1",
])
def test_a_redis_result_backend_is_refused_exactly_when_celery_would_refuse_it(url):
    from celery import Celery
    from celery.backends.redis import RedisBackend

    try:
        RedisBackend(app=Celery(set_as_current=False), url=url)
        celery_refuses = False
    except ValueError:
        celery_refuses = True
    problems = run("worker", {**GOOD, RESULT_BACKEND: url})
    assert bool(problems) == celery_refuses, problems
    for problem in problems:
        assert problem.startswith(f"invalid setting: {RESULT_BACKEND} is a rediss:// URL")
        assert "?ssl_cert_reqs=required" in problem and "pw" not in problem
