"""Settings: defaults, conversions, and every problem reported at once."""

from pathlib import Path

import pytest

from entrypoint import config
from entrypoint.errors import EXIT_CONFIG, ConfigError


def test_defaults_with_empty_environment():
    s = config.load({})
    assert s.ssm_path is None
    assert s.wait_timeout == 300
    assert s.dags_source == "image"
    assert s.dags_dir == Path("/opt/airflow/dags")
    assert s.dags_state_dir == Path("/opt/airflow/.dags-sync")


def test_ssm_path_gets_trailing_slash():
    assert config.load({"AIRFLOW_ECS_SSM_PATH": "/airflow/prod"}).ssm_path == "/airflow/prod/"


def test_every_problem_is_reported_at_once():
    with pytest.raises(ConfigError) as err:
        config.load({
            "AIRFLOW_ECS_WAIT_TIMEOUT": "ten",
            "AIRFLOW_ECS_DB_MIGRATE": "maybe",
            "AIRFLOW_ECS_SSM_PATH": "airflow/prod",
            "AIRFLOW_ECS_DAGS_SOURCE": "ftp",
            "AIRFLOW_ECS_STOP_TIMEOUT": "1",
        })
    text = str(err.value)
    assert err.value.exit_code == EXIT_CONFIG
    assert len(err.value.problems) == 5
    assert "AIRFLOW_ECS_WAIT_TIMEOUT='ten' must be a number" in text
    assert "AIRFLOW_ECS_DB_MIGRATE='maybe' must be true or false" in text
    assert "AIRFLOW_ECS_SSM_PATH='airflow/prod'" in text
    assert "AIRFLOW_ECS_DAGS_SOURCE='ftp' must be one of image, git, s3" in text
    assert "AIRFLOW_ECS_STOP_TIMEOUT=1 must be from 2" in text


def test_unknown_prefixed_setting_is_a_typo():
    with pytest.raises(ConfigError) as err:
        config.load({"AIRFLOW_ECS_WAIT_TIMOUT": "10"})
    assert "unknown setting: AIRFLOW_ECS_WAIT_TIMOUT" in str(err.value)


def test_file_form_of_a_documented_setting_is_known():
    config.load({"AIRFLOW_ECS_ADMIN_PASSWORD_FILE": "/run/secrets/pw"})


def test_git_source_needs_url_and_s3_source_needs_valid_uri():
    with pytest.raises(ConfigError) as err:
        config.load({"AIRFLOW_ECS_DAGS_SOURCE": "git"})
    assert "required setting: AIRFLOW_ECS_DAGS_GIT_URL" in str(err.value)
    with pytest.raises(ConfigError) as err:
        config.load({"AIRFLOW_ECS_DAGS_SOURCE": "s3", "AIRFLOW_ECS_DAGS_S3_URI": "s3://B/x"})
    assert "AIRFLOW_ECS_DAGS_S3_URI='s3://B/x'" in str(err.value)


def test_subdir_cannot_escape_repository():
    with pytest.raises(ConfigError) as err:
        config.load({"AIRFLOW_ECS_DAGS_GIT_SUBDIR": "../etc"})
    assert "AIRFLOW_ECS_DAGS_GIT_SUBDIR" in str(err.value)


def test_every_settings_field_is_documented():
    documented = {s.name for s in config.SETTINGS}
    for name in documented:
        assert name.startswith(config.PREFIX)
    # Each field of Settings is read from a documented variable of the same name.
    for field in config.Settings.__dataclass_fields__:
        assert f"AIRFLOW_ECS_{field.upper()}" in documented, field
