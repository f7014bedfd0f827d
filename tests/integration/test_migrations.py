"""The migrate role against a real PostgreSQL: quiet on a fresh database, audited after."""

import pytest

from entrypoint import config, migrations
from tests.support.servers import airflow_env

# Every test here runs Airflow: its CLI against the database, or its modules.
pytestmark = pytest.mark.airflow


def test_first_migration_leaves_no_error_in_the_postgres_log(postgres_server, tmp_path):
    env = airflow_env(postgres_server, "airflow_quiet", tmp_path)
    settings = config.load({"AIRFLOW_ECS_WAIT_TIMEOUT": "60"})
    before = postgres_server.log_path.stat().st_size
    migrations.run_migrations(settings, env)
    with postgres_server.log_path.open("rb") as log:
        log.seek(before)
        written = log.read().decode(errors="replace")
    assert "ERROR" not in written, written
    # Once the tables exist, Airflow's own audit row for the command is written again.
    migrations.run_migrations(settings, env)
    events = postgres_server.psql("SELECT string_agg(event, ',') FROM log",
                                database="airflow_quiet")
    assert events == "cli_migratedb"


def test_the_private_callback_list_is_still_there():
    """airflow_migrate relies on Airflow's private CLI callback list; an Airflow upgrade
    that renames it brings back PostgreSQL's ERROR line on a fresh database."""
    from airflow.utils import cli_action_loggers

    from entrypoint.programs import airflow_migrate

    callbacks = getattr(cli_action_loggers, airflow_migrate.PRIVATE_CALLBACKS)
    assert cli_action_loggers.default_action_log in callbacks
