"""Versioned DAG bundles (AIRFLOW_ECS_DAGS_VERSIONED) at a task's start, 2,000 DAG files.

What is timed is what Airflow's task runner times as its `bundle_prepare_ms`
(airflow.sdk.execution_time.task_runner.parse): `DagBundlesManager().get_bundle(name,
version)`, `initialize()` and its access check; then the bundle's path is resolved
and the task's DAG file read under Airflow's `BundleVersionLock`, as the task runs.

- held version: a worker that already holds the run's version, against plain-folder
  mode (Airflow's LocalDagBundle on the synced folder), same machine, same run. Each
  task is a process forked from a worker process that has loaded Airflow and run the
  Celery worker's preload (entrypoint.worker.preload), as Airflow's task supervisor
  forks each task; and, for comparison, a fresh interpreter (Airflow imported before
  the clock starts, the bundle's module inside it).
- version not on the worker (an empty machine), a task forked from a worker as above:
  the git bundle against `git clone --depth 1` of that commit from the same
  `git daemon`; the S3 bundle against our own first sync (`sync_once(first=True)`, in
  a fresh process, its imports inside the measurement: the bundle imports the S3
  code when it builds a version, inside its measurement too), from the same local
  SeaweedFS server.

Medians over runs; the runs of the two sides alternate.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from unittest import mock

from bench.dagsync import (
    BUCKET,
    FILES,
    PREFIX,
    S3_REGION,
    S3_SIZES,
    SeaweedFS,
    check_tree,
    create_bucket,
    dag_source,
    git,
    relative_path,
    served_git,
)

HELD_RUNS = 10  # task processes per worker, in each of ROUNDS rounds
ROUNDS = 3
COLD_RUNS = 7
FIRST_RUNS = 7
HELD_GOAL = 0.050  # seconds a held version may add to a task's start
GIT_GOAL = 1.2  # times `git clone --depth 1`
S3_GOAL = 1.0  # times our first sync
NAME = "dags-folder"

# The task's side, in a fresh process: prints its timings as JSON.
TASK = r"""
import json, os, sys, time
from pathlib import Path

import structlog
from airflow.dag_processing.bundles.base import BundleVersionLock
from airflow.dag_processing.bundles.manager import DagBundlesManager
from airflow.sdk.execution_time.task_runner import _verify_bundle_access

version = sys.argv[1] or None
started = time.perf_counter()
bundle = DagBundlesManager().get_bundle(name=sys.argv[2], version=version)
bundle.initialize()
_verify_bundle_access(bundle, structlog.get_logger())
prepared = time.perf_counter()
with BundleVersionLock(bundle_name=bundle.name, bundle_version=bundle.version):
    path = Path(bundle.path, sys.argv[3])
    path.read_bytes()
    done = time.perf_counter()
print(json.dumps({"prepare": prepared - started, "total": done - started,
                  "path": str(bundle.path)}))
"""

# A worker: Airflow loaded and the Celery worker's preload done (entrypoint.worker.preload,
# before its pool forks), then one forked process per task, as Airflow's task supervisor
# forks each task process. Prints the tasks' timings as JSON.
WORKER = r"""
import json, os, sys, time, traceback
from pathlib import Path

import structlog
from airflow.dag_processing.bundles.base import BundleVersionLock
from airflow.dag_processing.bundles.manager import DagBundlesManager
from airflow.sdk.execution_time.task_runner import _verify_bundle_access

from entrypoint.worker import preload

preload.install()
version, name, rel, runs = sys.argv[1] or None, sys.argv[2], sys.argv[3], int(sys.argv[4])
totals = []
for _ in range(runs):
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read)
            started = time.perf_counter()
            bundle = DagBundlesManager().get_bundle(name=name, version=version)
            bundle.initialize()
            _verify_bundle_access(bundle, structlog.get_logger())
            with BundleVersionLock(bundle_name=bundle.name, bundle_version=bundle.version):
                Path(bundle.path, rel).read_bytes()
                done = time.perf_counter()
            os.write(write, json.dumps({"total": done - started}).encode())
            os._exit(0)
        except BaseException:
            traceback.print_exc()
            os._exit(1)
    os.close(write)
    with os.fdopen(read) as pipe:
        data = pipe.read()
    _, status = os.waitpid(pid, 0)
    if status or not data:
        raise SystemExit(f"task process exited with status {status}")
    totals.append(json.loads(data)["total"])
print(json.dumps({"totals": totals}))
"""

# Our first sync in a fresh process, imports inside the measurement.
FIRST_SYNC = r"""
import json, os, time

started = time.perf_counter()
from entrypoint import config, dagsync

dagsync.sync_once(config.load(os.environ), os.environ, first=True, raw_env={})
print(json.dumps({"total": time.perf_counter() - started}))
"""


def child(script: str, env: dict[str, str], *args: str) -> dict:
    result = subprocess.run([sys.executable, "-c", script, *args], env=env,
                            capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise RuntimeError(f"{script.strip().splitlines()[0]}... exited {result.returncode}:\n"
                           f"{result.stderr[-3000:]}")
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def wall(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, env=env, check=True, capture_output=True, timeout=600)
    return time.perf_counter() - started


def median(values: list[float]) -> float:
    return statistics.median(values)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.1f} ms"


def verdict(met: bool) -> str:
    return "**met**" if met else "**missed**"


def airflow_env(base: dict[str, str], home: Path) -> dict[str, str]:
    home.mkdir(parents=True, exist_ok=True)
    return {**base, "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}


def versioned_env(env: dict[str, str], machine: Path) -> dict[str, str]:
    """A worker in versioned mode, its disk at machine: what the entrypoint sets."""
    from entrypoint import config, defaults

    env = {**env, "AIRFLOW_ECS_DAGS_VERSIONED": "true",
           "AIRFLOW_ECS_DAGS_STATE_DIR": str(machine / "state"),
           "AIRFLOW_ECS_DAGS_DIR": str(machine / "dags")}
    settings = config.load(env)
    return {**env, "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST":
            defaults.bundle_config(settings),
            "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_STORAGE_PATH": str(machine / "state" / "bundles"),
            "AIRFLOW__DAG_PROCESSOR__STALE_BUNDLE_CLEANUP_INTERVAL": "0"}


def plain_env(env: dict[str, str], dags: Path) -> dict[str, str]:
    """A worker in plain-folder mode: Airflow's default bundle on the synced folder."""
    return {**env, "AIRFLOW__CORE__DAGS_FOLDER": str(dags)}


def held(versioned: dict[str, str], plain: dict[str, str], version: str,
         expected: dict[str, bytes]) -> dict[str, list[float]]:
    """Task starts on a machine holding the version, against plain-folder mode: forked
    from a worker (the `worker` series) and in a fresh interpreter (`cold`)."""
    rel = relative_path(7)
    first = child(TASK, versioned, version, NAME, rel)
    check_tree("versioned bundle", Path(first["path"]), expected)
    check_tree("plain folder", Path(plain["AIRFLOW__CORE__DAGS_FOLDER"]), expected)
    found: dict[str, list[float]] = {"versioned": [], "plain": [], "versioned_cold": [],
                                     "plain_cold": []}
    sides = [("versioned", versioned, version), ("plain", plain, "")]
    for run in range(ROUNDS):
        for side, env, wanted in sides[::1 if run % 2 == 0 else -1]:
            found[side] += child(WORKER, env, wanted, NAME, rel, str(HELD_RUNS))["totals"]
    for run in range(COLD_RUNS):
        for side, env, wanted in sides[::1 if run % 2 == 0 else -1]:
            found[f"{side}_cold"].append(child(TASK, env, wanted, NAME, rel)["total"])
    return found


def bench_git(work: Path, base: dict[str, str]) -> dict[str, dict[str, list[float]]]:
    from entrypoint import config, dagsync

    with served_git(work, base) as repo:
        base, expected, url = repo.base, repo.expected, repo.url
        sha = git("rev-parse", "HEAD", cwd=repo.source, env=base)
        env = airflow_env({**base, "AIRFLOW_ECS_DAGS_SOURCE": "git",
                           "AIRFLOW_ECS_DAGS_GIT_URL": url}, work / "airflow-home")

        def measure(side: str, machine: Path, target: Path) -> float:
            if side == "ours":
                return float(child(WORKER, versioned_env(env, machine), sha, NAME,
                                   relative_path(7), "1")["totals"][0])
            return wall(["git", "clone", "-q", "--depth", "1", "--branch", "main", url,
                         str(target)], base)

        first: dict[str, list[float]] = {"ours": [], "clone": []}
        for run in range(FIRST_RUNS):
            machine = work / f"git-first-{run}"
            target = work / f"git-clone-{run}"
            for side in ("ours", "clone")[::1 if run % 2 == 0 else -1]:
                first[side].append(measure(side, machine, target))
            check_tree("git bundle, first version",
                       machine / "state" / "bundles" / NAME / "versions" / sha, expected)
            shutil.rmtree(target)
            if run:
                shutil.rmtree(machine)

        machine = work / "git-first-0"
        plain = work / "git-plain"
        plain_sync = {**env, "AIRFLOW_ECS_DAGS_DIR": str(plain / "dags"),
                      "AIRFLOW_ECS_DAGS_STATE_DIR": str(plain / "state")}
        dagsync.sync_once(config.load(plain_sync), plain_sync, first=True, raw_env={})
        found = held(versioned_env(env, machine), plain_env(env, plain / "dags"), sha,
                     expected)
        return {"first": first, "held": found}


def bench_s3(work: Path, base: dict[str, str]) -> dict[str, dict[str, list[float]]]:
    import boto3
    from botocore.config import Config

    from entrypoint import config, dagsync

    server = SeaweedFS()
    try:
        aws = {"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y",
               "AWS_CONFIG_FILE": str(work / "no-aws-config"),
               "AWS_SHARED_CREDENTIALS_FILE": str(work / "no-aws-credentials"),
               "AWS_EC2_METADATA_DISABLED": "true", "AWS_REGION": S3_REGION,
               "AWS_DEFAULT_REGION": S3_REGION, "AWS_ENDPOINT_URL": server.url}
        base = {k: v for k, v in base.items() if not k.startswith("AWS_")}
        s3 = boto3.client("s3", endpoint_url=server.url, region_name=S3_REGION,
                          aws_access_key_id="x", aws_secret_access_key="y",
                          config=Config(retries={"max_attempts": 10, "mode": "standard"}))
        create_bucket(s3)
        expected = {relative_path(i): dag_source(i, sizes=S3_SIZES) for i in range(FILES)}
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda item: s3.put_object(Bucket=BUCKET, Key=PREFIX + item[0],
                                                     Body=item[1]), expected.items()))
        env = airflow_env({**base, **aws, "AIRFLOW_ECS_DAGS_SOURCE": "s3",
                           "AIRFLOW_ECS_DAGS_S3_URI": f"s3://{BUCKET}/{PREFIX}"},
                          work / "airflow-home")
        plain = work / "s3-plain"
        plain_sync = {**env, "AIRFLOW_ECS_DAGS_DIR": str(plain / "dags"),
                      "AIRFLOW_ECS_DAGS_STATE_DIR": str(plain / "state")}
        with mock.patch.dict(os.environ, aws):  # the in-process sync reads its credentials there
            version = dagsync.sync_once(config.load(plain_sync), plain_sync, first=True,
                                        raw_env={}).revision

        def measure(side: str, machine: Path, synced: Path) -> float:
            if side == "ours":
                return float(child(WORKER, versioned_env(env, machine), version, NAME,
                                   relative_path(7), "1")["totals"][0])
            return float(child(FIRST_SYNC, {**env, "AIRFLOW_ECS_DAGS_DIR": str(synced / "dags"),
                                            "AIRFLOW_ECS_DAGS_STATE_DIR": str(synced / "state")}
                               )["total"])

        first: dict[str, list[float]] = {"ours": [], "sync": []}
        for run in range(FIRST_RUNS):
            machine = work / f"s3-first-{run}"
            synced = work / f"s3-sync-{run}"
            for side in ("ours", "sync")[::1 if run % 2 == 0 else -1]:
                first[side].append(measure(side, machine, synced))
            check_tree("S3 bundle, first version",
                       machine / "state" / "bundles" / NAME / "versions" / version, expected)
            check_tree("S3 first sync", synced / "dags", expected)
            shutil.rmtree(synced)
            if run:
                shutil.rmtree(machine)
        found = held(versioned_env(env, work / "s3-first-0"), plain_env(env, plain / "dags"),
                     version, expected)
        return {"first": first, "held": found}
    finally:
        server.stop()


def run() -> str:
    from bench.dagsync import scratch_root

    work = Path(tempfile.mkdtemp(prefix="bench-versions-", dir=scratch_root()))
    base = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    try:
        gits = bench_git(work, base)
        s3 = bench_s3(work, base)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    lines = ["## Versioned DAG bundles at a task's start", "",
             f"{FILES:,} DAG files; each figure a median; the time Airflow's task runner spends "
             "getting, initialising and checking the bundle, then reading the task's DAG file "
             "under its `BundleVersionLock`.", "",
             "### A worker that already holds the run's version", "",
             f"Task processes forked from a worker ({ROUNDS} x {HELD_RUNS} each; the worker has "
             "loaded Airflow and done its preload, which imports the configured bundle "
             "class, as the Celery worker does before its pool forks), and, for comparison, "
             f"task starts in a fresh interpreter that imports the bundle itself ({COLD_RUNS} "
             "each).", "",
             "| source | task process | versioned bundle | plain folder (Airflow's "
             f"LocalDagBundle) | added | goal (< {HELD_GOAL * 1000:.0f} ms) |",
             "|---|---|---|---|---|---|"]
    for label, result in (("git", gits), ("S3", s3)):
        for kind, suffix in (("forked from the worker", ""), ("fresh interpreter", "_cold")):
            ours = median(result["held"][f"versioned{suffix}"])
            plain = median(result["held"][f"plain{suffix}"])
            lines.append(f"| {label} | {kind} | {ms(ours)} | {ms(plain)} | {ms(ours - plain)} "
                         f"| {verdict(ours - plain < HELD_GOAL)} |")
    git_ours, clone = median(gits["first"]["ours"]), median(gits["first"]["clone"])
    s3_ours, sync = median(s3["first"]["ours"]), median(s3["first"]["sync"])
    lines += ["", f"### A version not yet on the worker (empty machine): {FIRST_RUNS} runs each",
              "", "The task is forked from a worker, as above; the baseline runs on its own.",
              "", "| source | versioned bundle | baseline | ratio | goal |",
              "|---|---|---|---|---|",
              f"| git (`git daemon` on 127.0.0.1) | {ms(git_ours)} | `git clone --depth 1`: "
              f"{ms(clone)} | {git_ours / clone:.2f}x | <= {GIT_GOAL}x: "
              f"{verdict(git_ours / clone <= GIT_GOAL)} |",
              f"| S3 (SeaweedFS on 127.0.0.1) | {ms(s3_ours)} | our first sync, fresh process: "
              f"{ms(sync)} | {s3_ours / sync:.2f}x | <= {S3_GOAL}x: "
              f"{verdict(s3_ours / sync <= S3_GOAL)} |"]
    return "\n".join(lines) + "\n"
