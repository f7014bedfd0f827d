"""The entrypoint's own start-up cost before it execs the role.

Measured as the wall and CPU time of `airflow-ecs exec -- /bin/true` against
`/bin/true` alone (the plain alternative: no entrypoint) and against an empty
Python start, in one run:
- nothing to resolve (no SSM path, no references, no Redis or DB to wait for);
- 50 parameters under an SSM path on a local moto server.

Where it counts is inside the image, with the image's interpreter: that is what every
container start pays, and the goals are judged there. The same rows with the
development venv's interpreter follow, measured in the same run, for comparison (its
CPython may be built differently: the empty start is the yardstick).

`python bench/startup.py --inside` is the measuring half alone: the bench runs it in a
container of the base image (host network, the moto server on 127.0.0.1) and reads its
JSON. It needs the standard library only (and botocore, for the floor row).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

RUNS = 15
SSM_RUNS = 10
# Start times differ from one container to the next by more than the rows differ (an empty
# Python start measured 16 to 25 ms in different containers of the same image): each row
# is the median over several containers of each one's median.
CONTAINERS = 3
SSM_PATH = "/bench/"
REGION = "eu-west-1"
# The floor under any Python client: botocore's import, one SSM client and the same
# five GetParametersByPath pages, nothing of ours.
FLOOR = ("import os, botocore.session as b; c = b.get_session().create_client('ssm', "
         f"region_name='{REGION}', endpoint_url=os.environ['AWS_ENDPOINT_URL']); "
         "p = c.get_paginator('get_parameters_by_path'); "
         f"[0 for _ in p.paginate(Path='{SSM_PATH}', Recursive=True, WithDecryption=True)]")
ROWS = (
    ("true", "`/bin/true` (no entrypoint)"),
    ("python", "`python -c pass` (an empty Python start)"),
    ("nothing", "`airflow-ecs exec -- /bin/true`, nothing to resolve"),
    ("ssm", "`airflow-ecs exec -- /bin/true`, 50 SSM parameters (local moto)"),
    ("floor", "botocore alone: import, one SSM client, the same 5 pages (no entrypoint)"),
)


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
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            raise RuntimeError(f"{argv} exited {proc.returncode}")
    return statistics.median(walls), statistics.median(cpus)


def measure_all(moto_url: str) -> dict:
    """Every row, with this process's interpreter and the airflow-ecs beside it."""
    binary = str(Path(sys.executable).parent / "airflow-ecs")
    if not os.path.exists(binary):
        binary = shutil.which("airflow-ecs") or binary
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("AIRFLOW", "AWS_ENDPOINT"))}
    ssm = {**clean, "AIRFLOW_ECS_SSM_PATH": SSM_PATH, "AWS_ENDPOINT_URL": moto_url,
           "AWS_REGION": REGION, "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y"}
    return {
        "python_version": sys.version.split()[0],
        "true": measure(["/bin/true"], clean),
        "python": measure([sys.executable, "-c", "pass"], clean),
        "nothing": measure([binary, "exec", "--", "/bin/true"], clean),
        "ssm": measure([binary, "exec", "--", "/bin/true"], ssm, SSM_RUNS),
        "floor": measure([sys.executable, "-c", FLOOR], ssm, SSM_RUNS),
    }


def _in_image(moto_url: str) -> dict:
    from tests.support.images import image

    subprocess.run(["make", "-s", "build"], cwd=Path(__file__).resolve().parents[1],
                   check=True, capture_output=True)
    results = []
    for _ in range(CONTAINERS):
        done = subprocess.run(
            ["docker", "run", "--rm", "--network", "host", "--read-only", "--tmpfs", "/tmp",
             "-v", f"{Path(__file__).resolve()}:/bench/startup.py:ro",
             "--entrypoint", "python", image("base"), "/bench/startup.py", "--inside",
             moto_url],
            check=True, capture_output=True, text=True, timeout=600)
        results.append(json.loads(done.stdout))
    out = dict(results[0])
    for key, _ in ROWS:
        out[key] = [statistics.median(r[key][i] for r in results) for i in (0, 1)]
    return out


def _table(result: dict) -> list[str]:
    true = result["true"]
    lines = ["| command | wall | CPU | overhead |", "| --- | --- | --- | --- |"]
    for key, name in ROWS:
        wall, cpu = result[key]
        lines.append(f"| {name} | {wall * 1000:.0f} ms | {cpu * 1000:.0f} ms | "
                     f"{(wall - true[0]) * 1000:.0f} ms |")
    return lines


def _ms(result: dict, key: str, base: str = "true") -> float:
    return (result[key][0] - result[base][0]) * 1000


def run() -> str:
    import boto3

    from tests.support.servers import start_moto

    moto = start_moto()
    try:
        ssm = boto3.client("ssm", endpoint_url=moto.url, region_name=REGION,
                           aws_access_key_id="x", aws_secret_access_key="y")
        for i in range(50):
            ssm.put_parameter(Name=f"{SSM_PATH}AIRFLOW_VAR_P{i:02d}", Value=f"value-{i}",
                              Type="SecureString")
        inside = _in_image(moto.url)
        venv = measure_all(moto.url)
    finally:
        moto.stop()

    floor_ratio = inside["ssm"][0] / inside["floor"][0]
    return "\n".join([
        "## Entrypoint start-up overhead",
        "",
        f"Median of {RUNS} runs ({SSM_RUNS} with SSM). Overhead = wall time minus `/bin/true` "
        "alone.",
        "",
        f"Inside the base image (its CPython {inside['python_version']}, read-only root "
        "filesystem, host network to the moto server), where every container start pays it; "
        f"each figure the median of {CONTAINERS} containers' medians:",
        "",
        *_table(inside),
        "",
        f"Goals: under 100 ms with nothing to resolve (measured {_ms(inside, 'nothing'):.0f} "
        f"ms, of which an empty Python start is {_ms(inside, 'python'):.0f} ms); under 500 ms "
        f"with 50 SSM parameters (measured {_ms(inside, 'ssm'):.0f} ms; botocore alone, "
        f"fetching the same pages, takes {_ms(inside, 'floor'):.0f} ms: ours adds "
        f"{_ms(inside, 'ssm', 'floor'):.0f} ms, a ratio of {floor_ratio:.2f}).",
        "",
        f"The same rows in the development venv (CPython {venv['python_version']}), same run:",
        "",
        *_table(venv),
    ])


if __name__ == "__main__":
    if sys.argv[1:2] == ["--inside"]:
        print(json.dumps(measure_all(sys.argv[2])))
    else:
        print(run())
