"""entrypoint.worker.task_exit against Airflow's real task supervisor class.

A supervisor whose task process has closed every socket but not yet exited is
the case fixed: Airflow's own code then sleeps in select() for the whole
timeout. These tests drive WatchedSubprocess._service_subprocess on a real
forked child and compare with the unpatched method in the same conditions.
"""

from __future__ import annotations

import os
import selectors
import socket
import time

import psutil
import pytest
from airflow.sdk.execution_time.supervisor import (
    InProcessTestSupervisor,
    PsutilTracker,
    WatchedSubprocess,
)

from entrypoint.worker import task_exit


@pytest.fixture
def patched():
    original = WatchedSubprocess._service_subprocess
    assert task_exit.install() is True
    yield original
    WatchedSubprocess._service_subprocess = original


def _child(exit_after: float, code: int = 0) -> int:
    pid = os.fork()
    if pid == 0:  # the task process: no socket left open, exits a moment later
        time.sleep(exit_after)
        os._exit(code)
    return pid


class _Log:
    def __init__(self):
        self.lines = []

    def warning(self, message, **fields):
        self.lines.append((message, fields))


def _supervisor(pid: int, selector: selectors.BaseSelector | None = None) -> WatchedSubprocess:
    # The attributes _service_subprocess and _check_subprocess_exit use; the
    # rest of a supervisor (API client, log sockets) plays no part here.
    sup = object.__new__(WatchedSubprocess)
    sup.selector = selector or selectors.DefaultSelector()
    sup._process = PsutilTracker(psutil.Process(pid))
    sup._exit_code = None
    sup._process_exit_monotonic = None
    sup.process_log = _Log()
    return sup


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def test_without_sockets_returns_when_the_process_exits_not_after_the_timeout(patched):
    pid = _child(exit_after=0.2, code=3)
    sup = _supervisor(pid)
    started = time.monotonic()
    code = WatchedSubprocess._service_subprocess(sup, max_wait_time=30)
    elapsed = time.monotonic() - started
    _reap(pid)
    assert code == 3 and sup._exit_code == 3
    # Airflow's own exit handling ran on the result.
    assert sup.process_log.lines == [("Process exited abnormally", {"exit_code": 3})]
    assert elapsed < 15, f"waited {elapsed:.1f}s of the 30s timeout: the exit was not noticed"


def test_unpatched_airflow_sleeps_the_whole_timeout_in_the_same_case(patched):
    # What the fix is for: with nothing registered, select() only sleeps.
    pid = _child(exit_after=0.05)
    sup = _supervisor(pid)
    started = time.monotonic()
    patched(sup, max_wait_time=1.5)  # Airflow's own method
    elapsed = time.monotonic() - started
    _reap(pid)
    assert elapsed >= 1.4


def test_without_sockets_a_live_process_is_waited_for_at_most_the_timeout(patched):
    pid = _child(exit_after=30)
    sup = _supervisor(pid)
    try:
        assert WatchedSubprocess._service_subprocess(sup, max_wait_time=0.3) is None
        assert sup._exit_code is None
    finally:
        os.kill(pid, 9)
        _reap(pid)


def test_a_bare_psutil_process_that_outlives_the_wait_is_no_error(patched):
    # Airflow's in-process supervisors hold psutil.Process() itself (no tracker, so no
    # TimeoutExpired attribute): a wait that times out must not become an AttributeError.
    sup = object.__new__(InProcessTestSupervisor)
    sup.selector = selectors.DefaultSelector()
    sup._process = psutil.Process()  # as Airflow's run_in_process makes it
    sup._exit_code = None
    assert not hasattr(sup._process, "TimeoutExpired")
    started = time.monotonic()
    assert InProcessTestSupervisor._service_subprocess(sup, max_wait_time=0.2) is None
    assert time.monotonic() - started >= 0.15  # it waited, then Airflow's check ran


def test_with_a_socket_open_airflow_code_runs_unchanged(patched, monkeypatch):
    pid = _child(exit_after=30)
    ours, theirs = socket.socketpair()
    selector = selectors.DefaultSelector()
    calls = []
    selector.register(ours, selectors.EVENT_READ, (lambda s: calls.append(s.recv(10)) or True,
                                                   lambda s: None))
    sup = _supervisor(pid, selector)
    try:
        theirs.sendall(b"x")
        assert WatchedSubprocess._service_subprocess(sup, max_wait_time=5) is None
        assert calls == [b"x"]  # the socket's handler ran: Airflow's select loop
    finally:
        os.kill(pid, 9)
        _reap(pid)
        ours.close()
        theirs.close()


def test_install_is_idempotent_and_refuses_an_unknown_signature(patched, monkeypatch):
    assert task_exit.install() is True
    assert WatchedSubprocess._service_subprocess.__wrapped__ is patched

    def other(self, timeout):
        return None

    monkeypatch.setattr(WatchedSubprocess, "_service_subprocess", other)
    assert task_exit.install() is False
    assert WatchedSubprocess._service_subprocess is other
