"""Container health-check timings, derived from how long the entrypoint may take to start.

A starting task first syncs its DAGs (git or S3 sources, bounded by
AIRFLOW_ECS_DAGS_SYNC_TIMEOUT), then waits for its dependencies (bounded by
AIRFLOW_ECS_WAIT_TIMEOUT), and only then starts Airflow. If a dependency never
comes, the entrypoint exits at that deadline with a message that names it. ECS
must not kill the task before: its health check may count failures only once
the whole start-up allowance has passed.

ECS marks a container unhealthy after `startPeriod` (failures ignored) and then
`retries` failed checks `interval` apart, so a check gives up no earlier than
startPeriod + retries * interval. The timings below make that cover the
allowance, within ECS's limits.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, cast

from entrypoint import config
from entrypoint.probe import health

# ECS's limits on a container health check, in seconds (retries: a count).
LIMITS = {"interval": (5, 300), "timeout": (2, 120), "retries": (1, 10),
          "startPeriod": (0, 300)}
INTERVAL = 30
RETRIES = 3
# Seconds for what follows the waits: secrets, the role's own initialisation, and
# Airflow's start until its first heartbeat.
START_MARGIN = 60
# The `health` command answers within its budget; ECS's timeout must exceed it, with
# room for the interpreter's start.
TIMEOUT = math.ceil(health.BUDGET) + 5
SYNCING_SOURCES = ("git", "s3")


def _default(name: str) -> int:
    return int(next(s.default for s in config.SETTINGS if s.name == name))


def start_allowance(env: Mapping[str, str]) -> int:
    """Seconds a container with this environment may take to start before it must be
    healthy: the first DAG sync (if it syncs), the dependency waits and the margin."""
    wait = math.ceil(float(env.get("AIRFLOW_ECS_WAIT_TIMEOUT")
                           or _default("AIRFLOW_ECS_WAIT_TIMEOUT")))
    sync = 0
    if env.get("AIRFLOW_ECS_DAGS_SOURCE") in SYNCING_SOURCES:
        sync = int(env.get("AIRFLOW_ECS_DAGS_SYNC_TIMEOUT")
                   or _default("AIRFLOW_ECS_DAGS_SYNC_TIMEOUT"))
    return sync + wait + START_MARGIN


def longest_allowance() -> int:
    """The longest start-up allowance ECS's limits can cover."""
    return LIMITS["startPeriod"][1] + LIMITS["retries"][1] * LIMITS["interval"][1]


def timings(allowance: int) -> dict[str, int]:
    """interval, timeout, retries and startPeriod covering `allowance` seconds.

    startPeriod covers it alone up to ECS's limit on it. Past that limit, the failed
    checks after the start period cover the rest: more retries at the usual interval,
    then (at the retries' limit) a longer interval. A check in a running task then
    also takes that long to declare it unhealthy.
    """
    if allowance > longest_allowance():
        raise ValueError(f"a start-up allowance of {allowance} s is beyond what ECS's "
                         f"health check can wait ({longest_allowance()} s)")
    start_period = min(allowance, LIMITS["startPeriod"][1])
    rest = allowance - start_period
    retries, interval = max(RETRIES, math.ceil(rest / INTERVAL)), INTERVAL
    if retries > LIMITS["retries"][1]:
        retries = LIMITS["retries"][1]
        interval = math.ceil(rest / retries)
    return {"interval": interval, "timeout": TIMEOUT, "retries": retries,
            "startPeriod": start_period}


def gives_up_after(check: Mapping[str, Any]) -> int:
    """The earliest second after start at which ECS can mark the container unhealthy
    (ECS's defaults for the keys left out)."""
    return cast(int, check.get("startPeriod", 0)
                + check.get("retries", 3) * check.get("interval", 30))


def container_env(container: Mapping[str, Any]) -> dict[str, str]:
    # ECS environment entries are {"name": str, "value": str}.
    return cast("dict[str, str]", {e.get("name"): e.get("value")
                                   for e in container.get("environment", [])
                                   if isinstance(e, dict)})


def fill_timings(doc: Any) -> None:
    """Give every container health check that leaves its timings out the derived ones."""
    for c in doc.get("containerDefinitions", []) if isinstance(doc, dict) else []:
        check = c.get("healthCheck") if isinstance(c, dict) else None
        if not isinstance(check, dict) or any(k in check for k in LIMITS):
            continue
        try:
            derived = timings(start_allowance(container_env(c)))
        except ValueError:
            continue  # validation reports the check that can't cover the allowance
        c["healthCheck"] = {"command": check.get("command"), **derived,
                            **{k: v for k, v in check.items() if k != "command"}}
