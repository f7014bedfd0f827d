"""The environment the running role was started with, for probes started beside it.

`airflow-ecs health` runs as a new process (Docker HEALTHCHECK, the ECS
container health check) that gets only the task definition's environment,
not the values the entrypoint resolved from SSM and Secrets Manager at start.
The role's processes were started with those values, marked with MARKER, so
the probe reads them from /proc/PID/environ, which the kernel shows only to
the same user (and root). The alternatives are worse: resolving again would
call SSM on every probe of every task every 30 s (API cost, throttling), and
a file would put the secrets on disk.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

# Set by the entrypoint on the role's processes; config.py knows it as ROLE_ENV_MARKER.
# Defined here so a probe doesn't import the configuration module.
MARKER = "AIRFLOW_ECS_ROLE_ENV"
# setproctitle (Celery's worker and Airflow's commands name their processes with it)
# writes a long title over the process's environment block, which is what
# /proc/PID/environ shows: a worker exec'd alone (no DAG-sync loop beside it, as with
# versioned DAGs or the image's DAGs) would leave no marked environment to read, and
# its health check would fail. With this variable set it keeps the title within argv.
SETPROCTITLE_KEEP_ENV = "SPT_NOENV"


def scratch_dir(env: Mapping[str, str]) -> str:
    """The role's scratch folder, which its probes share: /tmp is a writable scratch volume
    in every task definition (the root filesystem is read-only). TMPDIR as
    tempfile.gettempdir() reads it, without the import and the test file it writes in
    each candidate directory: a few milliseconds of every start-up and probe."""
    return os.path.join(env.get("TMPDIR") or "/tmp", "airflow-ecs")  # noqa: S108


def mark(env: Mapping[str, str]) -> dict[str, str]:
    """The role's environment, marked so that probes can find it, and kept readable
    under /proc by processes that set their title."""
    return {**env, MARKER: "1", SETPROCTITLE_KEEP_ENV: "1"}


def running_env(own: Mapping[str, str], proc: Path = Path("/proc")) -> dict[str, str]:
    """`own` overlaid with the environment of the oldest marked process of this user.

    Only this user's processes count: in a container that is the role, and a
    host's /proc, where every container's processes show, can't mislead it.

    `own` is returned as it is when it is itself marked, or when no marked
    process can be read (a probe run outside a started container).
    """
    if own.get(MARKER) == "1":
        return dict(own)
    try:
        pids = sorted(int(entry.name) for entry in proc.iterdir() if entry.name.isdigit())
    except OSError:
        return dict(own)
    me, uid = os.getpid(), os.getuid()
    for pid in pids:
        if pid == me:
            continue
        try:
            if (proc / str(pid)).stat().st_uid != uid:
                continue
            raw = (proc / str(pid) / "environ").read_bytes()
        except OSError:  # gone, or another user's process
            continue
        env = _parse(raw)
        if env.get(MARKER) == "1":
            return {**own, **env}
    return dict(own)


def _parse(raw: bytes) -> dict[str, str]:
    env = {}
    for item in raw.split(b"\0"):
        name, sep, value = item.partition(b"=")
        if sep and name:
            env[name.decode(errors="replace")] = value.decode(errors="surrogateescape")
    return env
