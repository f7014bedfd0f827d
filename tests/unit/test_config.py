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


def test_metrics_worker_sets_are_read_as_services_and_their_queues():
    s = config.load({"AIRFLOW_ECS_METRICS_WORKER_SETS": " a-worker=default ; b=heavy, reports;"})
    assert config.parse_worker_sets(s.metrics_worker_sets) == (
        ("a-worker", ("default",)), ("b", ("heavy", "reports")))
    assert config.parse_worker_sets(config.format_worker_sets(
        [("a-worker", ["default"]), ("b", ["heavy", "reports"])])) == (
        ("a-worker", ("default",)), ("b", ("heavy", "reports")))


@pytest.mark.parametrize("value, why", [
    ("airflow-worker", "'airflow-worker' is not SERVICE=QUEUE,QUEUE"),
    ("a=x;b=", "'b=': b needs one or more queue names"),
    ("a=x;a=y", "names service 'a' twice"),
    ("a=x,y;b=y", "queue 'y' is given to both a and b"),
    ("a=x y", "'a=x y': a needs one or more queue names"),
    (";", "names no service"),
])
def test_metrics_worker_sets_mistakes_name_the_variable_and_the_syntax(value, why):
    with pytest.raises(ConfigError) as err:
        config.load({"AIRFLOW_ECS_METRICS_WORKER_SETS": value})
    [problem] = err.value.problems
    assert problem.startswith(f"invalid setting: AIRFLOW_ECS_METRICS_WORKER_SETS={value!r} "
                              f"{why}"), problem
    assert problem.endswith("write SERVICE=QUEUE,QUEUE;SERVICE=QUEUE, e.g. "
                            "AIRFLOW_ECS_METRICS_WORKER_SETS=airflow-worker-default=default;"
                            "airflow-worker-heavy=heavy"), problem


def test_metrics_worker_sets_replace_the_worker_service():
    with pytest.raises(ConfigError) as err:
        config.load({"AIRFLOW_ECS_METRICS_WORKER_SETS": "a=default",
                     "AIRFLOW_ECS_METRICS_WORKER_SERVICE": "airflow-worker"})
    assert err.value.problems == [
        "invalid setting: AIRFLOW_ECS_METRICS_WORKER_SERVICE and "
        "AIRFLOW_ECS_METRICS_WORKER_SETS are both set; unset "
        "AIRFLOW_ECS_METRICS_WORKER_SERVICE (AIRFLOW_ECS_METRICS_WORKER_SETS names every "
        "worker service)"]
