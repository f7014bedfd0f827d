"""`airflow db migrate`, run by the migrate role in a child process.

Airflow's CLI writes a row to its `log` table before every command. On a database
with no tables yet that INSERT fails; Airflow expects it and carries on, but
PostgreSQL logs `ERROR: relation "log" does not exist` in its own log, which reads
as a fault on a healthy first start. Only on such a database, this drops that one
callback before running Airflow's own CLI; on a migrated database the audit row is
written as usual.

The callback list is private to Airflow (`cli_action_loggers.__pre_exec_callbacks`),
and so are the settings used to look at the database (entrypoint.private_apis): where
one is missing or changed the command runs unchanged (and the ERROR line comes back).
tests/unit/test_private_apis.py notices when an upgrade removes one.
"""

from __future__ import annotations

import sys

from entrypoint import private_apis


def drop_action_log_without_log_table() -> bool:
    """Drop the action-log callback if the metadata DB has no `log` table; say if dropped."""
    callbacks = private_apis.lookup(private_apis.CLI_PRE_EXEC_CALLBACKS)
    action_log = private_apis.lookup(private_apis.CLI_DEFAULT_ACTION_LOG)
    if callbacks is None or action_log is None or action_log not in callbacks:
        return False
    configure_orm = private_apis.lookup(private_apis.SETTINGS_CONFIGURE_ORM)
    if configure_orm is None or not private_apis.available(private_apis.SETTINGS_ENGINE):
        return False
    from airflow import settings
    from sqlalchemy import inspect

    if settings.engine is None:
        configure_orm()
    if settings.engine is None or inspect(settings.engine).has_table("log"):
        return False
    callbacks.remove(action_log)
    return True


def main() -> None:
    drop_action_log_without_log_table()
    from airflow.__main__ import main as airflow_main

    sys.argv = ["airflow", "db", "migrate"]
    airflow_main()  # type: ignore[no-untyped-call]  # unannotated in Airflow


if __name__ == "__main__":
    main()
