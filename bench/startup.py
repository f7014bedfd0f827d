"""The entrypoint's own start-up cost before it execs the role.

Measured as the wall and CPU time of `airflow-ecs exec -- /bin/true` against
`/bin/true` alone (the plain alternative: no entrypoint) and against an empty
Python start, in one run:
- nothing to resolve (no SSM path, no references, no Redis or DB to wait for);
- 50 parameters under an SSM path on a local moto server.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from tests.support.servers import start_moto

BIN = str(Path(sys.executable).parent / "airflow-ecs")
RUNS = 15


def measure(argv: list[str], env: dict[str, str], runs: int = RUNS) -> tuple[float, float]:
    """Median wall and CPU (user+sys of the child) seconds over runs."""
    walls, cpus = [], []
    for _ in range(runs):
        started = time.perf_counter()
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        walls.append(time.perf_counter() - started)
        cpus.append(usage.ru_utime + usage.ru_stime)
        if os.waitstatus_to_exitcode(status) != 0:
            raise RuntimeError(f"{argv} exited {os.waitstatus_to_exitcode(status)}")
        proc.returncode = 0
    return statistics.median(walls), statistics.median(cpus)


FLOOR = ("import os, botocore.session as b; c = b.get_session().create_client('ssm', "
         "region_name='eu-west-1', endpoint_url=os.environ['AWS_ENDPOINT_URL']); "
         "p = c.get_paginator('get_parameters_by_path'); "
         "[0 for _ in p.paginate(Path='/bench/', Recursive=True, WithDecryption=True)]")


def run() -> str:
    import boto3

    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "AWS_ENDPOINT"))}
    true = measure(["/bin/true"], clean)
    python = measure([sys.executable, "-c", "pass"], clean)
    nothing = measure([BIN, "exec", "--", "/bin/true"], clean)

    moto = start_moto()
    try:
        ssm = boto3.client("ssm", endpoint_url=moto.url, region_name="eu-west-1",
                           aws_access_key_id="x", aws_secret_access_key="y")
        for i in range(50):
            ssm.put_parameter(Name=f"/bench/AIRFLOW_VAR_P{i:02d}", Value=f"value-{i}",
                              Type="SecureString")
        env = {**clean, "AIRFLOW_ECS_SSM_PATH": "/bench/", "AWS_ENDPOINT_URL": moto.url,
               "AWS_REGION": "eu-west-1", "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y"}
        ssm_run = measure([BIN, "exec", "--", "/bin/true"], env, runs=10)
        # The floor under any Python client: botocore's import, one SSM client and the
        # same five GetParametersByPath pages, nothing of ours.
        floor = measure([sys.executable, "-c", FLOOR], env, runs=10)
    finally:
        moto.stop()

    def row(name, result, base=true):
        wall, cpu = result
        return (f"| {name} | {wall * 1000:.0f} ms | {cpu * 1000:.0f} ms | "
                f"{(wall - base[0]) * 1000:.0f} ms |")

    return "\n".join([
        "## Entrypoint start-up overhead",
        "",
        f"Median of {RUNS} runs (10 with SSM). Overhead = wall time minus `/bin/true` alone.",
        "",
        "| command | wall | CPU | overhead |",
        "| --- | --- | --- | --- |",
        row("`/bin/true` (no entrypoint)", true),
        row("`python -c pass` (an empty Python start)", python),
        row("`airflow-ecs exec -- /bin/true`, nothing to resolve", nothing),
        row("`airflow-ecs exec -- /bin/true`, 50 SSM parameters (local moto)", ssm_run),
        row("botocore alone: import, one SSM client, the same 5 pages (no entrypoint)", floor),
        "",
        f"Goals: under 100 ms with nothing to resolve (measured "
        f"{(nothing[0] - true[0]) * 1000:.0f} ms, of which an empty Python start is "
        f"{(python[0] - true[0]) * 1000:.0f} ms); under 500 ms with 50 SSM parameters "
        f"(measured {(ssm_run[0] - true[0]) * 1000:.0f} ms; botocore alone, fetching the "
        f"same pages, takes {(floor[0] - true[0]) * 1000:.0f} ms: ours adds "
        f"{(ssm_run[0] - floor[0]) * 1000:.0f} ms, a ratio of {ssm_run[0] / floor[0]:.2f}).",
    ])


if __name__ == "__main__":
    print(run())
