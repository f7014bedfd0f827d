"""The metrics role: backlog read from real Celery queues in Redis, published to CloudWatch
(moto's server)."""


import boto3
import pytest
import redis

from entrypoint import config
from entrypoint.programs import metrics
from tests.support import celery_producer


@pytest.fixture
def broker(redis_server):
    url = redis_server.url(db=7)
    redis.Redis.from_url(url).flushdb()
    yield url
    redis.Redis.from_url(url).flushdb()


def test_queue_lengths_and_running_tasks_from_real_celery_queues(broker, tmp_path):
    args = [0, str(tmp_path)]
    celery_producer.send(broker, "shutdown_app.sleep", args, queue="default", count=7)
    celery_producer.send(broker, "shutdown_app.sleep", args, queue="heavy", count=3)
    celery_producer.send(broker, "shutdown_app.sleep", args, queue="heavy", priority=6)
    client = redis.Redis.from_url(broker)
    # A worker holding one "heavy" message: kombu keeps it in the unacked hash.
    client.hset("unacked", "tag-1", '[{"body": "x"}, "heavy", "heavy"]')

    settings = metrics.settings_from(config.load({}), {"AIRFLOW__CELERY__BROKER_URL": broker})
    queues = metrics.discover_queues(client, settings)
    assert queues == ["default", "heavy"]
    sample = metrics.read_sample(client, queues)
    assert sample.queued == {"default": 7, "heavy": 4}
    assert sample.running == {"default": 0, "heavy": 1}
    assert sample.backlog == 12
    sample.workers = 3
    assert sample.backlog_per_worker == 4


def test_published_to_cloudwatch_in_one_call(broker, moto, tmp_path):
    celery_producer.send(broker, "shutdown_app.sleep", [0, str(tmp_path)], count=5)
    env = {"AIRFLOW__CELERY__BROKER_URL": broker, "AWS_ENDPOINT_URL": moto.url,
           "AWS_REGION": "eu-west-1", "AIRFLOW_ECS_METRICS_CLUSTER": "airflow",
           "AIRFLOW_ECS_METRICS_WORKER_SERVICE": "airflow-worker"}
    ecs = boto3.client("ecs", endpoint_url=moto.url, region_name="eu-west-1")
    ecs.create_cluster(clusterName="airflow")
    publisher = metrics.Publisher(metrics.settings_from(config.load(env), env), env)
    calls = []
    publisher.cloudwatch.meta.events.register(
        "before-call.cloudwatch.PutMetricData", lambda **kw: calls.append(kw))
    sample = publisher.once()
    assert len(calls) == 1
    assert sample.queued["default"] == 5
    assert sample.workers is None  # the service doesn't exist: no divisor
    cw = boto3.client("cloudwatch", endpoint_url=moto.url, region_name="eu-west-1")
    names = {m["MetricName"] for m in cw.list_metrics(Namespace="AirflowEcs")["Metrics"]}
    assert {"QueuedTasks", "RunningTasks", "Backlog", "BacklogPerWorker"} <= names
    dims = [m["Dimensions"] for m in cw.list_metrics(Namespace="AirflowEcs",
                                                     MetricName="QueuedTasks")["Metrics"]]
    assert {"Name": "Queue", "Value": "default"} in dims[0]
    assert {"Name": "Cluster", "Value": "airflow"} in dims[0]


def test_each_worker_set_publishes_its_own_queues_backlog_per_its_own_workers(
        broker, moto, tmp_path):
    args = [0, str(tmp_path)]
    celery_producer.send(broker, "shutdown_app.sleep", args, queue="default", count=6)
    celery_producer.send(broker, "shutdown_app.sleep", args, queue="heavy", count=3)
    celery_producer.send(broker, "shutdown_app.sleep", args, queue="reports", count=2)
    celery_producer.send(broker, "shutdown_app.sleep", args, queue="stray", count=1)
    client = redis.Redis.from_url(broker)
    client.hset("unacked", "tag-1", '[{"body": "x"}, "heavy", "heavy"]')
    env = {"AIRFLOW__CELERY__BROKER_URL": broker, "AWS_ENDPOINT_URL": moto.url,
           "AWS_REGION": "eu-west-1", "AIRFLOW_ECS_METRICS_CLUSTER": "sets",
           "AIRFLOW_ECS_METRICS_NAMESPACE": "AirflowEcsSets",
           "AIRFLOW_ECS_METRICS_WORKER_SETS": "sets-worker-default=default;"
                                              "sets-worker-heavy=heavy,reports"}
    ecs = boto3.client("ecs", endpoint_url=moto.url, region_name="eu-west-1")
    ecs.create_cluster(clusterName="sets")
    ecs.register_task_definition(family="sets-worker", containerDefinitions=[
        {"name": "worker", "image": "worker", "memory": 512}])
    for name, count in (("sets-worker-default", 3), ("sets-worker-heavy", 2)):
        ecs.create_service(cluster="sets", serviceName=name, taskDefinition="sets-worker",
                           desiredCount=count)
    running = {s["serviceName"]: s["runningCount"] for s in ecs.describe_services(
        cluster="sets", services=["sets-worker-default", "sets-worker-heavy"])["services"]}
    publisher = metrics.Publisher(metrics.settings_from(config.load(env), env), env)
    calls = []
    publisher.cloudwatch.meta.events.register(
        "before-parameter-build.cloudwatch.PutMetricData",
        lambda **kw: calls.append(kw["params"]))
    sample = publisher.once()
    # moto's services run no task: each set's whole backlog is its backlog per worker.
    assert sample.workers_by_service == running == {"sets-worker-default": 0,
                                                    "sets-worker-heavy": 0}
    [call] = calls

    def value(metric, service, queue=None):
        dims = [{"Name": "Cluster", "Value": "sets"}, {"Name": "Service", "Value": service}]
        if queue:
            dims.append({"Name": "Queue", "Value": queue})
        [datum] = [d for d in call["MetricData"]
                   if d["MetricName"] == metric and d["Dimensions"] == dims]
        return datum["Value"]

    assert value("Backlog", "sets-worker-default") == 6
    assert value("Backlog", "sets-worker-heavy") == 3 + 1 + 2  # queued, running, queued
    for service, backlog in (("sets-worker-default", 6), ("sets-worker-heavy", 6)):
        assert value("RunningWorkers", service) == 0
        assert value("BacklogPerWorker", service) == backlog
    assert value("QueuedTasks", "sets-worker-heavy", "reports") == 2
    assert value("RunningTasks", "sets-worker-heavy", "heavy") == 1
    # A queue no set consumes: published, and under no set's service.
    assert value("QueuedTasks", metrics.UNASSIGNED, "stray") == 1
    cw = boto3.client("cloudwatch", endpoint_url=moto.url, region_name="eu-west-1")
    services = {d["Value"] for m in cw.list_metrics(Namespace="AirflowEcsSets",
                                                    MetricName="BacklogPerWorker")["Metrics"]
                for d in m["Dimensions"] if d["Name"] == "Service"}
    assert services == {"sets-worker-default", "sets-worker-heavy"}
