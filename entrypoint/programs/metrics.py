"""The `metrics` role: the Celery backlog, read from Redis, published to CloudWatch.

CPU is a poor scaling signal for Airflow workers whose tasks wait on I/O.
Every period this role reads, straight from Redis and without importing
Airflow or Celery, how many messages wait in each Celery queue and how many
are reserved or running on workers (kombu's `unacked` hash: with
`task_acks_late` a message stays there until its task ends), and publishes
them with one PutMetricData call, together with the backlog per running
worker that a target-tracking policy scales the worker service on.

With AIRFLOW_ECS_METRICS_WORKER_SETS (SERVICE=QUEUE,QUEUE;...) there is one such
service per worker set: each set's backlog is its own queues' queued and running
tasks, divided by its own service's running count, published with the service as
the Service dimension, which that set's scaling policy reads. A queue no set owns
is published under the Service dimension UNASSIGNED: no worker consumes it.

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
# The Service dimension of the queues no worker set consumes.
UNASSIGNED = "(unassigned)"
# DescribeServices takes this many services per call.
DESCRIBE_SERVICES_LIMIT = 10


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
    # (service, its queues) per worker set; empty: one service, worker_service.
    worker_sets: tuple[tuple[str, tuple[str, ...]], ...] = ()


@dataclass
class Sample:
    queued: dict[str, int] = field(default_factory=dict)
    running: dict[str, int] = field(default_factory=dict)
    workers: int | None = None
    # Running tasks of each worker set's service (None: not known), with worker sets.
    workers_by_service: dict[str, int | None] = field(default_factory=dict)

    @property
    def backlog(self) -> int:
        return sum(self.queued.values()) + sum(self.running.values())

    @property
    def backlog_per_worker(self) -> float:
        return self.backlog / max(self.workers or 0, 1)

    def set_backlog(self, queues: Iterable[str]) -> int:
        """The queued and running tasks of these queues: one worker set's backlog."""
        return sum(self.queued.get(q, 0) + self.running.get(q, 0) for q in queues)


def settings_from(settings: Settings, env: Mapping[str, str]) -> MetricsSettings:
    """The metrics role's view of the validated settings and the resolved environment."""
    from entrypoint.config import parse_worker_sets

    return MetricsSettings(
        broker_url=env.get(BROKER_URL, ""),
        namespace=settings.metrics_namespace,
        interval=settings.metrics_interval,
        cluster=settings.metrics_cluster,
        worker_service=settings.metrics_worker_service,
        queues=settings.metrics_queues,
        default_queue=env.get(DEFAULT_QUEUE, AIRFLOW_DEFAULT_QUEUE),
        worker_sets=(parse_worker_sets(settings.metrics_worker_sets)
                     if settings.metrics_worker_sets else ()),
    )


def discover_queues(client: redis.Redis, settings: MetricsSettings) -> list[str]:
    """Task queues: the configured ones, the default one, and every one bound in Redis."""
    found = {settings.default_queue, *settings.queues,
             *(q for _, queues in settings.worker_sets for q in queues)}
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
    return running_counts(ecs, settings.cluster, [settings.worker_service])[
        settings.worker_service]


def running_counts(ecs: Any, cluster: str, services: list[str]) -> dict[str, int | None]:
    """Each service's running tasks; None for one ECS does not know (not created yet)."""
    counts: dict[str, int | None] = dict.fromkeys(services)
    for start in range(0, len(services), DESCRIBE_SERVICES_LIMIT):
        reply = ecs.describe_services(
            cluster=cluster, services=services[start:start + DESCRIBE_SERVICES_LIMIT])
        for found in reply.get("services") or []:
            if found.get("serviceName") in counts:
                counts[found["serviceName"]] = int(found.get("runningCount", 0))
    return counts


def _service_metrics(dims: list[dict[str, str]], backlog: int,
                     workers: int | None) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = [{"MetricName": "Backlog", "Dimensions": dims,
                                   "Value": backlog, "Unit": "Count"}]
    if workers is not None:
        data.append({"MetricName": "RunningWorkers", "Dimensions": dims, "Value": workers,
                     "Unit": "Count"})
    # With no worker running the whole backlog counts, so scaling from zero works.
    data.append({"MetricName": "BacklogPerWorker", "Dimensions": dims,
                 "Value": backlog / max(workers or 0, 1), "Unit": "Count"})
    return data


def metric_data(sample: Sample, settings: MetricsSettings) -> list[dict[str, Any]]:
    cluster = {"Name": "Cluster", "Value": settings.cluster}
    owner = {q: service for service, queues in settings.worker_sets for q in queues}
    default = UNASSIGNED if settings.worker_sets else settings.worker_service or "worker"
    data = []
    for queue in sorted(sample.queued):
        dims = [cluster, {"Name": "Service", "Value": owner.get(queue, default)},
                {"Name": "Queue", "Value": queue}]
        data.append({"MetricName": "QueuedTasks", "Dimensions": dims,
                     "Value": sample.queued[queue], "Unit": "Count"})
        data.append({"MetricName": "RunningTasks", "Dimensions": dims,
                     "Value": sample.running.get(queue, 0), "Unit": "Count"})
    if not settings.worker_sets:
        return data + _service_metrics([cluster, {"Name": "Service", "Value": default}],
                                       sample.backlog, sample.workers)
    for service, queues in settings.worker_sets:
        data += _service_metrics([cluster, {"Name": "Service", "Value": service}],
                                 sample.set_backlog(queues),
                                 sample.workers_by_service.get(service))
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
                    if settings.worker_service or settings.worker_sets else None)

    def once(self) -> Sample:
        queues = discover_queues(self.redis, self.settings)
        sample = read_sample(self.redis, queues)
        if self.settings.worker_sets:
            sample.workers_by_service = running_counts(
                self.ecs, self.settings.cluster, [s for s, _ in self.settings.worker_sets])
        else:
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
                if self.settings.worker_sets:
                    log.info("backlog %s", ", ".join(
                        f"{service} {sample.set_backlog(queues)} on "
                        f"{sample.workers_by_service.get(service)} workers"
                        for service, queues in self.settings.worker_sets))
                else:
                    log.info("backlog %d (per worker %.2f)", sample.backlog,
                             sample.backlog_per_worker)
            except Exception as exc:  # noqa: BLE001 - a failed period is retried next period
                failures += 1
                log.warning("metrics period failed (%d in a row): %s: %s", failures,
                            type(exc).__name__, exc)
            if stop.wait(max(self.settings.interval - (time.monotonic() - started), 0.0)):
                return
