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
