"""What the runtime's deferred and avoided imports would cost.

Several modules import a library inside the one function that needs it, or not
at all, because a short-lived process (the health probe every 30 s, every
container's start) would otherwise pay for it on every run. Each row is the CPU
(user + system) of `python -c "<statement>"` minus that of `python -c "pass"`,
the plain alternative, medians of RUNS fresh processes in one run; the ratio
column compares it with the interpreter's own start.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys

RUNS = 9

# (statement, who avoids or defers it and why it matters there)
ROWS: list[tuple[str, str]] = [
    ("import airflow.models", "the probe and the schema check never import Airflow"),
    ("import sqlalchemy", "the probe's heartbeat query uses psycopg2 directly"),
    ("import boto3", "secrets use botocore (boto3 pulls in s3transfer)"),
    ("import botocore.session", "secrets, created only when something must be resolved"),
    ("import git", "the git DAG sync runs the git command line (GitPython unused)"),
    ("import tenacity", "the S3 fetch imports it only when a request is retried"),
    ("import hashlib", "key fingerprints import it only when keys are checked"),
    ("import tempfile", "defaults import it only to write the admin password file"),
    ("import entrypoint.cli as c; c.build_parser()",
     "`health ROLE` is parsed without building the CLI's parser "
     "(against `import entrypoint.cli` alone)"),
    ("import ssl; ssl.create_default_context()",
     "the S3 fetch reuses the context botocore built"),
    ("import kombu.serialization, kombu.matcher",
     "the worker probe imports kombu without its plugin search"),
    ("import redis", "the probe's Redis ping (the probe's largest import)"),
]


def _cpu(statement: str) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    samples = []
    for _ in range(RUNS):
        proc = subprocess.Popen([sys.executable, "-c", statement], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(proc.pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise RuntimeError(f"{statement!r} exited {os.waitstatus_to_exitcode(status)}")
        samples.append(usage.ru_utime + usage.ru_stime)
    return statistics.median(samples)


def run() -> str:
    base = _cpu("pass")
    lines = [
        "## Import costs the runtime defers or avoids",
        "",
        f"CPU of `python -c STATEMENT` minus `python -c pass` ({base * 1000:.0f} ms), "
        f"medians of {RUNS} processes. Code comments that defer an import point here.",
        "",
        "| statement | CPU | vs interpreter start | where it is deferred or avoided |",
        "|---|---:|---:|---|",
    ]
    for statement, why in ROWS:
        # The parser row's plain alternative is importing the module without building it.
        floor = _cpu(statement.split(";")[0]) if statement.startswith("import entrypoint") else base
        cost = max(_cpu(statement) - floor, 0.0)
        lines.append(f"| `{statement}` | {cost * 1000:.0f} ms | {cost / base:.1f}x | {why} |")
    return "\n".join(lines) + "\n"
