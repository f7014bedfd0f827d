"""The metadata database's schema: Airflow's head migration, the current one, migrating.

The head revision is read from the installed Airflow's migration scripts as
text instead of importing Airflow (seconds of CPU, BENCHMARKS.md's import
costs, which every waiting role would pay on each start);
tests/integration/test_migrations.py checks the result against Airflow's own
answer.
"""

from __future__ import annotations

import contextlib
import importlib.util
import re
import sys
import time
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from entrypoint import procs
from entrypoint.config import Settings
from entrypoint.errors import MigrationError
from entrypoint.log import log, redact

if TYPE_CHECKING:
    from collections.abc import Iterator

    from sqlalchemy.engine import Connection

_REVISION = re.compile(r'^revision\s*=\s*["\'](\w+)["\']', re.M)
_DOWN = re.compile(r"^down_revision\s*=\s*(.+)$", re.M)


def _airflow_dir() -> Path:
    spec = importlib.util.find_spec("airflow")
    if spec is None or not spec.submodule_search_locations:
        raise MigrationError("Airflow is not installed in this environment")
    return Path(next(iter(spec.submodule_search_locations)))


@lru_cache(maxsize=1)
def revision_graph() -> tuple[frozenset[str], frozenset[str]]:
    """(every revision, the head revisions) of the installed Airflow."""
    return _graph(_airflow_dir() / "migrations" / "versions")


# FAB's tables have migrations of their own, recorded in their own table. `airflow db
# migrate` runs them after Airflow's, so Airflow's head alone does not mean they exist.
FAB_VERSION_TABLE = "alembic_version_fab"


@lru_cache(maxsize=1)
def fab_revision_graph() -> tuple[frozenset[str], frozenset[str]]:
    """(every revision, the head revisions) of the installed FAB provider; empty sets
    without it."""
    versions = _airflow_dir() / "providers" / "fab" / "migrations" / "versions"
    return _graph(versions) if versions.is_dir() else (frozenset(), frozenset())


def _graph(versions: Path) -> tuple[frozenset[str], frozenset[str]]:
    revisions: set[str] = set()
    downs: set[str] = set()
    for script in versions.glob("*.py"):
        text = script.read_text()
        match = _REVISION.search(text)
        if not match:
            continue
        revisions.add(match.group(1))
        down = _DOWN.search(text)
        if down:
            downs.update(re.findall(r"[\"'](\w+)[\"']", down.group(1)))
    return frozenset(revisions), frozenset(revisions - downs)


def head_revisions() -> set[str]:
    return set(revision_graph()[1])


def current_revisions(connection: Connection, table: str = "alembic_version") -> set[str]:
    """Rows of alembic_version (or another version table); empty when it does not exist yet."""
    from sqlalchemy import inspect, text

    if not inspect(connection).has_table(table):
        return set()
    # The table name is one of our constants, never input.
    return {row[0] for row in connection.execute(text(f"SELECT version_num FROM {table}"))}  # noqa: S608


# The query an operator runs to find who holds it (shown, never executed here).
_LOCK_HOLDER = "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND objid = {key}"
MIGRATE_LOCK = 0x41454353  # our PostgreSQL advisory lock key ("AECS"), not one of Airflow's
LOCK_POLL = 0.5  # seconds between attempts: a SIGTERM is never stuck behind a blocking call


def run_migrations(settings: Settings, env: Mapping[str, str]) -> None:
    """`airflow db migrate`; a failure raises MigrationError, never swallowed.

    Safe when several containers run it at once: on PostgreSQL they take turns
    under an advisory lock of ours. Airflow's own migration lock does not cover
    everything `db migrate` does on a fresh database: two at once failed with a
    duplicate `default_pool` row (seen in the test that starts two together).
    """
    timeout = max(settings.wait_timeout, 600)
    # Another container holds the lock for at most its own migration's timeout.
    with _one_at_a_time(env.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "").strip(),
                        lock_wait=timeout + settings.wait_timeout):
        log.info("running airflow db migrate")
        # The migrate role's command (rolenames.TABLE), through a wrapper that keeps
        # PostgreSQL's log clean on a fresh database (programs.airflow_migrate says how).
        result = procs.run([sys.executable, "-m", "entrypoint.programs.airflow_migrate"], env=env,
                           timeout=timeout)
    if result.returncode != 0:
        output = (result.stdout + result.stderr).decode(errors="replace")
        tail = "\n".join(output.strip().splitlines()[-15:])
        raise MigrationError(f"airflow db migrate exited {result.returncode}:\n"
                             f"{redact(tail)}")
    log.info("the database schema is at Airflow's head migration")


@contextlib.contextmanager
def _one_at_a_time(db_url: str, lock_wait: float) -> Iterator[None]:
    if not db_url.startswith(("postgresql", "postgres")):
        yield  # other databases: Airflow's own lock only
        return
    from sqlalchemy import text

    from entrypoint.waits import _engine

    engine = _engine(db_url)
    deadline = time.monotonic() + lock_wait
    try:
        with engine.connect() as connection:
            waited = False
            while not connection.execute(text("SELECT pg_try_advisory_lock(:key)"),
                                         {"key": MIGRATE_LOCK}).scalar():
                if not waited:
                    log.info("another container is migrating the database; waiting for it")
                    waited = True
                if time.monotonic() >= deadline:
                    finder = _LOCK_HOLDER.format(key=MIGRATE_LOCK)
                    raise MigrationError(
                        f"another container held the migration lock for over {lock_wait:.0f} s "
                        "(longer than a migration may take): a migrate task may be stuck; stop "
                        f"it, or find the session holding the lock with: {finder}")
                connection.commit()
                time.sleep(LOCK_POLL)
            connection.commit()
            try:
                yield
            finally:
                connection.execute(text("SELECT pg_advisory_unlock(:key)"),
                                   {"key": MIGRATE_LOCK})
                connection.commit()
    finally:
        engine.dispose()
