"""Container health checks of the rendered task definitions give a starting task the
whole time the entrypoint may take (first DAG sync + dependency waits + start-up) before
ECS may count it unhealthy, within ECS's limits; hand-written timings that give up
earlier are a validation finding."""

import json
import shutil
from pathlib import Path

import pytest

from entrypoint.errors import ConfigError
from entrypoint.probe import health
from entrypoint.tools.ecs import healthcheck, render, settings

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "task-definitions" / "settings" / "example.json"
BASE = json.loads(EXAMPLE.read_text())
IMAGE = {**{k: v for k, v in BASE.items() if k != "dags_s3_uri"}, "dags_source": "image"}
GIT = {**BASE, "dags_source": "git", "dags_git_url": "https://git.example.com/dags.git"}


def rendered(tmp_path, data, env=None):
    path = tmp_path / "settings.json"
    path.write_text(json.dumps(data))
    return render.render(path, env or {})


def env_of(container):
    return {e["name"]: e["value"] for e in container.get("environment", [])}


def checked_containers(documents):
    for name, doc in documents.items():
        for c in doc.get("containerDefinitions", []) if "/" not in name else []:
            if "healthCheck" in c:
                yield name, c


def allowance_of(env) -> int:
    """Computed here from the rendered environment, independently of the renderer."""
    sync = int(env["AIRFLOW_ECS_DAGS_SYNC_TIMEOUT"]) if "AIRFLOW_ECS_DAGS_SOURCE" in env else 0
    return sync + int(env["AIRFLOW_ECS_WAIT_TIMEOUT"]) + healthcheck.START_MARGIN


CASES = {
    "s3": (BASE, {}),
    "git": (GIT, {}),
    "image": (IMAGE, {}),
    "short-waits": (IMAGE, {"AIRFLOW_ECS_DEPLOY_WAIT_TIMEOUT": "20"}),
    "long-waits": (BASE, {"AIRFLOW_ECS_DEPLOY_WAIT_TIMEOUT": "1800",
                          "AIRFLOW_ECS_DEPLOY_DAGS_SYNC_TIMEOUT": "600"}),
}


@pytest.mark.parametrize("data,env", CASES.values(), ids=CASES.keys())
def test_no_health_check_gives_up_before_the_entrypoint_does(tmp_path, data, env):
    result = rendered(tmp_path, data, env)
    checked = list(checked_containers(result.documents))
    assert sorted(name for name, _ in checked) == ["scheduler.json", "webserver.json",
                                                    "worker.json"]
    for name, c in checked:
        check, env_ = c["healthCheck"], env_of(c)
        assert env_["AIRFLOW_ECS_WAIT_TIMEOUT"] == str(result.settings["wait_timeout"])
        gives_up = check["startPeriod"] + check["retries"] * check["interval"]
        assert gives_up >= allowance_of(env_), (name, check)
        assert check["timeout"] > health.BUDGET, (name, check)
        for key, (low, high) in healthcheck.LIMITS.items():
            assert low <= check[key] <= high, (name, key, check)
        assert check["retries"] >= 3  # a running task is still judged on several checks


def test_the_default_timings(tmp_path):
    documents = rendered(tmp_path, BASE).documents
    timings = {name: {k: v for k, v in c["healthCheck"].items() if k != "command"}
               for name, c in checked_containers(documents)}
    # Syncing roles: sync 120 + waits 300 + margin 60 = 480 s, beyond startPeriod's limit.
    assert timings["scheduler.json"] == {"interval": 30, "timeout": 15, "retries": 6,
                                         "startPeriod": 300}
    assert timings["worker.json"] == timings["scheduler.json"]
    # The webserver syncs nothing: 360 s.
    assert timings["webserver.json"] == {"interval": 30, "timeout": 15, "retries": 3,
                                         "startPeriod": 300}
    # The load balancer's checks are ignored for as long.
    assert documents["services/webserver.json"]["healthCheckGracePeriodSeconds"] == 360


def test_timings_within_and_beyond_the_start_period():
    assert healthcheck.timings(90) == {"interval": 30, "timeout": 15, "retries": 3,
                                       "startPeriod": 90}
    assert healthcheck.timings(500) == {"interval": 30, "timeout": 15, "retries": 7,
                                        "startPeriod": 300}
    # Past ten retries at 30 s, the interval grows instead.
    assert healthcheck.timings(2180) == {"interval": 188, "timeout": 15, "retries": 10,
                                         "startPeriod": 300}
    assert healthcheck.timings(3300)["interval"] == 300
    with pytest.raises(ValueError, match="beyond what ECS's health check can wait"):
        healthcheck.timings(3301)


def test_a_start_up_longer_than_ecs_can_wait_is_refused_with_its_path(tmp_path):
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({**BASE, "wait_timeout": 3200}))
    with pytest.raises(ConfigError) as caught:
        settings.load(path, {})
    assert caught.value.problems == [
        f"{path}: $.wait_timeout: 3200 plus the first DAG sync (120 s) and 60 s of start-up "
        "is 3380 s, longer than ECS's health check can wait (3300 s)"]


def broken(tmp_path, name, edit) -> Path:
    templates = tmp_path / "templates"
    shutil.copytree(ROOT / "task-definitions", templates)
    path = templates / name
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc, indent=2))
    return templates


def problems_of(templates):
    with pytest.raises(ConfigError) as caught:
        render.render(EXAMPLE, {}, templates)
    return caught.value.problems


def test_hand_written_timings_that_give_up_early_are_a_finding(tmp_path):
    def edit(doc):
        doc["containerDefinitions"][0]["healthCheck"].update(
            interval=30, timeout=15, retries=3, startPeriod=120)
    templates = broken(tmp_path, "worker.json", edit)
    assert problems_of(templates) == [
        f"{templates}/worker.json: $.containerDefinitions[0].healthCheck: gives up after 210 s "
        "(startPeriod + retries x interval), before the container's start-up allowance of "
        "480 s (first DAG sync + AIRFLOW_ECS_WAIT_TIMEOUT + margin): ECS would stop a starting "
        "task before the entrypoint reports what it waits for; leave the timings out to have "
        "them derived"]


def test_a_timeout_within_the_probes_budget_is_a_finding(tmp_path):
    def edit(doc):
        doc["containerDefinitions"][0]["healthCheck"].update(
            interval=60, timeout=10, retries=5, startPeriod=300)
    templates = broken(tmp_path, "scheduler.json", edit)
    [problem] = problems_of(templates)
    assert problem.startswith(f"{templates}/scheduler.json: $.containerDefinitions[0]."
                              "healthCheck.timeout: 10 s does not exceed the health command's "
                              "own 10 s budget")
