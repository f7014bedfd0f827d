"""entrypoint.worker.first_heartbeat against Airflow's real task supervisor class.

A supervisor is driven through `_on_child_started` (the execution API's run
call, answered by a stand-in client) and then through its own heartbeat
method, as its monitoring loop does; the test counts heartbeat requests.
"""

from __future__ import annotations

import types

import pytest
from airflow.sdk.execution_time import supervisor
from airflow.sdk.execution_time.supervisor import ActivitySubprocess

from entrypoint.worker import first_heartbeat


class _TaskInstances:
    def __init__(self):
        self.calls = []

    def start(self, ti_id, pid, when):
        self.calls.append("run")
        return types.SimpleNamespace(should_retry=False, start_date=None)

    def heartbeat(self, ti_id, pid):
        self.calls.append("heartbeat")


@pytest.fixture
def original():
    method = ActivitySubprocess._on_child_started
    yield method
    ActivitySubprocess._on_child_started = method


def _started(monkeypatch, clock) -> ActivitySubprocess:
    # The attributes the run call and the heartbeat use; no process is forked.
    monkeypatch.setattr(supervisor.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(ActivitySubprocess, "send_msg", lambda self, msg, request_id: None)
    sup = object.__new__(ActivitySubprocess)
    sup.id = "0192"
    sup.pid = 4242
    sup.client = types.SimpleNamespace(task_instances=_TaskInstances())
    sup._process = types.SimpleNamespace(pid=4242)
    sup._last_successful_heartbeat = 0
    sup._last_heartbeat_attempt = 0
    sup._terminal_state = None
    sup.failed_heartbeats = 0
    ActivitySubprocess._on_child_started(sup, ti=types.SimpleNamespace(id="0192"),
                                         dag_rel_path="dag.py", bundle_info=None,
                                         sentry_integration="")
    return sup


def test_airflow_sends_a_heartbeat_right_after_the_run_call(original, monkeypatch):
    clock = [1000.0]
    sup = _started(monkeypatch, clock)
    clock[0] += 0.01
    sup._send_heartbeat_if_needed()
    assert sup.client.task_instances.calls == ["run", "heartbeat"]


def test_with_the_fix_the_first_heartbeat_waits_one_interval(original, monkeypatch):
    assert first_heartbeat.install() is True
    clock = [1000.0]
    sup = _started(monkeypatch, clock)
    calls = sup.client.task_instances.calls
    clock[0] += supervisor.MIN_HEARTBEAT_INTERVAL - 0.1
    sup._send_heartbeat_if_needed()
    assert calls == ["run"]
    clock[0] += 0.2
    sup._send_heartbeat_if_needed()
    assert calls == ["run", "heartbeat"]
    assert sup._last_successful_heartbeat == clock[0]


def test_a_failed_run_call_still_raises_and_sets_nothing(original, monkeypatch):
    assert first_heartbeat.install() is True

    class Refused(Exception):
        pass

    def refuse(*args):
        raise Refused

    monkeypatch.setattr(_TaskInstances, "start", lambda self, *a: refuse())
    killed = []
    monkeypatch.setattr(ActivitySubprocess, "kill", lambda self, sig, **kw: killed.append(sig))
    with pytest.raises(Refused):
        _started(monkeypatch, [1000.0])
    assert killed  # Airflow's own handling: the task process is killed


def test_install_is_idempotent_and_refuses_an_unknown_signature(original, monkeypatch):
    assert first_heartbeat.install() is True
    assert first_heartbeat.install() is True
    assert ActivitySubprocess._on_child_started.__wrapped__ is original

    def other(self, *, ti):
        return None

    monkeypatch.setattr(ActivitySubprocess, "_on_child_started", other)
    assert first_heartbeat.install() is False
    assert ActivitySubprocess._on_child_started is other
