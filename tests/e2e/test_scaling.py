"""Scaling on the real images: a worker protects its ECS task from scale-in while it
runs a task (through a stand-in for the ECS agent's endpoint, in its own container),
and the metrics role's backlog follows a burst of queued tasks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from testcontainers.core.container import DockerContainer

from tests.e2e.stack import AGENT_IMAGE, REFRESH_SECONDS, published_port
from tests.support.http import http_json
from tests.support.images import image
from tests.support.waiting import wait_until

IDLE_SECONDS = 10
NAMESPACE = "AirflowEcsE2E"
CLUSTER = "e2e"

PROTECTED_DAG = '''
import time
from datetime import datetime

from airflow.sdk import dag, get_current_context, task


@dag(dag_id="e2e_protected", schedule=None, start_date=datetime(2026, 1, 1), catchup=False)
def e2e_protected():
    @task(queue="protected")
    def hold():
        time.sleep(float(get_current_context()["dag_run"].conf.get("seconds", 20)))

    hold()


e2e_protected()
'''

BURST_DAG = '''
from datetime import datetime

from airflow.sdk import dag, task


@dag(dag_id="e2e_burst", schedule=None, start_date=datetime(2026, 1, 1), catchup=False,
     max_active_tasks=50)
def e2e_burst():
    @task(queue="burst")
    def one(n: int) -> int:
        return n

    one.expand(n=list(range(50)))


e2e_burst()
'''


@pytest.fixture(scope="module")
def scaling(stack):
    source = stack.containers["worker1"].env.get("AIRFLOW_ECS_DAGS_SOURCE", "git")
    agent = stack._publish(DockerContainer(AGENT_IMAGE), 8000)
    stack._start("agent", agent)
    agent_url = f"http://127.0.0.1:{published_port(agent, 8000)}"
    stack._wait_http(agent_url + "/calls", "agent")
    stack.airflow("worker3", image("worker"), "run worker -- --queues protected",
                  env=stack.airflow_env(source, ECS_AGENT_URI="http://agent:8000",
                                        AIRFLOW_ECS_PROTECTION_IDLE_SECONDS=str(IDLE_SECONDS)))
    stack.airflow("metrics", image("base"), "run metrics", env=stack.airflow_env(
        "image", AIRFLOW_ECS_METRICS_INTERVAL="5", AIRFLOW_ECS_METRICS_NAMESPACE=NAMESPACE,
        AIRFLOW_ECS_METRICS_CLUSTER=CLUSTER, AIRFLOW_ECS_METRICS_QUEUES="default,burst,protected"))
    stack.publish_dag("e2e_protected.py", PROTECTED_DAG)
    stack.publish_dag("e2e_burst.py", BURST_DAG)
    stack.wait_healthy("worker3")
    stack.wait_for_dag("e2e_protected", timeout=REFRESH_SECONDS + 30)
    stack.wait_for_dag("e2e_burst", timeout=REFRESH_SECONDS + 30)
    yield agent_url, source
    for name in ("burstworker", "metrics", "worker3", "agent"):
        stack.remove(name)


def agent_state(agent_url: str) -> dict:
    code, body = http_json("GET", agent_url + "/calls")
    assert code == 200, body
    return body


def test_worker_protects_its_task_while_running_and_clears_after_the_grace(stack, scaling):
    agent_url, _ = scaling
    assert agent_state(agent_url)["protected"] is False
    run_id = stack.trigger("e2e_protected", {"seconds": 20})
    ti = stack.wait_running("e2e_protected", run_id, "hold", timeout=120)
    assert ti["hostname"] == "worker3"
    wait_until(lambda: agent_state(agent_url)["protected"], "the worker to protect its task",
               timeout=10, interval=0.5)
    assert agent_state(agent_url)["protected"] is True

    def left_running():
        if stack.api("GET", f"/dags/e2e_protected/dagRuns/{run_id}")["state"] != "running":
            return True
        assert agent_state(agent_url)["protected"] is True, "protection lapsed mid-task"
        return False

    # The task holds its worker for 20 s.
    wait_until(left_running, "the run to end", timeout=120, interval=2)
    assert stack.wait_run("e2e_protected", run_id, timeout=60)["state"] == "success"
    wait_until(lambda: not agent_state(agent_url)["protected"], "protection to clear",
               timeout=IDLE_SECONDS + 20, interval=1)
    state = agent_state(agent_url)
    assert state["protected"] is False, state
    puts = [body for method, body in state["calls"] if method == "PUT"]
    # One to protect, one to clear: no call per task when the state doesn't change.
    assert [p["ProtectionEnabled"] for p in puts] == [True, False], puts


def latest(stack, metric: str, **dims: str) -> float | None:
    dimensions = [{"Name": "Cluster", "Value": CLUSTER}, {"Name": "Service", "Value": "worker"},
                  *({"Name": k, "Value": v} for k, v in dims.items())]
    now = datetime.now(UTC)
    points = stack.aws("cloudwatch").get_metric_statistics(
        Namespace=NAMESPACE, MetricName=metric, Dimensions=dimensions,
        StartTime=now - timedelta(seconds=12), EndTime=now + timedelta(seconds=1),
        Period=1, Statistics=["Maximum"])["Datapoints"]
    if not points:
        return None
    return max(points, key=lambda p: p["Timestamp"])["Maximum"]


def wait_metric(stack, what, predicate, timeout: float, metric: str, **dims: str) -> list:
    """Every value read until predicate holds for the latest one (the last in the list)."""
    seen = []

    def read():
        seen.append(latest(stack, metric, **dims))
        return seen[-1]

    wait_until(read, f"{metric} {dims}: {what}", timeout=timeout, interval=2,
               accept=lambda value: value is not None and predicate(value),
               details=lambda: f"every value read: {seen}")
    return seen


def test_backlog_metric_rises_and_falls_with_a_burst_of_50_tasks(stack, scaling):
    _, source = scaling
    wait_metric(stack, "published as 0", lambda v: v == 0, 60, "QueuedTasks", Queue="burst")
    # The whole backlog counts every queue and every unacknowledged message: earlier
    # scenarios (a killed worker's message stays unacknowledged until the visibility
    # timeout) may leave some. The burst must add 50 to it, then take them away.
    baseline = wait_metric(stack, "published", lambda v: True, 30, "Backlog")[-1]
    run_id = stack.trigger("e2e_burst")
    # No worker consumes the burst queue yet: all 50 tasks wait in Redis.
    wait_metric(stack, "reached 50", lambda v: v >= 50, 120, "QueuedTasks", Queue="burst")
    wait_metric(stack, f"reached {baseline + 50:g}", lambda v: v >= baseline + 50, 30,
                "Backlog")
    stack.airflow("burstworker", image("worker"), "run worker -- --queues burst",
                  env=stack.airflow_env(source))
    assert stack.wait_run("e2e_burst", run_id, timeout=300)["state"] == "success"
    wait_metric(stack, "fell to 0", lambda v: v == 0, 60, "QueuedTasks", Queue="burst")
    wait_metric(stack, f"fell back to {baseline:g}", lambda v: v <= baseline, 30, "Backlog")
    tis = stack.task_instances("e2e_burst", run_id)
    assert len(tis) == 50 and {ti["state"] for ti in tis} == {"success"}
    assert {ti["hostname"] for ti in tis} == {"burstworker"}
