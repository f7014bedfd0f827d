"""AIRFLOW_ECS_DAGS_VERSIONED: its settings, the Airflow defaults it sets, and what runs
beside each role."""

import json

import pytest

from entrypoint import config, dagsync, defaults, roles
from entrypoint.errors import ConfigError

GIT = {"AIRFLOW_ECS_DAGS_SOURCE": "git", "AIRFLOW_ECS_DAGS_GIT_URL": "https://x.test/d.git",
       "AIRFLOW_ECS_DAGS_REFRESH_SECONDS": "30"}
S3 = {"AIRFLOW_ECS_DAGS_SOURCE": "s3", "AIRFLOW_ECS_DAGS_S3_URI": "s3://acme/dags/"}


def test_plain_folder_mode_stays_the_default():
    settings = config.load(GIT)
    assert not settings.dags_versioned
    env = defaults.apply("dag-processor", settings, {})
    assert "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST" not in env
    launch = roles.prepare("dag-processor", settings, env)
    assert [p.name for p in launch.programs] == ["dag-processor", "sync-dags"]


@pytest.mark.parametrize("source, classpath", [
    (GIT, "entrypoint.bundles.git.GitDagBundle"),
    (S3, "entrypoint.bundles.s3.S3DagBundle"),
])
def test_versioned_mode_names_the_bundle_and_runs_no_sync_loop(source, classpath):
    settings = config.load({**source, "AIRFLOW_ECS_DAGS_VERSIONED": "true",
                            "AIRFLOW_ECS_DAGS_DIR": "/data/dags"})
    env = defaults.apply("dag-processor", settings, {})
    bundles = json.loads(env["AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST"])
    assert [(b["name"], b["classpath"]) for b in bundles] == [("dags-folder", classpath)]
    assert bundles[0]["kwargs"] == ({"refresh_interval": 30} if source is GIT else {})
    assert env["AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_STORAGE_PATH"] == "/data/.dags-sync/bundles"
    assert env["AIRFLOW__DAG_PROCESSOR__STALE_BUNDLE_CLEANUP_INTERVAL"] == "0"
    for role in ("dag-processor", "worker", "scheduler+dag-processor"):
        launch = roles.prepare(role, settings, env)
        assert "sync-dags" not in [p.name for p in launch.programs], role
    # A bundle list the user set is kept.
    own = '[{"name": "mine", "classpath": "x.Y", "kwargs": {}}]'
    env = defaults.apply("worker", settings,
                         {"AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": own})
    assert env["AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST"] == own


def test_versioned_start_up_sync_runs_only_beside_the_dag_processor(monkeypatch):
    settings = config.load({**GIT, "AIRFLOW_ECS_DAGS_VERSIONED": "true"})
    ran = []
    from entrypoint.dagsync import sync

    monkeypatch.setattr(sync, "sync_at_start", lambda s, env: ran.append(s))
    for role in ("worker", "scheduler", "webserver", "triggerer"):
        dagsync.sync_at_start(settings, {}, role)
    assert ran == []
    dagsync.sync_at_start(settings, {}, "scheduler+dag-processor")
    assert len(ran) == 1
    dagsync.sync_at_start(config.load(GIT), {}, "worker")  # plain mode: every role
    assert len(ran) == 2


def test_versioned_settings_refused_with_the_fix():
    with pytest.raises(ConfigError) as image:
        config.load({"AIRFLOW_ECS_DAGS_VERSIONED": "true"})
    assert "AIRFLOW_ECS_DAGS_VERSIONED=true needs AIRFLOW_ECS_DAGS_SOURCE=git or s3" in str(
        image.value)
    with pytest.raises(ConfigError) as inside:
        config.load({**S3, "AIRFLOW_ECS_DAGS_S3_MANIFEST_URI": "s3://acme/dags/versions/"})
    assert "is inside AIRFLOW_ECS_DAGS_S3_URI" in str(inside.value)
    with pytest.raises(ConfigError, match="AIRFLOW_ECS_DAGS_S3_MANIFEST_URI='acme'"):
        config.load({**S3, "AIRFLOW_ECS_DAGS_S3_MANIFEST_URI": "acme"})
    with pytest.raises(ConfigError, match="AIRFLOW_ECS_DAGS_VERSION_KEEP_SECONDS"):
        config.load({**S3, "AIRFLOW_ECS_DAGS_VERSION_KEEP_SECONDS": "-1"})
    beside = config.load({**S3, "AIRFLOW_ECS_DAGS_S3_MANIFEST_URI": "s3://acme/dags-versions/"})
    assert beside.dags_s3_manifest_uri == "s3://acme/dags-versions/"


def test_health_reports_the_sync_only_where_it_runs(tmp_path):
    from entrypoint.probe import health

    env = {**GIT, "AIRFLOW_ECS_DAGS_VERSIONED": "true",
           "AIRFLOW_ECS_DAGS_DIR": str(tmp_path / "dags")}
    assert health._dag_sync(env, "worker") is None
    assert health._dag_sync(env, "scheduler+triggerer") is None
    assert health._dag_sync(env, "scheduler+dag-processor").reason == "DAGs not synced yet"
    plain = {k: v for k, v in env.items() if k != "AIRFLOW_ECS_DAGS_VERSIONED"}
    assert health._dag_sync(plain, "worker").reason == "DAGs not synced yet"
