"""`airflow-ecs health ROLE`: the probe of Docker HEALTHCHECK and ECS, run every 30 s.

It must be cheap on a small Fargate task, so it never imports Airflow (2 s
of CPU per call) nor boto3, and every probe is bounded by short timeouts.

- scheduler, dag-processor, triggerer: the role's job on this host has a
  fresh heartbeat in the metadata database (Airflow's own thresholds, judged
  by the database's clock so container clocks don't matter);
- webserver: the api-server's health endpoint answers on 127.0.0.1;
- worker: a Celery ping addressed to this worker only answers. The ping is
  handled by the worker's consumer, not by a pool slot, so a worker whose
  every slot is busy stays healthy;
- flower: its HTTP endpoint answers.

With DAGs synced from git or S3, the result also says how fresh the DAGs
are; no successful sync at all is unhealthy, staleness alone is reported
but stays healthy (a git outage must not make ECS kill every container).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Mapping
from typing import NamedTuple

from entrypoint.errors import ConfigError
from entrypoint.log import mask_url, redact

TIMEOUT = 5.0

# Job types in Airflow's `job` table, and the [section] option of each threshold.
JOBS = {
    "scheduler": ("SchedulerJob", "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_THRESHOLD"),
    "triggerer": ("TriggererJob", "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD"),
    "dag-processor": ("DagProcessorJob", "AIRFLOW__DAG_PROCESSOR__HEALTH_CHECK_THRESHOLD"),
}
DEFAULT_THRESHOLD = 30.0


class HealthResult(NamedTuple):
    healthy: bool
    reason: str


def hostname() -> str:
    """This host's name as Airflow records it (airflow.utils.net.getfqdn, its default)."""
    name = socket.gethostname()
    try:
        addrs = socket.getaddrinfo(name, None, 0, socket.SOCK_DGRAM, 0, socket.AI_CANONNAME)
    except OSError:
        return name
    for addr in addrs:
        if addr[3]:
            return addr[3]
    return name


def probe(role: str, env: Mapping[str, str]) -> HealthResult:
    results = [_probe_one(member, env) for member in role.split("+")]
    dags = _dag_sync(env)
    if dags is not None:
        results.append(dags)
    healthy = all(r.healthy for r in results)
    return HealthResult(healthy, "; ".join(r.reason for r in results))


def _probe_one(role: str, env: Mapping[str, str]) -> HealthResult:
    try:
        if role in JOBS:
            return job_heartbeat(role, env)
        if role == "webserver":
            port = env.get("AIRFLOW_ECS_API_PORT", "8080")
            return http_ok("webserver", f"http://127.0.0.1:{port}/api/v2/monitor/health")
        if role == "flower":
            port = env.get("AIRFLOW__CELERY__FLOWER_PORT", "5555")
            return http_ok("flower", f"http://127.0.0.1:{port}/healthcheck")
        if role == "worker":
            return celery_ping(env)
        return HealthResult(False, f"{role}: no health probe for this role")
    except ConfigError as exc:
        return HealthResult(False, f"{role}: {exc.problems[0]}")
    except Exception as exc:  # noqa: BLE001 - a probe reports, it never crashes
        return HealthResult(False, f"{role}: {type(exc).__name__}: {redact(str(exc))[:200]}")


_HEARTBEAT_AGE = (
    "SELECT EXTRACT(EPOCH FROM (CURRENT_TIMESTAMP - latest_heartbeat)) FROM job "
    "WHERE job_type = %(job_type)s AND hostname = %(host)s AND state = 'running' "
    "ORDER BY latest_heartbeat DESC LIMIT 1")


def _heartbeat_age(url: str, job_type: str, host: str) -> float | None:
    """Seconds since the freshest heartbeat, by the database's clock; None if no such job.

    PostgreSQL is queried with psycopg2 directly: importing SQLAlchemy alone costs
    about 0.2 s of CPU, on every probe of every task, every 30 s.
    """
    from entrypoint.urls import parse

    endpoint = parse(url)
    if endpoint.scheme not in ("postgresql", "postgres"):
        raise ConfigError("the health probe reads job heartbeats from PostgreSQL; "
                          f"{endpoint.scheme} is not supported")
    import psycopg2

    connection = psycopg2.connect(host=endpoint.host, port=endpoint.port,
                                  user=endpoint.username, password=endpoint.password,
                                  dbname=endpoint.path.lstrip("/") or None,
                                  connect_timeout=int(TIMEOUT),
                                  application_name="airflow-ecs-health")
    try:
        with connection.cursor() as cursor:
            cursor.execute(_HEARTBEAT_AGE, {"job_type": job_type, "host": host})
            row = cursor.fetchone()
    finally:
        connection.close()
    return None if row is None else float(row[0])


def job_heartbeat(role: str, env: Mapping[str, str]) -> HealthResult:
    job_type, threshold_var = JOBS[role]
    url = env.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "")
    if not url:
        raise ConfigError("required setting: AIRFLOW__DATABASE__SQL_ALCHEMY_CONN")
    try:
        threshold = float(env.get(threshold_var) or DEFAULT_THRESHOLD)
    except ValueError:
        threshold = DEFAULT_THRESHOLD
    host = hostname()
    age = _heartbeat_age(url, job_type, host)
    if age is None:
        return HealthResult(False, f"{role}: no running {job_type} on {host}")
    if age > threshold:
        return HealthResult(False, f"{role}: last heartbeat {age:.0f}s ago (threshold "
                                   f"{threshold:g}s)")
    return HealthResult(True, f"{role}: heartbeat {age:.0f}s ago")


def http_ok(role: str, url: str) -> HealthResult:
    # Imported here: urllib.request (http.client, email) is a fifth of a worker probe.
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as response:  # noqa: S310 - fixed http URL
            code = response.status
    except urllib.error.HTTPError as exc:
        code = exc.code
    except OSError as exc:
        return HealthResult(False, f"{role}: {url} does not answer: "
                                   f"{getattr(exc, 'reason', exc)}")
    if code >= 400:
        return HealthResult(False, f"{role}: {url} answered HTTP {code}")
    return HealthResult(True, f"{role}: {url} answered HTTP {code}")


def worker_name() -> str:
    # Celery's default node name, which `airflow celery worker` keeps.
    return f"celery@{socket.gethostname()}"


def celery_ping(env: Mapping[str, str]) -> HealthResult:
    """Ping this worker only, through the broker, as `celery inspect ping -d` does.

    Celery's control API is a thin layer over kombu's pidbox mailbox (namespace
    "celery", fanout, JSON), so the probe talks to the mailbox through kombu
    directly: the same messages on the wire, without importing Celery's app
    machinery (a third of the probe's CPU)."""
    from entrypoint.optional_imports import absent, kombu_without_plugins

    broker = env.get("AIRFLOW__CELERY__BROKER_URL", "")
    if not broker:
        raise ConfigError("required setting: AIRFLOW__CELERY__BROKER_URL")
    name = worker_name()
    options = {"socket_timeout": TIMEOUT, "socket_connect_timeout": TIMEOUT, "max_retries": 1}
    # redis-py imports the OpenTelemetry SDK whenever it is installed (Airflow
    # installs it) to offer metrics this short-lived process never records; that
    # import was a quarter of the probe's CPU. kombu registers a YAML serializer
    # when PyYAML is installed, and looks for plugins; a JSON ping needs neither.
    # kombu loads redis-py when the connection is made, so the whole ping runs
    # inside the block.
    with absent("opentelemetry.sdk.metrics", "opentelemetry.metrics", "yaml", "msgpack"), \
            kombu_without_plugins():
        from kombu import Connection
        from kombu.pidbox import Mailbox

        started = time.monotonic()
        with Connection(broker, connect_timeout=TIMEOUT, transport_options=options) as conn:
            mailbox = Mailbox("celery", type="fanout", accept=["json"])(conn)
            # What Celery's app.control.ping(destination=[name]) sends and collects.
            replies = mailbox._broadcast("ping", destination=[name], reply=True,
                                         timeout=TIMEOUT) or []
    for reply in replies:
        if name in reply:
            return HealthResult(True, f"worker: {name} answered a ping in "
                                      f"{time.monotonic() - started:.2f}s")
    return HealthResult(False, f"worker: {name} did not answer a ping through "
                               f"{mask_url(broker)} within {TIMEOUT:g}s")


def _dag_sync(env: Mapping[str, str]) -> HealthResult | None:
    if env.get("AIRFLOW_ECS_DAGS_SOURCE", "image").strip() in ("", "image"):
        return None  # DAGs baked into the image: nothing to report, nothing to import
    from entrypoint import config
    from entrypoint.dagsync import publish

    try:
        settings = config.load(env)
    except ConfigError as exc:
        return HealthResult(False, f"configuration: {exc.problems[0]}")
    if settings.dags_source == "image":
        return None
    status = publish.read_status(settings)
    if status is None or not status.last_success:
        return HealthResult(False, "DAGs not synced yet")
    age = time.time() - status.last_success
    revision = (status.revision or "?")[:12]
    if status.consecutive_failures:
        return HealthResult(True, f"dags stale: last good sync {age:.0f}s ago at {revision} "
                                  f"({status.consecutive_failures} failures: "
                                  f"{(status.last_error or '')[:120]})")
    return HealthResult(True, f"dags {revision} synced {age:.0f}s ago")
