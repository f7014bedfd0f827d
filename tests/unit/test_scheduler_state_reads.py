"""The Celery executor's read of task states: an unreachable result backend skips that
loop's read, says so once, and says when reads succeed again; other errors escape."""

import logging
import subprocess
import sys

import pytest
import redis

from entrypoint.scheduler import state_reads


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


def wrapped(executor):
    return state_reads.tolerant(type(executor).sync, state_reads.Outage(),
                                state_reads.connection_errors())


@pytest.mark.parametrize("error", [
    redis.exceptions.ConnectionError("Error 111 connecting to redis:6379. Connection refused."),
    redis.exceptions.TimeoutError("Timeout reading from socket"),
    ConnectionResetError(104, "Connection reset by peer"),
])
def test_an_unreachable_result_backend_skips_the_read_and_the_next_loop_reads_again(
        error, caplog):
    executor = Executor(error, error, None)
    sync = wrapped(executor)
    with caplog.at_level(logging.WARNING, logger="airflow-ecs.state_reads"):
        assert sync(executor) is None
        assert sync(executor) is None
        sync(executor)
    assert executor.reads == 3
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 2, messages  # once when the outage starts, once when it ends
    assert type(error).__name__ in messages[0] and "next loop" in messages[0]
    assert messages[1].startswith("the Celery result backend answers again, after ")


def test_any_other_error_still_ends_the_loop_as_in_airflow():
    executor = Executor(KeyError("task id"))
    with pytest.raises(KeyError):
        wrapped(executor)(executor)


def test_a_read_that_answers_logs_nothing(caplog):
    executor = Executor()
    with caplog.at_level(logging.DEBUG, logger="airflow-ecs.state_reads"):
        wrapped(executor)(executor)
    assert caplog.records == []


def _install_in_a_fresh_interpreter(first_import: str) -> str:
    """Install as the Celery configuration does, then load the executor as the scheduler
    does (its module loads the configuration before its class exists) and run its first
    heartbeat's wrapping step."""
    code = (f"{first_import}\n"
            "from entrypoint.scheduler import state_reads\n"
            "import sys\n"
            "installed = state_reads.install()\n"
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
            "wrapped = hasattr(CeleryExecutor.sync, '__wrapped__')\n"
            "print(installed, runner, wrapped)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120, check=True)
    return result.stdout.split("\n")[-2]


def test_installed_in_a_scheduler_only_and_wrapping_the_read_at_the_first_heartbeat():
    # A worker or an api-server loads the Celery configuration without the scheduler.
    assert _install_in_a_fresh_interpreter("") == "False False False"
    assert _install_in_a_fresh_interpreter(
        "import airflow.jobs.scheduler_job_runner") == "True True True"
