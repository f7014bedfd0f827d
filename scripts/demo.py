"""Run example_fanout on the local stack through Airflow's REST API v2, and show which
worker ran each task.

Logs in with the admin user (POST /auth/token), unpauses the DAG, triggers a run,
polls it until it ends, then prints every task instance's state and the hostname
of the worker that ran it. Standard library only, so it runs with any python3.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

DAG_ID = "example_fanout"


class ApiError(RuntimeError):
    pass


class Client:
    def __init__(self, base_url: str):
        if urllib.parse.urlsplit(base_url).scheme not in ("http", "https"):
            raise ApiError(f"--url {base_url!r} must be an http:// or https:// URL")
        self.base_url = base_url.rstrip("/")
        self.token = ""

    def call(self, method: str, path: str, body: dict | None = None, timeout: float = 15,
             ok: tuple[int, ...] = (200, 201)) -> tuple[int, dict]:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(self.base_url + path, data=data,  # noqa: S310 - http(s) only
                                         method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
                raw = response.read()
                return response.status, (json.loads(raw) if raw else {})
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:300]
            if exc.code in ok:
                return exc.code, {}
            raise ApiError(f"{method} {path} answered HTTP {exc.code}: {detail}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise ApiError(f"{method} {self.base_url}{path} failed: {exc}; is the stack up "
                           "(make up)?") from None


def read_env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            values[key.strip()] = value
    return values


def wait_for(what: str, deadline: float, probe, interval: float = 2.0):
    """Call probe() until it returns something truthy or the deadline passes."""
    last_error = ""
    while time.monotonic() < deadline:
        try:
            result = probe()
            if result:
                return result
        except ApiError as exc:
            last_error = f" (last error: {exc})"
        time.sleep(interval)
    raise ApiError(f"timed out waiting for {what}{last_error}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8080", help="the webserver's URL")
    parser.add_argument("--secrets", type=Path, default=Path(".local/secrets.env"),
                        help="env file holding AIRFLOW_ECS_ADMIN_PASSWORD")
    parser.add_argument("--timeout", type=float, default=300, help="seconds to wait in all")
    args = parser.parse_args()

    if not args.secrets.is_file():
        print(f"demo: {args.secrets} is missing; start the stack with make up first",
              file=sys.stderr)
        return 1
    env = read_env_file(args.secrets)
    username = os.environ.get("AIRFLOW_ECS_ADMIN_USERNAME", env.get("AIRFLOW_ECS_ADMIN_USERNAME",
                                                                    "admin"))
    password = env.get("AIRFLOW_ECS_ADMIN_PASSWORD", "")
    if not password:
        print(f"demo: AIRFLOW_ECS_ADMIN_PASSWORD is not set in {args.secrets}", file=sys.stderr)
        return 1

    deadline = time.monotonic() + args.timeout
    try:
        api = Client(args.url)
        _, answer = api.call("POST", "/auth/token", {"username": username, "password": password})
        api.token = answer.get("access_token", "")
        if not api.token:
            raise ApiError("POST /auth/token returned no access_token")
        print(f"demo: logged in to {args.url} as {username}")

        # The DAG processor parses the image's DAG folder shortly after start.
        wait_for(f"the DAG {DAG_ID} to be parsed", deadline,
                 lambda: api.call("GET", f"/api/v2/dags/{DAG_ID}", ok=(200, 404))[0] == 200)
        api.call("PATCH", f"/api/v2/dags/{DAG_ID}", {"is_paused": False})
        _, run = api.call("POST", f"/api/v2/dags/{DAG_ID}/dagRuns", {"logical_date": None})
        run_id = run["dag_run_id"]
        quoted = urllib.parse.quote(run_id, safe="")
        print(f"demo: triggered {DAG_ID} run {run_id}")

        started = time.monotonic()
        seen = ""

        def finished():
            nonlocal seen
            _, state = api.call("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{quoted}")
            _, tis = api.call("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{quoted}/taskInstances"
                                     "?limit=100")
            counts = collections.Counter(ti.get("state") or "none"
                                         for ti in tis["task_instances"])
            line = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
            if line != seen:
                print(f"  {time.monotonic() - started:5.1f} s  {state['state']}: {line}")
                seen = line
            return state if state["state"] in ("success", "failed") else None

        final = wait_for(f"run {run_id} to finish", deadline, finished, interval=1.0)
        _, tis = api.call("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{quoted}/taskInstances"
                                 "?limit=100")
    except ApiError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1

    rows = sorted(tis["task_instances"], key=lambda ti: (ti["task_id"], ti.get("map_index", -1)))
    print(f"\n  {'task':<12} {'map':>4}  {'state':<10} {'worker':<20} duration")
    for ti in rows:
        index = ti.get("map_index", -1)
        duration = ti.get("duration")
        print(f"  {ti['task_id']:<12} {index if index >= 0 else '':>4}  "
              f"{ti.get('state') or '':<10} {ti.get('hostname') or '':<20} "
              f"{f'{duration:.1f} s' if duration else ''}")
    hosts = collections.Counter(ti.get("hostname") or "?" for ti in rows)
    print(f"\ndemo: run {final['state']} in {time.monotonic() - started:.1f} s; tasks per worker: "
          + ", ".join(f"{host} {n}" for host, n in sorted(hosts.items())))
    return 0 if final["state"] == "success" else 1


if __name__ == "__main__":
    sys.exit(main())
