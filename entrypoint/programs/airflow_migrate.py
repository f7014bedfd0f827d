"""`airflow db migrate`, run by the migrate role in a child process.

Airflow's CLI writes a row to its `log` table before every command. On a database
with no tables yet that INSERT fails; Airflow expects it and carries on, but
PostgreSQL logs `ERROR: relation "log" does not exist` in its own log, which reads
as a fault on a healthy first start. Only on such a database, this drops that one
callback before running Airflow's own CLI; on a migrated database the audit row is
written as usual.

The callback list is private to Airflow (`cli_action_loggers.__pre_exec_callbacks`):
where it is missing the command runs unchanged (and the ERROR line comes back).
tests/integration/test_migrations.py notices when an upgrade removes it.
"""

from __future__ import annotations

import sys

PRIVATE_CALLBACKS = "__pre_exec_callbacks"


def drop_action_log_without_log_table() -> bool:
    """Drop the action-log callback if the metadata DB has no `log` table; say if dropped."""
    from airflow.utils import cli_action_loggers

    callbacks = getattr(cli_action_loggers, PRIVATE_CALLBACKS, None)
    action_log = getattr(cli_action_loggers, "default_action_log", None)
    if not isinstance(callbacks, list) or action_log not in callbacks:
        return False
    from airflow import settings
    from sqlalchemy import inspect

    if settings.engine is None:
        settings.configure_orm()  # type: ignore[no-untyped-call]  # unannotated in Airflow
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
