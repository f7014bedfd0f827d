"""Role parsing and how each role is launched."""

import json
import os
import stat

import pytest

from entrypoint import config, defaults, logins, roles
from entrypoint.errors import ConfigError
from entrypoint.rolenames import parse_role


@pytest.mark.parametrize("value", ["scheduler", "worker", "migrate", "webserver"])
def test_single_roles(value):
    assert parse_role(value) == value


def test_group_is_canonical():
    assert parse_role("scheduler + dag-processor+triggerer") == \
        "scheduler+dag-processor+triggerer"


@pytest.mark.parametrize("value,message", [
    ("schedular", "unknown role"),
    ("scheduler+migrate", "can't be part of a process group"),
    ("worker+worker", "names a role twice"),
])
def test_bad_roles(value, message):
    with pytest.raises(ValueError, match=message):
        parse_role(value)


def test_single_role_execs_airflow_with_extra_args():
    launch = roles.prepare("worker", config.load({}), {"X": "1"}, ["--queues", "a,b"])
    assert launch.kind == "exec"
    assert launch.argv == ("airflow", "celery", "worker", "--queues", "a,b")
    assert launch.env["X"] == "1"


def test_webserver_is_api_server():
    assert roles.prepare("webserver", config.load({}), {}).argv == ("airflow", "api-server")


def test_group_runs_under_supervisor_with_worker_stop_time():
    settings = config.load({"AIRFLOW_ECS_STOP_TIMEOUT": "120"})
    launch = roles.prepare("scheduler+worker", settings, {})
    assert launch.kind == "group"
    by_name = {p.name: p for p in launch.programs}
    assert by_name["scheduler"].argv == ("airflow", "scheduler")
    assert by_name["worker"].stop_seconds == 118
    assert by_name["scheduler"].stop_seconds == 30


def test_group_refuses_extra_args():
    with pytest.raises(ConfigError, match="extra arguments"):
        roles.prepare("scheduler+triggerer", config.load({}), {}, ["--x"])


def test_syncing_role_gets_a_sync_loop_beside_it():
    settings = config.load({"AIRFLOW_ECS_DAGS_SOURCE": "s3", "AIRFLOW_ECS_DAGS_S3_URI":
                            "s3://bucket/dags/", "AIRFLOW_ECS_DAGS_REFRESH_SECONDS": "30"})
    launch = roles.prepare("worker", settings, {})
    assert launch.kind == "group"
    assert [p.name for p in launch.programs] == ["worker", "sync-dags"]
    assert launch.programs[1].argv == ("airflow-ecs", "sync-dags", "--loop")


def test_webserver_writes_admin_password_file_0600(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    settings = config.load({})
    # SimpleAuthManager stays selectable in place of the default FAB auth manager.
    env = defaults.apply("webserver", settings, {config.ADMIN_PASSWORD_VAR: "pw 'x' $(y)",
                                                 logins.AUTH_MANAGER: logins.SIMPLE_AUTH_MANAGER})
    roles.prepare("webserver", settings, env)
    path = env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"]
    assert path.startswith(str(tmp_path))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert json.loads(open(path).read()) == {"admin": "pw 'x' $(y)"}
    assert env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] == "admin:admin"


def test_fab_webserver_writes_its_config_then_the_admin_account(tmp_path, monkeypatch):
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    synced = []
    monkeypatch.setattr(logins, "sync_admin", lambda s, e: synced.append(s.admin_username))
    settings = config.load({"AIRFLOW_ECS_ADMIN_USERNAME": "boss"})
    env = defaults.apply("webserver", settings, {config.ADMIN_PASSWORD_VAR: "pw"})
    launch = roles.prepare("webserver", settings, env)
    assert launch.argv == ("airflow", "api-server")
    path = env[logins.FAB_CONFIG_FILE]
    assert path == str(tmp_path / "airflow-ecs" / "webserver_config.py")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert synced == ["boss"]
    assert "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE" not in env


def test_fab_webserver_without_admin_password_manages_no_account(tmp_path, monkeypatch):
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(logins, "sync_admin", lambda s, e: pytest.fail("no password to write"))
    settings = config.load({})
    roles.prepare("webserver", settings, defaults.apply("webserver", settings, {}))
    assert (tmp_path / "airflow-ecs" / "webserver_config.py").is_file()


def test_other_roles_write_no_fab_config(tmp_path, monkeypatch):
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    settings = config.load({})
    env = defaults.apply("scheduler", settings, {config.ADMIN_PASSWORD_VAR: "pw"})
    roles.prepare("scheduler", settings, env)
    assert not (tmp_path / "airflow-ecs").exists()
