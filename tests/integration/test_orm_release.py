"""entrypoint.worker.orm_release against a real PostgreSQL on 127.0.0.1: the connections a
worker's start opened are closed before its pool forks, and the engines stay usable."""

from __future__ import annotations

import os

import pytest
from celery.backends.database.session import SessionManager
from sqlalchemy import create_engine, text

from entrypoint.worker import orm_release, result_engine

pytestmark = pytest.mark.airflow

APP = "orm-release-test"


def connections(postgres_server) -> int:
    return int(postgres_server.psql(
        f"select count(*) from pg_stat_activity where application_name = '{APP}'"))


@pytest.fixture
def engines(postgres_server, monkeypatch):
    """Airflow's engine and the result backend's, each holding pooled connections."""
    import airflow.settings

    url = postgres_server.url()
    airflow_engine = create_engine(url, connect_args={"application_name": APP})
    monkeypatch.setattr(airflow.settings, "engine", airflow_engine)
    monkeypatch.setattr(SessionManager, "get_engine", SessionManager.get_engine)
    monkeypatch.setattr(result_engine, "_ENGINES", {})
    assert result_engine.install()
    results = SessionManager().get_engine(url, connect_args={"application_name": APP})
    with airflow_engine.connect() as one, airflow_engine.connect() as two:
        one.execute(text("select 1"))
        two.execute(text("select 1"))
    with results.connect() as conn:
        conn.execute(text("select 1"))
    yield airflow_engine, results
    airflow_engine.dispose()
    results.dispose()


def test_the_start_up_connections_are_closed_and_the_engines_still_work(
        engines, postgres_server):
    airflow_engine, results = engines
    assert connections(postgres_server) == 3  # checked in, kept open by the pools
    assert orm_release.install()
    assert connections(postgres_server) == 0
    with airflow_engine.connect() as conn:
        assert conn.execute(text("select 1")).scalar() == 1
    with results.connect() as conn:
        assert conn.execute(text("select 2")).scalar() == 2
    assert connections(postgres_server) == 2


def test_a_process_forked_after_it_holds_no_connection_of_its_parent(engines, postgres_server):
    orm_release.install()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: how many sockets to the server does it hold?
        port = f":{postgres_server.port:04X}"
        held = 0
        for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
            inodes = {line.split()[9] for line in open(table).read().splitlines()[1:]
                      if line.split()[2].endswith(port) and line.split()[3] == "01"}
            for fd in os.listdir("/proc/self/fd"):
                try:
                    target = os.readlink(f"/proc/self/fd/{fd}")
                except OSError:
                    continue
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    held += 1
        os.write(write, str(held).encode())
        os._exit(0)
    os.close(write)
    held = int(os.read(read, 16))
    os.waitpid(pid, 0)
    assert held == 0


def test_without_airflows_engine_nothing_is_closed_and_nothing_fails(monkeypatch):
    import airflow.settings

    monkeypatch.setattr(airflow.settings, "engine", None)
    monkeypatch.setattr(result_engine, "_ENGINES", {})
    assert orm_release.install() is False
