"""The FAB login settings: the generated webserver_config.py and the path settings."""

import ast
import os
import stat

import pytest

from entrypoint import config, logins, secrets
from entrypoint.errors import ConfigError


def config_values(text: str) -> dict:
    """The names the generated file assigns, evaluated as Flask's from_pyfile does."""
    namespace: dict = {}
    exec(compile(text, "webserver_config.py", "exec"), namespace)
    return {k: v for k, v in namespace.items() if k.isupper()}


def test_generated_config_uses_the_database_and_sets_no_secret_key():
    text = logins.render_config(config.load({}))
    values = config_values(text)
    from flask_appbuilder.security.manager import AUTH_DB

    assert values["AUTH_TYPE"] == AUTH_DB
    # The Flask secret key must be the shared AIRFLOW__API__SECRET_KEY FAB already uses:
    # a key set here would differ from one webserver task to the next.
    assert "SECRET_KEY" not in values
    assigned = {t.id for node in ast.walk(ast.parse(text)) if isinstance(node, ast.Assign)
                for t in node.targets if isinstance(t, ast.Name)}
    assert "SECRET_KEY" not in assigned


def test_generated_config_is_written_0600_into_the_scratch_dir(tmp_path, monkeypatch):
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    path = logins.write_config(config.load({}))
    assert path == tmp_path / "airflow-ecs" / "webserver_config.py"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    assert config_values(path.read_text())["AUTH_TYPE"] is not None
    assert [p.name for p in path.parent.iterdir()] == ["webserver_config.py"]


def test_a_users_config_file_is_not_overwritten(tmp_path, monkeypatch):
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    own = tmp_path / "mine.py"
    own.write_text("AUTH_TYPE = 1\n")
    settings = config.load({"AIRFLOW_ECS_WEBSERVER_CONFIG_FILE": str(own)})
    assert logins.write_config(settings) is None
    assert own.read_text() == "AUTH_TYPE = 1\n"
    assert logins.config_path(settings) == own


def test_webserver_config_file_must_be_absolute():
    with pytest.raises(ConfigError, match=r"AIRFLOW_ECS_WEBSERVER_CONFIG_FILE=.wc\.py. must be "
                                          "an absolute path"):
        config.load({"AIRFLOW_ECS_WEBSERVER_CONFIG_FILE": "wc.py"})


def test_path_settings_ending_in_file_are_paths_not_secret_files(tmp_path):
    own = tmp_path / "wc.py"
    own.write_text("AUTH_TYPE = 1\n")
    env = {"AIRFLOW_ECS_WEBSERVER_CONFIG_FILE": str(own),
           "AIRFLOW__FAB__CONFIG_FILE": str(own)}
    settings = config.load(env)  # a known setting, not "unknown: a typo?"
    resolved = secrets.resolve(env, settings).env
    assert resolved == env
    for name in config.PATH_SETTINGS:
        assert name in config.DOCUMENTED
