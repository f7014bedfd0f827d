"""Versioned DAGs on the real images (AIRFLOW_ECS_DAGS_VERSIONED): a DAG run keeps the
DAG version it started with while a new one is pushed between two of its tasks; a new
run, and a rerun cleared "on the latest version", take the new one.

The first task says it runs (an Airflow Variable), then waits for another one the
test sets once the new version is parsed, so the push lands between the two tasks
whatever the machine's speed. What
the second task returns (its XCom, read through the REST API) names the version of
the DAG file it ran. The DAG's description changes with it: Airflow records a new DAG
version only when the serialized DAG changes (a change of a task's code alone moves
the latest DAG version to the new bundle version instead)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.e2e.stack import REFRESH_SECONDS
from tests.support.waiting import wait_until

# Under AIRFLOW_ECS_DAGS_STATE_DIR (the stack's DAGs dir's parent/.dags-sync): Airflow's
# dag_bundle_storage_path, then the bundle's name.
VERSIONS = "/opt/airflow/dags-data/.dags-sync/bundles/dags-folder/versions"

DAG = '''
import time
from datetime import datetime

from airflow.sdk import Variable, dag, task


@dag(dag_id="{dag_id}", schedule=None, start_date=datetime(2026, 1, 1), catchup=False,
     description="{marker}")
def versioned():
    @task
    def first():
        # Running, at its run's version: the test may push the next one now.
        Variable.set("{dag_id}_started", "yes")
        # Held until the test has pushed the next version (bounded: the test gives up
        # well before).
        deadline = time.monotonic() + 600
        while Variable.get("{dag_id}_go", default=None) is None:
            if time.monotonic() > deadline:
                raise TimeoutError("{dag_id}_go was never set")
            time.sleep(1)

    @task
    def second():
        return "{marker}"

    first() >> second()


versioned()
'''


def dag_file(dag_id: str, marker: str) -> str:
    return DAG.replace("{dag_id}", dag_id).replace("{marker}", marker)


def returned(stack, dag_id: str, run_id: str) -> object:
    return stack.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/second/"
                            "xcomEntries/return_value?deserialize=true")["value"]


def task_logs(stack, dag_id: str, run_id: str) -> str:
    """The logs of the run's tasks, for a failure's message."""
    texts = []
    for ti in stack.task_instances(dag_id, run_id):
        _, text = stack.api_text(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/"
                                 f"{ti['task_id']}/logs/{max(ti['try_number'], 1)}"
                                 "?full_content=true")
        texts.append(f"--- {ti['task_id']} ({ti['state']}):\n{text[-4000:]}")
    return "\n".join(texts)


def versions_of(stack, dag_id: str) -> list[dict]:
    reply = stack.api("GET", f"/dags/{dag_id}/dagVersions?order_by=version_number")
    return reply["dag_versions"]


def run_keeps_its_version(stack, dag_id: str, publish: Callable[[str, str], str | None]):
    """The scenario on the stack's current DAG source; publish(file name, text) puts a
    DAG file there and returns the bundle version it expects (None: unknown ahead)."""
    name = f"{dag_id}.py"
    expected_v1 = publish(name, dag_file(dag_id, "ran-version-1"))
    stack.wait_for_dag(dag_id, timeout=REFRESH_SECONDS + 120)
    [v1] = wait_until(lambda: versions_of(stack, dag_id), f"{dag_id}'s first version",
                      timeout=60, interval=2, ignoring=RuntimeError)
    assert v1["bundle_version"], v1
    if expected_v1:
        assert v1["bundle_version"] == expected_v1, v1

    old_run = stack.trigger(dag_id)
    # Not the task's state (running from the moment the worker takes it, before its
    # bundle is built): the task's own word that its code runs. An S3 version can't be
    # built once an object of it is replaced (docs/dags.md, "S3 versions").
    wait_until(lambda: stack.api("GET", f"/variables/{dag_id}_started"),
               f"{dag_id}'s first task to run", timeout=180, interval=1,
               ignoring=RuntimeError)

    expected_v2 = publish(name, dag_file(dag_id, "ran-version-2"))
    versions = wait_until(lambda: versions_of(stack, dag_id), f"{dag_id}'s second version",
                          timeout=REFRESH_SECONDS + 120, interval=2,
                          accept=lambda found: len(found) == 2)
    v2 = versions[1]
    assert v2["version_number"] == v1["version_number"] + 1, versions
    assert v2["bundle_version"] and v2["bundle_version"] != v1["bundle_version"], versions
    if expected_v2:
        assert v2["bundle_version"] == expected_v2, v2
    stack.api("POST", "/variables", {"key": f"{dag_id}_go", "value": "go"})

    run = stack.wait_run(dag_id, old_run, timeout=300)
    assert run["state"] == "success", task_logs(stack, dag_id, old_run)
    assert run["bundle_version"] == v1["bundle_version"], run
    assert returned(stack, dag_id, old_run) == "ran-version-1"

    new_run = stack.run_dag(dag_id, timeout=300)
    assert new_run["state"] == "success", task_logs(stack, dag_id, new_run["dag_run_id"])
    assert new_run["bundle_version"] == v2["bundle_version"], new_run
    assert returned(stack, dag_id, new_run["dag_run_id"]) == "ran-version-2"

    stack.api("POST", f"/dags/{dag_id}/dagRuns/{old_run}/clear",
              {"dry_run": False, "run_on_latest_version": True})
    second = wait_until(
        lambda: stack.api("GET", f"/dags/{dag_id}/dagRuns/{old_run}/taskInstances/second"),
        f"{dag_id}'s cleared run to rerun its second task", timeout=300, interval=2,
        accept=lambda ti: ti["try_number"] == 2 and ti["state"] in ("success", "failed"))
    run = stack.wait_run(dag_id, old_run, timeout=120)
    assert run["state"] == "success" and second["state"] == "success", \
        task_logs(stack, dag_id, old_run)
    assert run["bundle_version"] == v2["bundle_version"], run
    assert returned(stack, dag_id, old_run) == "ran-version-2"
    assert [v["bundle_version"] for v in versions_of(stack, dag_id)] == [
        v1["bundle_version"], v2["bundle_version"]]
    # The worker keeps each version it ran in a folder of its own (docs/dags.md, "Disk use").
    held = stack.containers[stack.workers[0]].exec(["ls", VERSIONS]).output.decode().split()
    assert {v1["bundle_version"], v2["bundle_version"]} <= set(held), held


@pytest.mark.timeout(1500)  # includes the stack's start
def test_git_a_run_keeps_its_commit_while_a_new_one_is_pushed(versions_stack):
    stack = versions_stack

    def publish(name: str, text: str) -> str:
        stack.put_git_file(name, text)
        stack.git_commit(f"{name}: new version")
        return stack.git_exec("git -C /srv/work rev-parse HEAD").strip()

    run_keeps_its_version(stack, "e2e_versions_git", publish)


@pytest.mark.timeout(900)
def test_s3_a_run_keeps_its_listing_while_a_new_upload_lands(versions_stack):
    stack = versions_stack
    # Redeploy the DAG readers with the S3 source, as a change of task definition would.
    for name in ("scheduler", *stack.workers):
        stack.remove(name)
    stack.start_scheduler("s3")
    for name in stack.workers:
        stack.start_worker(name, "s3")
    for name in ("scheduler", *stack.workers):
        stack.wait_healthy(name)

    def publish(name: str, text: str) -> None:
        stack.put_s3_file(name, text)
        return None

    run_keeps_its_version(stack, "e2e_versions_s3", publish)


def test_the_broker_and_the_results_of_those_runs_were_on_valkey(versions_stack):
    # The runs above went through this stack's broker: Valkey, as docs/deploy.md creates it
    # on ElastiCache, with Celery's task results in its database 1.
    assert versions_stack.broker == "valkey"
    assert "server_name:valkey" in versions_stack.broker_cli("INFO", "server")
    results = versions_stack.broker_cli("-n", "1", "--scan", "--pattern",
                                        "celery-task-meta-*").split()
    assert results, "no Celery result in Valkey's database 1"
