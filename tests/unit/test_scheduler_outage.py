"""The Celery executor while Redis does not answer: a failed read is skipped, a refused
send counts as one that timed out, heartbeats wait until Redis answers; other errors
escape as in Airflow (entrypoint.scheduler.outage)."""

import logging
import subprocess
import sys
from types import SimpleNamespace

import pytest
import redis
from kombu.exceptions import OperationalError

from entrypoint import private_apis
from entrypoint.scheduler import outage
from entrypoint.worker.broker import unreachable

REFUSED = redis.exceptions.ConnectionError("Error 111 connecting to redis:6379. Connection "
                                           "refused.")


class Timeout(Exception):
    """Stands for AirflowTaskTimeout."""


class Executor:
    """Stands for CeleryExecutor: sync() raises what the result backend's client raised."""

    def __init__(self, *errors):
        self.errors = list(errors)
        self.reads = 0

    def sync(self):
        self.reads += 1
        error = self.errors.pop(0) if self.errors else None
        if error is not None:
            raise error


def wrapped_sync(executor, watch=None):
    return outage.tolerant_sync(type(executor).sync, watch or outage.Outage(),
                                unreachable())


@pytest.mark.parametrize("error", [
    REFUSED,
    redis.exceptions.TimeoutError("Timeout reading from socket"),
    ConnectionResetError(104, "Connection reset by peer"),
])
def test_a_read_redis_does_not_answer_is_skipped_and_says_so_once(error, caplog):
    executor = Executor(error, error)
    watch = outage.Outage()
    sync = wrapped_sync(executor, watch)
    with caplog.at_level(logging.WARNING, logger="airflow-ecs.outage"):
        assert sync(executor) is None
        assert sync(executor) is None
        watch.answered(now=watch.since + 3.0)
    assert executor.reads == 2
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 2, messages  # once when the outage starts, once when it ends
    assert type(error).__name__ in messages[0] and "read of task states" in messages[0]
    assert messages[1] == "Redis answers the scheduler again, after 3.0 s"


def test_any_other_read_error_still_ends_the_loop_as_in_airflow():
    executor = Executor(KeyError("task id"))
    with pytest.raises(KeyError):
        wrapped_sync(executor)(executor)


def sent(*failures):
    return [(f"key{n}", "args", None if failure is None else
             SimpleNamespace(exception=failure, traceback="tb"))
            for n, failure in enumerate(failures)]


def test_a_send_the_broker_refused_counts_as_one_that_timed_out():
    watch = outage.Outage()
    send = outage.tolerant_send(lambda self, tuples: tuples, watch,
                                unreachable(), Timeout)
    results = send(None, sent(None, OperationalError("Error 111"), REFUSED, ValueError("bad"),
                              Timeout("slow")))
    kinds = [type(getattr(result, "exception", None)).__name__ for _, _, result in results]
    # Sent; refused twice (now timeouts: Airflow sends them again); an error of the task's
    # own stays one (Airflow fails the try); a timeout stays as it was.
    assert kinds == ["NoneType", "Timeout", "Timeout", "ValueError", "Timeout"]
    assert "the broker did not answer: Error 111" in str(results[1][2].exception)
    assert watch.since is not None


def test_nothing_refused_leaves_the_sends_and_the_outage_alone():
    watch = outage.Outage()
    send = outage.tolerant_send(lambda self, tuples: tuples, watch,
                                unreachable(), Timeout)
    assert send(None, sent(None, None)) == sent(None, None)
    assert watch.since is None


class CeleryLike:
    """An executor the heartbeat takes for the Celery executor (by its module)."""

    celery_app = object()


CeleryLike.__module__ = private_apis.CELERY_EXECUTOR.module


def test_heartbeats_wait_while_redis_does_not_answer(monkeypatch):
    beats = []
    watch = outage.Outage()
    installs = []
    heartbeat = outage.pausing(lambda self: beats.append(self), watch,
                               lambda: installs.append(1) or True)
    answers = iter([False, False, True])
    monkeypatch.setattr(outage, "broker_answers", lambda app: next(answers))
    executor = CeleryLike()

    heartbeat(executor)
    assert beats == [executor] and installs == [1]  # no outage: Airflow's heartbeat
    watch.failed("read of task states", REFUSED, now=10.0)
    heartbeat(executor)
    heartbeat(executor)
    assert len(beats) == 1  # skipped twice: Redis did not answer
    heartbeat(executor)
    assert len(beats) == 2 and watch.since is None
    assert installs == [1]  # the Celery executor's methods are wrapped once


def test_another_executors_heartbeat_is_left_alone(monkeypatch):
    beats = []
    watch = outage.Outage()
    watch.failed("read of task states", REFUSED, now=10.0)
    monkeypatch.setattr(outage, "broker_answers", lambda app: False)
    heartbeat = outage.pausing(lambda self: beats.append(self), watch, lambda: True)
    heartbeat("local executor")
    assert beats == ["local executor"]


def test_the_probe_says_no_for_a_broker_that_refuses_connections():
    from celery import Celery

    # A port nothing listens on (the discard port, unprivileged tests never bind it).
    app = Celery(broker="redis://127.0.0.1:9/0")
    assert outage.broker_answers(app) is False


def _install_in_a_fresh_interpreter(first_import: str) -> str:
    """Install as the Celery configuration does, then load the executor as the scheduler
    does (its module loads the configuration before its class exists) and run the
    wrapping step of its first heartbeat."""
    code = (f"{first_import}\n"
            "from entrypoint.scheduler import outage\n"
            "import sys\n"
            "installed = outage.install()\n"
            "runner = 'airflow.jobs.scheduler_job_runner' in sys.modules\n"
            "from airflow.executors.base_executor import BaseExecutor\n"
            "from airflow.providers.celery.executors.celery_executor import CeleryExecutor\n"
            "class Stub(CeleryExecutor):\n"
            "    def __init__(self): pass  # no state: Airflow's heartbeat fails after\n"
            "Stub.__module__ = CeleryExecutor.__module__\n"
            "try:\n"
            "    BaseExecutor.heartbeat(Stub())\n"
            "except AttributeError:\n"
            "    pass\n"
            "wrapped = all(hasattr(method, '__wrapped__') for method in\n"
            "              (CeleryExecutor.sync, CeleryExecutor._send_workloads_to_celery))\n"
            "print(installed, runner, wrapped)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120, check=True)
    return result.stdout.split("\n")[-2]


def test_installed_in_a_scheduler_only_and_wrapping_at_the_first_heartbeat():
    # A worker or an api-server loads the Celery configuration without the scheduler.
    assert _install_in_a_fresh_interpreter("") == "False False False"
    assert _install_in_a_fresh_interpreter(
        "import airflow.jobs.scheduler_job_runner") == "True True True"
