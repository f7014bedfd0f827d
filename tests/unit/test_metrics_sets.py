"""The metrics role with worker sets: each set's backlog over its own running workers, and
the running counts asked of ECS in the batches DescribeServices takes."""

from entrypoint import config
from entrypoint.programs import metrics

SETS = "w-default=default;w-heavy=heavy,reports"


def settings(env):
    return metrics.settings_from(config.load(env), env)


def datum(data, name, service, queue=None):
    dims = [{"Name": "Cluster", "Value": "c"}, {"Name": "Service", "Value": service}]
    if queue:
        dims.append({"Name": "Queue", "Value": queue})
    [found] = [d["Value"] for d in data if d["MetricName"] == name and d["Dimensions"] == dims]
    return found


def test_each_set_divides_its_own_backlog_by_its_own_running_workers():
    s = settings({"AIRFLOW_ECS_METRICS_CLUSTER": "c", "AIRFLOW_ECS_METRICS_WORKER_SETS": SETS})
    sample = metrics.Sample(queued={"default": 9, "heavy": 4, "reports": 1, "stray": 5},
                            running={"default": 3, "heavy": 1, "reports": 0, "stray": 0},
                            workers_by_service={"w-default": 4, "w-heavy": None})
    data = metrics.metric_data(sample, s)
    assert datum(data, "Backlog", "w-default") == 12
    assert datum(data, "RunningWorkers", "w-default") == 4
    assert datum(data, "BacklogPerWorker", "w-default") == 3
    # A service ECS doesn't know yet: no running count, the whole backlog per worker.
    assert datum(data, "Backlog", "w-heavy") == 6
    assert [d for d in data if d["MetricName"] == "RunningWorkers"
            and {"Name": "Service", "Value": "w-heavy"} in d["Dimensions"]] == []
    assert datum(data, "BacklogPerWorker", "w-heavy") == 6
    assert datum(data, "QueuedTasks", "w-heavy", "reports") == 1
    assert datum(data, "QueuedTasks", metrics.UNASSIGNED, "stray") == 5
    # The stray queue is in no set's backlog.
    assert {d["Value"] for d in data if d["MetricName"] == "Backlog"} == {12, 6}
    # Without sets, as before: one service, every queue's backlog over its workers.
    one = settings({"AIRFLOW_ECS_METRICS_CLUSTER": "c",
                    "AIRFLOW_ECS_METRICS_WORKER_SERVICE": "w"})
    sample.workers = 5
    data = metrics.metric_data(sample, one)
    assert datum(data, "Backlog", "w") == 23
    assert datum(data, "BacklogPerWorker", "w") == 23 / 5
    assert datum(data, "QueuedTasks", "w", "stray") == 5


class Ecs:
    def __init__(self, running):
        self.running, self.calls = running, []

    def describe_services(self, cluster, services):
        self.calls.append((cluster, list(services)))
        return {"services": [{"serviceName": s, "runningCount": self.running[s]}
                             for s in services if s in self.running]}


def test_running_counts_are_asked_ten_services_at_a_time():
    names = [f"w-{i}" for i in range(23)]
    ecs = Ecs({name: i for i, name in enumerate(names) if i != 7})
    counts = metrics.running_counts(ecs, "c", names)
    assert [len(services) for _, services in ecs.calls] == [10, 10, 3]
    assert counts == {name: (None if i == 7 else i) for i, name in enumerate(names)}


def test_set_queues_are_reported_even_when_nothing_is_bound():
    s = settings({"AIRFLOW_ECS_METRICS_WORKER_SETS": SETS})

    class Empty:
        def scan_iter(self, **kw):
            return iter(())

    assert metrics.discover_queues(Empty(), s) == ["default", "heavy", "reports"]
