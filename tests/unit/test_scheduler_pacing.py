"""The scheduler's pause after an idle loop: AIRFLOW_ECS_SCHEDULER_BUSY_SLEEP_SECONDS while
it has work and for a while after, Airflow's own setting at rest."""

import subprocess
import sys
from types import SimpleNamespace

import pytest

from entrypoint.scheduler import pacing
from entrypoint.scheduler.pacing import HOLD_SECONDS, next_pause


def pace(busy=0.25, rest=1.0):
    return pacing._Pace(rest=rest, busy=busy)


def test_at_rest_the_pause_is_airflows():
    assert next_pause(pace(), queued=0, working=False, now=100.0) == 1.0


@pytest.mark.parametrize("queued, working", [(3, False), (0, True), (2, True)])
def test_with_work_the_pause_is_short(queued, working):
    assert next_pause(pace(), queued=queued, working=working, now=100.0) == 0.25


def test_the_short_pause_outlasts_the_work_by_the_hold_then_ends():
    p = pace()
    assert next_pause(p, queued=0, working=True, now=100.0) == 0.25
    assert next_pause(p, queued=0, working=False, now=100.0 + HOLD_SECONDS - 0.1) == 0.25
    assert next_pause(p, queued=0, working=False, now=100.0 + HOLD_SECONDS) == 1.0
    # New work starts the hold again.
    assert next_pause(p, queued=1, working=False, now=500.0) == 0.25


def test_the_busy_pause_never_exceeds_airflows_setting():
    assert next_pause(pace(busy=5.0, rest=1.0), queued=1, working=True, now=1.0) == 1.0
    assert next_pause(pace(busy=0.25, rest=0.1), queued=1, working=True, now=1.0) == 0.1


def executor(queued=(), running=()):
    return SimpleNamespace(queued_tasks=dict.fromkeys(queued), running=set(running))


def test_work_is_a_task_queued_to_or_running_in_any_executor():
    assert not pacing.has_work([executor(), executor()])
    assert pacing.has_work([executor(), executor(queued=["ti"])])
    assert pacing.has_work([executor(running=["ti"]), executor()])
    # An executor without these attributes (a changed Airflow) holds no work we can see.
    assert not pacing.has_work([object()])


class Runner:
    """The attributes of Airflow's SchedulerJobRunner the wrapped step reads and sets."""

    def __init__(self, queued_each_step):
        self._scheduler_idle_sleep_time = 1.0
        self.executors = [executor()]
        self.steps = iter(queued_each_step)


def step(runner, session):
    return next(runner.steps)


def test_the_wrapped_step_sets_the_pause_the_loop_reads(monkeypatch):
    clock = iter([10.0, 11.0, 11.0 + HOLD_SECONDS + 1, 11.0 + HOLD_SECONDS + 2])
    monkeypatch.setattr(pacing.time, "monotonic", lambda: next(clock))
    wrapped = pacing._pacing(step, busy=0.25)
    runner = Runner([0, 4, 0, 0])

    assert wrapped(runner, session=None) == 0
    assert runner._scheduler_idle_sleep_time == 1.0  # nothing queued, nothing running
    assert wrapped(runner, session=None) == 4
    assert runner._scheduler_idle_sleep_time == 0.25
    runner.executors[0].running.add("ti")  # the task runs past the hold: still busy
    assert wrapped(runner, session=None) == 0
    assert runner._scheduler_idle_sleep_time == 0.25
    runner.executors[0].running.clear()
    assert wrapped(runner, session=None) == 0
    assert runner._scheduler_idle_sleep_time == 0.25  # within the hold after the task
    # The rest pace is the one the runner was built with, not the short one set since.
    assert pacing._paces[runner].rest == 1.0


def test_a_bad_setting_in_the_scheduler_falls_back_to_the_declared_default():
    assert pacing.busy_sleep({"AIRFLOW_ECS_SCHEDULER_BUSY_SLEEP_SECONDS": "fast"}) == 0.25
    assert pacing.busy_sleep({"AIRFLOW_ECS_SCHEDULER_BUSY_SLEEP_SECONDS": "0.5"}) == 0.5


def _install_in_a_fresh_interpreter(first_import: str) -> str:
    code = (f"{first_import}\n"
            "from entrypoint.scheduler import pacing\n"
            "import sys\n"
            "installed = pacing.install({})\n"
            "name = 'airflow.jobs.scheduler_job_runner'\n"
            "imported = name in sys.modules\n"
            "wrapped = imported and hasattr(sys.modules[name].SchedulerJobRunner._do_scheduling,"
            " '__wrapped__')\n"
            "print(installed, imported, wrapped)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120, check=True)
    return result.stdout.split("\n")[-2]


def test_installed_in_a_scheduler_only_and_never_importing_the_scheduler_itself():
    # A worker or an api-server loads the Celery configuration without the scheduler.
    assert _install_in_a_fresh_interpreter("") == "False False False"
    assert _install_in_a_fresh_interpreter(
        "import airflow.jobs.scheduler_job_runner") == "True True True"
