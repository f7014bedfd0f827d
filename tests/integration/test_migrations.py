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

    from entrypoint import private_apis

    callbacks = private_apis.lookup(private_apis.CLI_PRE_EXEC_CALLBACKS)
    assert callbacks is not None, private_apis.check(private_apis.CLI_PRE_EXEC_CALLBACKS)
    assert cli_action_loggers.default_action_log in callbacks


def test_waiting_for_the_migration_lock_is_bounded(postgres_server):
    """A lock another session never releases ends the wait with the query that finds it."""
    import time

    import psycopg2

    from entrypoint.errors import MigrationError

    holder = psycopg2.connect(host="127.0.0.1", port=postgres_server.port,
                              user=postgres_server.user, password=postgres_server.password,
                              dbname=postgres_server.database)
    try:
        with holder.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s)", (migrations.MIGRATE_LOCK,))
        started = time.monotonic()
        with pytest.raises(MigrationError, match="migration lock") as caught, \
                migrations._one_at_a_time(postgres_server.url(), lock_wait=2):
            pytest.fail("the lock was taken while another session held it")
        waited = time.monotonic() - started
    finally:
        holder.close()
    assert 2 <= waited < 2 + 1 + migrations.LOCK_POLL
    assert str(migrations.MIGRATE_LOCK) in str(caught.value)


def test_the_migration_lock_is_taken_once_free(postgres_server):
    with migrations._one_at_a_time(postgres_server.url(), lock_wait=5):
        held = postgres_server.psql(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
            f"AND objid = {migrations.MIGRATE_LOCK}")
    assert held.strip() == "1"
