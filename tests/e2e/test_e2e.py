"""End-to-end scenarios on the real images, wired as the ECS task definitions wire them.

The scenarios share one stack and run in this order; those that stop, kill or
replace a container put a fresh one in its place before they end.
"""

from __future__ import annotations

import secrets
import threading
import time

import pytest

from tests.e2e.stack import (
    DAGS_PREFIX,
    HEARTBEAT_TIMEOUT,
    LOGS_BUCKET,
    REFRESH_SECONDS,
    SSM_PATH,
    UID,
)
from tests.support.http import http_json
from tests.support.images import docker, image

AIRFLOW_CONTAINERS = ("scheduler", "webserver", "worker1", "worker2")
BROKER_DOWN_SECONDS = 5  # longer than a scheduler loop, as a failover is

NEW_DAG = '''
from datetime import datetime

from airflow.sdk import dag, task


@dag(dag_id="{dag_id}", schedule=None, start_date=datetime(2026, 1, 1), catchup=False)
def new_dag():
    @task
    def hello():
        print("hello from {dag_id}")

    hello()


new_dag()
'''


def container_id(stack, name: str) -> str:
    return stack.containers[name].get_wrapped_container().id


def replace_worker(stack, name: str, source: str = "git") -> None:
    stack.remove(name)
    stack.start_worker(name, source)
    stack.wait_healthy(name)


def fanout_runs(stack) -> int:
    return stack.api("GET", "/dags/example_fanout/dagRuns")["total_entries"]


# 1
def test_fanout_runs_on_both_workers_through_the_rest_api(stack):
    stack.wait_for_dag("example_fanout", timeout=180)
    run = stack.run_dag("example_fanout", timeout=300)
    assert run["state"] == "success", run
    tis = stack.task_instances("example_fanout", run["dag_run_id"])
    work = [ti for ti in tis if ti["task_id"] == "work"]
    assert len(work) == 20 and all(ti["state"] == "success" for ti in work)
    assert {ti["hostname"] for ti in work} == {"worker1", "worker2"}
    # A worker that has run its tasks holds no metadata-database connection: Celery's
    # results go to Redis, and the connections its start opened are closed before its pool
    # forks (entrypoint.worker.orm_release). What a fleet holds sizes the database
    # (docs/cost.md).
    held = stack.db_connections()
    assert not any(held.get(name) for name in stack.workers), held


# 9
def test_health_endpoint_and_admin_login_from_ssm(stack):
    code, health = http_json("GET", stack.api_url + "/api/v2/monitor/health")
    assert code == 200
    assert health["metadatabase"]["status"] == "healthy", health
    code, token = stack.token()
    assert code in (200, 201) and token
    code, token = stack.token(password="not-the-password")
    assert code == 401 and not token
    code, token = stack.token(password=stack.secrets.admin_password + "x")
    assert code == 401 and not token


# 13
def test_a_new_admin_password_in_ssm_takes_effect_at_the_next_webserver_start(stack):
    """The admin password rotated as operators do it: a new value in Parameter Store, then a
    new webserver task (a deployment). The old password is refused, the new one works."""
    old, new = stack.secrets.admin_password, secrets.token_urlsafe(18)
    stack.aws("ssm").put_parameter(Name=f"{SSM_PATH}AIRFLOW_ECS_ADMIN_PASSWORD", Value=new,
                                   Type="SecureString", Overwrite=True)
    stack.secrets.rotated.append(old)
    stack.secrets.admin_password = new
    stack.replace("webserver", stack.start_webserver)
    stack.use_webserver("webserver")
    code, token = stack.token(password=old)
    assert code == 401 and not token
    code, token = stack.token(password=new)
    assert code in (200, 201) and token


# 7
def test_containers_run_read_only_as_an_arbitrary_uid_with_gid_0(stack):
    for name in AIRFLOW_CONTAINERS:
        info = stack.inspect(name)
        assert info["HostConfig"]["ReadonlyRootfs"] is True, name
        assert info["Config"]["User"] == UID, name
        assert info["State"]["Running"] is True, name
        ids = stack.containers[name].exec(["sh", "-c", "id -u; id -g"]).output.decode().split()
        assert ids == UID.split(":"), (name, ids)
        write = stack.containers[name].exec(["touch", "/opt/airflow/venv/x"])
        assert write.exit_code != 0 and b"Read-only file system" in write.output, name
    migrate = stack.inspect("migrate")
    assert migrate["HostConfig"]["ReadonlyRootfs"] is True
    assert migrate["State"]["ExitCode"] == 0


# 2
def test_git_push_reaches_airflow_without_a_restart_and_old_dags_keep_history(stack):
    if fanout_runs(stack) == 0:
        assert stack.run_dag("example_fanout")["state"] == "success"
    runs_before = fanout_runs(stack)
    started = {n: stack.inspect(n)["State"]["StartedAt"] for n in AIRFLOW_CONTAINERS}

    stack.put_git_file("e2e_from_git.py", NEW_DAG.format(dag_id="e2e_from_git"))
    stack.git_commit("add e2e_from_git")
    pushed = time.monotonic()
    stack.wait_for_dag("e2e_from_git", timeout=REFRESH_SECONDS + 30)
    print(f"new DAG visible {time.monotonic() - pushed:.1f} s after the push")
    run = stack.run_dag("e2e_from_git", timeout=180)
    assert run["state"] == "success", run

    fanout = stack.api("GET", "/dags/example_fanout")
    assert fanout["is_stale"] is False
    assert fanout_runs(stack) == runs_before
    assert {n: stack.inspect(n)["State"]["StartedAt"] for n in AIRFLOW_CONTAINERS} == started


# 11
def test_task_logs_outlive_their_worker(stack):
    run = stack.run_dag("sleep_task", conf={"seconds": 1}, timeout=180)
    assert run["state"] == "success", run
    run_id = run["dag_run_id"]
    ti = stack.api("GET", f"/dags/sleep_task/dagRuns/{run_id}/taskInstances/sleep")
    worker = ti["hostname"]
    assert worker in ("worker1", "worker2")
    # Removed as ECS removes a task (SIGTERM, then the stop timeout): the worker's
    # supervisor uploads the log just after it reports the task's state, and a warm
    # shutdown waits for that; a SIGKILL in that window would lose the log.
    docker("stop", "-t", "120", container_id(stack, worker), timeout=180)
    stack.remove(worker)
    try:
        keys = [o["Key"] for o in stack.aws("s3").list_objects_v2(
            Bucket=LOGS_BUCKET, Prefix="task-logs/dag_id=sleep_task/").get("Contents", [])]
        assert any(run_id in key for key in keys), keys
        code, text = stack.api_text(f"/dags/sleep_task/dagRuns/{run_id}/taskInstances/sleep/"
                                    f"logs/{ti['try_number']}?full_content=true")
        assert code == 200, text[:2000]
        assert "slept 1 s" in text, text[:4000]
    finally:
        stack.start_worker(worker)
        stack.wait_healthy(worker)


# 4
def test_warm_shutdown_finishes_the_running_task_and_exits_0(stack):
    run_id = stack.trigger("sleep_task", {"seconds": 30})
    ti = stack.wait_running("sleep_task", run_id, "sleep", timeout=120)
    worker = ti["hostname"]
    started = time.monotonic()
    docker("stop", "-t", "120", container_id(stack, worker), timeout=180)
    stopped_after = time.monotonic() - started
    state = stack.inspect(worker)["State"]
    assert state["ExitCode"] == 0, (state, stack.logs(worker)[-5000:])
    assert not state["OOMKilled"]
    run = stack.wait_run("sleep_task", run_id, timeout=120)
    ti = stack.api("GET", f"/dags/sleep_task/dagRuns/{run_id}/taskInstances/sleep")
    print(f"{worker} stopped after {stopped_after:.1f} s")
    assert run["state"] == "success", run
    assert ti["try_number"] == 1 and ti["hostname"] == worker, ti
    replace_worker(stack, worker)


# 5
def test_worker_loss_the_task_runs_again_on_the_other_worker(stack):
    run_id = stack.trigger("sleep_task", {"seconds": 20})
    ti = stack.wait_running("sleep_task", run_id, "sleep", timeout=120)
    killed = ti["hostname"]
    docker("kill", "-s", "KILL", container_id(stack, killed))
    run = stack.wait_run("sleep_task", run_id, timeout=HEARTBEAT_TIMEOUT + 180)
    ti = stack.api("GET", f"/dags/sleep_task/dagRuns/{run_id}/taskInstances/sleep")
    assert run["state"] == "success", (run, ti)
    assert ti["try_number"] == 2 and ti["hostname"] not in ("", killed), ti
    replace_worker(stack, killed)


# 6
def test_broker_down_for_seconds_with_runs_in_flight(stack):
    """Redis, broker and result backend, stopped for a few seconds and started again, as a
    restart or failover does, while a task runs and a fan-out is being sent: both runs
    succeed and every role keeps running. Without entrypoint.scheduler.outage the
    scheduler exits (a read of task states fails) or tasks sent meanwhile fail a try and
    wait their retry_delay, 5 minutes; without entrypoint.worker.restore a message a
    worker held waits for the visibility timeout. A message kombu popped for a worker as
    Redis went away is lost in between: Airflow requeues its task after QUEUED_TIMEOUT,
    within the wait below."""
    sleep_run = stack.trigger("sleep_task", {"seconds": 15})
    stack.wait_running("sleep_task", sleep_run, "sleep", timeout=120)
    fanout_run = stack.trigger("example_fanout")
    redis = container_id(stack, "redis")
    docker("stop", "-t", "10", redis)
    time.sleep(BROKER_DOWN_SECONDS)
    docker("start", redis)
    runs = {"sleep_task": sleep_run, "example_fanout": fanout_run}
    for dag_id, run_id in runs.items():
        run = stack.wait_run(dag_id, run_id, timeout=300)
        assert run["state"] == "success", (dag_id, run)
    for name in ("worker1", "worker2", "scheduler"):
        assert stack.inspect(name)["State"]["Running"], name


# 12
@pytest.mark.timeout(1800)  # four replacements, each waiting for a healthy new container
def test_two_schedulers_and_two_webservers_survive_a_rolling_deployment(stack):
    """Two of each, as scheduler_count and webserver_count 2 deploy them; each replaced in
    turn, new task first, as an ECS rolling deployment does, while runs are in flight. No
    task fails or retries, and a running task's log is read through the webserver from
    the worker's log server."""
    for dag_id in ("sleep_task", "example_fanout"):
        stack.wait_for_dag(dag_id, timeout=180)
    stack.start_scheduler(name="scheduler2")
    stack.start_webserver("webserver2")
    for name in ("scheduler2", "webserver2"):
        stack.wait_healthy(name)
    runs = {"sleep_task": [stack.trigger("sleep_task", {"seconds": 150})]}
    ti = stack.wait_running("sleep_task", runs["sleep_task"][0], "sleep", timeout=120)

    log_path = (f"/dags/sleep_task/dagRuns/{runs['sleep_task'][0]}/taskInstances/sleep/"
                f"logs/{ti['try_number']}?full_content=true")
    for webserver in ("webserver", "webserver2"):
        stack.use_webserver(webserver)
        code, text = stack.api_text(log_path)
        assert code == 200, text[:2000]
        # The source line names the worker's log server: read while the task runs.
        assert f"http://{ti['hostname']}:8793/log/" in text, text[:4000]
    running = stack.api("GET", f"/dags/sleep_task/dagRuns/{runs['sleep_task'][0]}"
                                "/taskInstances/sleep")
    assert running["state"] == "running", running

    runs["example_fanout"] = []
    for name, other, start in (
            ("webserver", "webserver2", stack.start_webserver),
            ("webserver2", "webserver", stack.start_webserver),
            ("scheduler", None, lambda new: stack.start_scheduler(name=new)),
            ("scheduler2", None, lambda new: stack.start_scheduler(name=new))):
        if other:
            stack.use_webserver(other)
        runs["example_fanout"].append(stack.trigger("example_fanout"))
        stack.replace(name, start)
        print(f"{name} replaced")
    stack.use_webserver("webserver")

    retried = []
    for dag_id, run_ids in runs.items():
        for run_id in run_ids:
            run = stack.wait_run(dag_id, run_id, timeout=300)
            tis = stack.task_instances(dag_id, run_id)
            assert run["state"] == "success", (dag_id, run, tis)
            retried += [(dag_id, run_id, t["task_id"], t["map_index"], t["try_number"])
                        for t in tis if t["try_number"] != 1]
    if retried:
        dag_id, run_id, task_id, map_index, _ = retried[0]
        tries = stack.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/"
                                 f"{map_index}/tries")
        lines = [line for name in [*stack.containers, *stack.removed_logs]
                 for line in stack.logs(name).splitlines()
                 if any(w in line for w in ("orphan", "adopt", "Reset", "reset", "Marking",
                                            "heartbeat", "zombie", "Failing"))]
        raise AssertionError(f"tasks ran more than once: {retried}\nfirst one's tries: "
                             f"{tries}\n" + "\n".join(lines[-80:]))
    # Back to one of each for the scenarios that follow.
    for name in ("scheduler2", "webserver2"):
        docker("stop", "-t", "60", container_id(stack, name), timeout=120)
        stack.remove(name)


# 10
def test_missing_ssm_parameter_fails_fast_and_names_it(stack):
    missing = f"{SSM_PATH}E2E_MISSING_BROKER_URL"
    env = stack.airflow_env("image", AIRFLOW__CELERY__BROKER_URL=f"ssm:{missing}",
                            AIRFLOW_ECS_WAIT_TIMEOUT="30")
    stack.airflow("badworker", image("worker"), "run worker", env=env)
    try:
        started = time.monotonic()
        code = stack.wait_exit("badworker", timeout=60)
        took = time.monotonic() - started
        logs = stack.logs("badworker")
        assert code not in (0, 137), (code, logs)
        assert took < 30, took
        assert missing in logs, logs
    finally:
        stack.remove("badworker")


# 3
def test_s3_upload_reaches_airflow_without_a_restart(stack):
    runs_before = fanout_runs(stack)
    # Redeploy the DAG readers with the S3 source, as a change of task definition would.
    for name in ("scheduler", "worker1", "worker2"):
        stack.remove(name)
    stack.start_scheduler("s3")
    threads = [threading.Thread(target=replace_worker, args=(stack, n, "s3"))
               for n in ("worker1", "worker2")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stack.wait_healthy("scheduler")
    started = {n: stack.inspect(n)["State"]["StartedAt"] for n in AIRFLOW_CONTAINERS}

    stack.put_s3_file("e2e_from_s3.py", NEW_DAG.format(dag_id="e2e_from_s3"))
    uploaded = time.monotonic()
    stack.wait_for_dag("e2e_from_s3", timeout=REFRESH_SECONDS + 30)
    print(f"new DAG visible {time.monotonic() - uploaded:.1f} s after the upload "
          f"to s3://.../{DAGS_PREFIX}")
    run = stack.run_dag("e2e_from_s3", timeout=180)
    assert run["state"] == "success", run

    fanout = stack.api("GET", "/dags/example_fanout")
    assert fanout["is_stale"] is False
    assert fanout_runs(stack) == runs_before
    assert stack.run_dag("example_fanout")["state"] == "success"
    assert {n: stack.inspect(n)["State"]["StartedAt"] for n in AIRFLOW_CONTAINERS} == started


# 8 (last: it reads every log the other scenarios produced)
def test_no_secret_value_in_any_log_or_docker_inspect(stack):
    values = stack.secrets.values()
    leaks = []
    for name in [*stack.containers, *stack.removed_logs]:
        texts = {"logs": stack.logs(name)}
        if name in stack.containers:
            texts["inspect"] = docker("inspect", container_id(stack, name)).stdout
        for where, text in texts.items():
            leaks += [f"{name} {where}" for value in values if value in text]
    assert not leaks, leaks
    assert len(stack.logs("scheduler")) > 1000  # the logs were really read
