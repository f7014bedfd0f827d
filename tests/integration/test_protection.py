"""Scale-in protection against a local ECS agent endpoint (tests/support/fake_agent.py)."""

import os
import signal
import subprocess
import sys
import time

import pytest
import redis

from entrypoint.worker.protection import AgentClient, AgentError, ProtectionManager
from tests.support import celery_producer
from tests.support.celery_producer import APP_DIR
from tests.support.fake_agent import Agent, serve
from tests.support.waiting import wait_until


@pytest.fixture
def agent():
    state = Agent(seconds_per_minute=2.0)  # a "minute" lasts 2 s: expiries in tests
    server = serve("127.0.0.1", 0, state)
    state.uri = f"http://127.0.0.1:{server.server_address[1]}"
    yield state
    server.shutdown()


class Counter:
    def __init__(self):
        self.value = 0

    def __call__(self):
        return self.value


def drive(manager, seconds, step=0.1):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        manager.step()
        time.sleep(step)


def test_on_while_busy_renewed_across_expiry_off_after_grace(agent):
    running = Counter()
    manager = ProtectionManager(AgentClient(agent.uri), running, minutes=1, idle_grace=1.0)
    manager.step()
    assert not agent.protected() and manager.calls == 0  # idle: nothing asked

    running.value = 2
    manager.step()
    assert agent.protected()
    # Busy for 3 expiries' worth of time: renewed each time, never lapsing.
    end = time.monotonic() + 6
    while time.monotonic() < end:
        manager.step()
        assert agent.protected()
        time.sleep(0.1)
    assert manager.calls >= 3
    renewals = manager.calls

    running.value = 0
    drive(manager, 0.5)
    assert agent.protected()  # still inside the grace period
    drive(manager, 1.0)
    assert not agent.protected()
    assert manager.calls == renewals + 1


def test_no_call_per_task_while_state_is_unchanged(agent):
    running = Counter()
    manager = ProtectionManager(AgentClient(agent.uri), running, minutes=60, idle_grace=30)
    running.value = 1
    for _ in range(200):  # 200 task starts and ends while protected
        running.value = 1 + (running.value % 3)
        manager.step()
    assert manager.calls == 1


def test_agent_errors_never_raise_and_recover(agent):
    running = Counter()
    manager = ProtectionManager(AgentClient(agent.uri), running, minutes=1, idle_grace=1)
    agent.fail_with = 500
    running.value = 1
    manager.step()
    assert manager.failures == 1 and not agent.protected()
    agent.fail_with = None
    manager.retry_at = 0  # skip the backoff wait
    manager.step()
    assert agent.protected() and manager.failures == 0


def test_agent_down_never_raises():
    client = AgentClient("http://127.0.0.1:9", timeout=0.5)
    with pytest.raises(AgentError):
        client.get()
    manager = ProtectionManager(client, lambda: 1, minutes=1, idle_grace=1)
    for _ in range(3):
        manager.step()
        manager.retry_at = 0
    assert manager.failures == 3


def test_invalid_expiry_refused_by_us_and_the_agent(agent):
    with pytest.raises(ValueError, match="protection minutes must be from 1 to"):
        ProtectionManager(AgentClient(agent.uri), lambda: 0, minutes=3000)
    with pytest.raises(AgentError, match="ExpiresInMinutes"):
        AgentClient(agent.uri).set(True, 0)


@pytest.mark.airflow  # the worker loads entrypoint.worker.celery_config
def test_real_worker_protects_its_task_while_it_runs(agent, redis_server, tmp_path):
    broker = redis_server.url(db=6)
    redis.Redis.from_url(broker).flushdb()
    env = {**os.environ, "AIRFLOW__CELERY__BROKER_URL": broker, "ECS_AGENT_URI": agent.uri,
           "AIRFLOW_ECS_PROTECTION_MINUTES": "1", "AIRFLOW_ECS_PROTECTION_IDLE_SECONDS": "2",
           "PYTHONPATH": str(APP_DIR),
           # Its liveness record in the test's folder, not in this machine's /tmp/airflow-ecs.
           "TMPDIR": str(tmp_path)}
    log = tmp_path / "worker.log"
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "shutdown_app", "worker", "--loglevel", "INFO",
         "--hostname", f"protect-{time.time_ns()}@%h"],
        env=env, cwd=APP_DIR, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    try:
        celery_producer.send(broker, "shutdown_app.sleep", [6, str(tmp_path)])
        wait_until(lambda: any(tmp_path.glob("started-*")), "the task to start", timeout=60,
                   interval=0.2, details=log.read_text)
        time.sleep(2)
        assert agent.protected(), log.read_text()

        def finished_while_protected():
            if (tmp_path / "finished").exists():
                return True
            assert agent.protected(), "protection lapsed while the task ran"
            return False

        wait_until(finished_while_protected, "the task to finish", timeout=60, interval=0.2,
                   details=log.read_text)
        wait_until(lambda: not agent.protected(), "protection to clear after the grace period",
                   timeout=15, interval=0.2)
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
    puts = [body for method, body in agent.calls if method == "PUT"]
    assert puts[0]["ProtectionEnabled"] is True and puts[-1] == {"ProtectionEnabled": False}
