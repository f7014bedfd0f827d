"""entrypoint.worker.result_engine against Celery's real database result backend (SQLite)."""

from __future__ import annotations

import pytest
from celery import Celery
from celery.backends.database import DatabaseBackend
from celery.backends.database.session import SessionManager
from sqlalchemy.pool import NullPool

from entrypoint.worker import result_engine

pytestmark = pytest.mark.airflow


@pytest.fixture
def installed(monkeypatch):
    # monkeypatch restores Celery's method and the engine cache after the test.
    monkeypatch.setattr(SessionManager, "get_engine", SessionManager.get_engine)
    monkeypatch.setattr(result_engine, "_ENGINES", {})
    assert result_engine.install()


def test_outside_a_pool_process_one_pooled_engine_serves_every_query(installed, tmp_path):
    url = f"sqlite:///{tmp_path / 'results.db'}"
    manager = SessionManager()
    first = manager.get_engine(url)
    assert manager.get_engine(url) is first
    assert SessionManager().get_engine(url) is first  # a backend per thread shares it
    assert not isinstance(first.pool, NullPool)
    assert first.pool._pre_ping


def test_the_backend_engine_options_are_kept_pool_options_included(installed, tmp_path):
    engine = SessionManager().get_engine(f"sqlite:///{tmp_path / 'r.db'}",
                                         pool_pre_ping=False, pool_size=2, echo=True)
    assert not engine.pool._pre_ping
    assert engine.pool.size() == 2
    assert engine.echo


def test_a_forked_pool_process_keeps_celerys_own_engine(installed, tmp_path):
    url = f"sqlite:///{tmp_path / 'results.db'}"
    ours = SessionManager().get_engine(url)
    manager = SessionManager()
    manager.forked = True
    engine = manager.get_engine(url)
    assert manager._engines[url] is engine
    assert engine is not ours
    assert list(result_engine._ENGINES.values()) == [ours]


def test_a_forked_process_makes_its_own_engine_and_leaves_the_parents_open(
        installed, tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'results.db'}"
    parent = SessionManager().get_engine(url)
    disposed = []
    monkeypatch.setattr(type(parent), "dispose",
                        lambda self, close=True: disposed.append((self, close)))
    monkeypatch.setattr(result_engine.os, "getpid", lambda: -1)
    child = SessionManager().get_engine(url)
    assert child is not parent
    assert disposed == [(parent, False)]
    assert list(result_engine._ENGINES) == [(-1, url)]


def test_results_are_stored_and_read_through_the_pooled_engine(installed, tmp_path):
    backend = DatabaseBackend(app=Celery(set_as_current=False),
                              url=f"sqlite:///{tmp_path / 'results.db'}")
    backend.store_result("task-1", 42, "SUCCESS")
    backend.store_result("task-2", None, "FAILURE")
    assert backend.get_task_meta("task-1")["status"] == "SUCCESS"
    assert backend.get_task_meta("task-2")["status"] == "FAILURE"
    assert len(result_engine._ENGINES) == 1
