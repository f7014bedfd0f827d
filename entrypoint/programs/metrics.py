"""The `metrics` role: the Celery backlog, read from Redis, published to CloudWatch.

CPU is a poor scaling signal for Airflow workers whose tasks wait on I/O.
Every period this role reads, straight from Redis and without importing
Airflow or Celery, how many messages wait in each Celery queue and how many
are reserved or running on workers (kombu's `unacked` hash: with
`task_acks_late` a message stays there until its task ends), and publishes
them with one PutMetricData call, together with the backlog per running
worker that a target-tracking policy scales the worker service on.

Redis layout (kombu's Redis transport): a queue is a list named after it,
plus one list per priority step (`<queue>\\x06\\x16<n>`); bindings are sets
named `_kombu.binding.<exchange>` whose members end in the queue name.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from entrypoint.airflow_names import BROKER_URL, DEFAULT_QUEUE
from entrypoint.log import log, mask_url

if TYPE_CHECKING:
    import redis

    from entrypoint.config import Settings

SEP = "\x06\x16"
PRIORITY_STEPS = (3, 6, 9)
UNACKED = "unacked"
BINDING_PREFIX = "_kombu.binding."
# Exchanges Celery's own machinery binds: their queues are not task queues.
INTERNAL_EXCHANGES = ("celery.pidbox", "celeryev", "reply.celery.pidbox")


# Airflow's own default of [operators] default_queue.
AIRFLOW_DEFAULT_QUEUE = "default"


@dataclass(frozen=True)
class MetricsSettings:
    """What the metrics role runs with: from config.Settings and the resolved environment
    (settings_from), which hold every default."""

    broker_url: str
    namespace: str
    interval: float
    cluster: str
    worker_service: str
    queues: tuple[str, ...]
    default_queue: str


@dataclass
class Sample:
    queued: dict[str, int] = field(default_factory=dict)
    running: dict[str, int] = field(default_factory=dict)
    workers: int | None = None

    @property
    def backlog(self) -> int:
        return sum(self.queued.values()) + sum(self.running.values())

    @property
    def backlog_per_worker(self) -> float:
        # With no worker running the whole backlog counts, so scaling from zero works.
        return self.backlog / max(self.workers or 0, 1)


def settings_from(settings: Settings, env: Mapping[str, str]) -> MetricsSettings:
    """The metrics role's view of the validated settings and the resolved environment."""
    return MetricsSettings(
        broker_url=env.get(BROKER_URL, ""),
        namespace=settings.metrics_namespace,
        interval=settings.metrics_interval,
        cluster=settings.metrics_cluster,
        worker_service=settings.metrics_worker_service,
        queues=settings.metrics_queues,
        default_queue=env.get(DEFAULT_QUEUE, AIRFLOW_DEFAULT_QUEUE),
    )


def discover_queues(client: redis.Redis, settings: MetricsSettings) -> list[str]:
    """Task queues: the configured ones, the default one, and every one bound in Redis."""
    found = {settings.default_queue, *settings.queues}
    for key in client.scan_iter(match=f"{BINDING_PREFIX}*", count=500):
        exchange = key.decode(errors="replace")[len(BINDING_PREFIX):]
        if exchange in INTERNAL_EXCHANGES:
            continue
        # The client does not decode responses: members are bytes.
        for member in cast("set[bytes]", client.smembers(key)):
            queue = member.decode(errors="replace").rsplit(SEP, 1)[-1]
            if queue and not queue.endswith(".pidbox"):
                found.add(queue)
    return sorted(found)


def read_sample(client: redis.Redis, queues: Iterable[str]) -> Sample:
    queues = list(queues)
    pipe = client.pipeline(transaction=False)
    for queue in queues:
        pipe.llen(queue)
        for step in PRIORITY_STEPS:
            pipe.llen(f"{queue}{SEP}{step}")
    pipe.hvals(UNACKED)
    replies = pipe.execute()
    sample = Sample()
    per_queue = 1 + len(PRIORITY_STEPS)
    for index, queue in enumerate(queues):
        sample.queued[queue] = sum(replies[index * per_queue:(index + 1) * per_queue])
    running: Counter[str] = Counter()
    for raw in replies[-1]:
        try:
            # kombu stores [message, exchange, routing_key]; Celery routes by queue name.
            routing_key = json.loads(raw)[2]
        except (ValueError, IndexError, TypeError):
            continue
        running[routing_key] += 1
    sample.running = {queue: running.get(queue, 0) for queue in queues}
    for queue, count in running.items():
        if queue not in sample.running:
            sample.running[queue] = count
            sample.queued.setdefault(queue, 0)
    return sample


def running_workers(ecs: Any, settings: MetricsSettings) -> int | None:
    if ecs is None or not settings.worker_service:
        return None
    reply = ecs.describe_services(cluster=settings.cluster,
                                  services=[settings.worker_service])
    services = reply.get("services") or []
    return int(services[0].get("runningCount", 0)) if services else None


def metric_data(sample: Sample, settings: MetricsSettings) -> list[dict[str, Any]]:
    base = [{"Name": "Cluster", "Value": settings.cluster},
            {"Name": "Service", "Value": settings.worker_service or "worker"}]
    data = []
    for queue in sorted(sample.queued):
        dims = [*base, {"Name": "Queue", "Value": queue}]
        data.append({"MetricName": "QueuedTasks", "Dimensions": dims,
                     "Value": sample.queued[queue], "Unit": "Count"})
        data.append({"MetricName": "RunningTasks", "Dimensions": dims,
                     "Value": sample.running.get(queue, 0), "Unit": "Count"})
    data.append({"MetricName": "Backlog", "Dimensions": base, "Value": sample.backlog,
                 "Unit": "Count"})
    if sample.workers is not None:
        data.append({"MetricName": "RunningWorkers", "Dimensions": base,
                     "Value": sample.workers, "Unit": "Count"})
    data.append({"MetricName": "BacklogPerWorker", "Dimensions": base,
                 "Value": sample.backlog_per_worker, "Unit": "Count"})
    return data


class Publisher:
    def __init__(self, settings: MetricsSettings, env: Mapping[str, str]):
        import boto3
        import redis

        self.settings = settings
        self.redis = redis.Redis.from_url(settings.broker_url, socket_timeout=10,
                                          socket_connect_timeout=5)
        session = boto3.session.Session(region_name=env.get("AWS_REGION")
                                        or env.get("AWS_DEFAULT_REGION"))
        endpoint = env.get("AWS_ENDPOINT_URL")
        self.cloudwatch = session.client("cloudwatch", endpoint_url=endpoint)
        self.ecs = (session.client("ecs", endpoint_url=endpoint)
                    if settings.worker_service else None)

    def once(self) -> Sample:
        queues = discover_queues(self.redis, self.settings)
        sample = read_sample(self.redis, queues)
        sample.workers = running_workers(self.ecs, self.settings)
        self.cloudwatch.put_metric_data(Namespace=self.settings.namespace,
                                        MetricData=metric_data(sample, self.settings))
        return sample

    def run(self, stop: threading.Event) -> None:
        log.info("publishing the Celery backlog from %s to CloudWatch namespace %s every %gs",
                 mask_url(self.settings.broker_url), self.settings.namespace,
                 self.settings.interval)
        failures = 0
        while True:
            started = time.monotonic()
            try:
                sample = self.once()
                failures = 0
                log.info("backlog %d (per worker %.2f)", sample.backlog,
                         sample.backlog_per_worker)
            except Exception as exc:  # noqa: BLE001 - a failed period is retried next period
                failures += 1
                log.warning("metrics period failed (%d in a row): %s: %s", failures,
                            type(exc).__name__, exc)
            if stop.wait(max(self.settings.interval - (time.monotonic() - started), 0.0)):
                return
