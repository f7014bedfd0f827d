"""Worker sets: each set its own task definition, service, scaling target and policy, in the
JSON files and the CloudFormation template; and every settings mistake about them failing at
render time with the file, the JSON path and the fix."""

import json
from pathlib import Path

import pytest

from entrypoint.errors import ConfigError
from entrypoint.tools.ecs import cloudformation, render

ROOT = Path(__file__).resolve().parents[2]
BASE = json.loads((ROOT / "task-definitions" / "settings" / "example.json").read_text())
SETS = [
    {"name": "default", "queues": ["default"]},
    {"name": "heavy", "queues": ["heavy", "reports"], "cpu": "4096", "memory": "16384",
     "concurrency": 2, "min_count": 1, "max_count": 12, "target_backlog": 3,
     "capacity": {"on_demand_base": 1, "spot_weight": 3}},
    {"name": "arm", "queues": ["light"], "architecture": "ARM64", "capacity": "on-demand"},
    {"name": "spot", "queues": ["batch"], "capacity": "spot"},
]


def write(tmp_path, data) -> Path:
    path = tmp_path / "x.json"
    path.write_text(json.dumps(data))
    return path


def rendered(tmp_path, **edit):
    return render.render(write(tmp_path, {**BASE, "image_architectures": ["X86_64", "ARM64"],
                                          "worker_sets": SETS, **edit}), {})


def test_each_set_renders_its_task_definition_service_and_scaling(tmp_path):
    r = rendered(tmp_path)
    docs, s = r.documents, r.settings
    for w in ("default", "heavy", "arm", "spot"):
        for name in (f"worker-{w}.json", f"services/worker-{w}.json",
                     f"scaling/worker-{w}-target.json", f"scaling/worker-{w}-policy.json"):
            assert name in docs, name
    assert not {"worker.json", "services/worker.json"} & set(docs)
    heavy = docs["worker-heavy.json"]
    assert (heavy["family"], heavy["cpu"], heavy["memory"]) == ("airflow-worker-heavy", "4096",
                                                                "16384")
    [container] = heavy["containerDefinitions"]
    # Its workers consume its queues only.
    assert container["command"] == ["run", "worker", "--", "--queues", "heavy,reports"]
    env = {e["name"]: e["value"] for e in container["environment"]}
    assert env["AIRFLOW__CELERY__WORKER_CONCURRENCY"] == "2"
    assert heavy["runtimePlatform"]["cpuArchitecture"] == "X86_64"
    assert docs["worker-arm.json"]["runtimePlatform"]["cpuArchitecture"] == "ARM64"
    strategies = {w: docs[f"services/worker-{w}.json"]["capacityProviderStrategy"]
                  for w in ("default", "heavy", "arm", "spot")}
    assert strategies == {
        "default": [{"capacityProvider": "FARGATE", "weight": 1}],
        "heavy": [{"capacityProvider": "FARGATE", "base": 1, "weight": 0},
                  {"capacityProvider": "FARGATE_SPOT", "weight": 3}],
        "arm": [{"capacityProvider": "FARGATE", "weight": 1}],
        "spot": [{"capacityProvider": "FARGATE_SPOT", "weight": 1}]}
    for w in ("default", "heavy", "arm", "spot"):
        service = docs[f"services/worker-{w}.json"]
        assert "launchType" not in service  # ECS refuses both
        assert (service["serviceName"], service["taskDefinition"]) == (
            f"airflow-worker-{w}", f"airflow-worker-{w}")
    target = docs["scaling/worker-heavy-target.json"]
    assert (target["ResourceId"], target["MinCapacity"], target["MaxCapacity"]) == (
        "service/airflow/airflow-worker-heavy", 1, 12)
    policy = docs["scaling/worker-heavy-policy.json"]["TargetTrackingScalingPolicyConfiguration"]
    assert policy["TargetValue"] == 3
    assert policy["CustomizedMetricSpecification"]["Dimensions"] == [
        {"Name": "Cluster", "Value": "airflow"},
        {"Name": "Service", "Value": "airflow-worker-heavy"}]
    # The metrics container publishes each set's backlog under the set's service.
    [metrics] = [c for c in docs["scheduler.json"]["containerDefinitions"]
                 if c["name"] == "metrics"]
    env = {e["name"]: e["value"] for e in metrics["environment"]}
    assert env["AIRFLOW_ECS_METRICS_WORKER_SETS"] == (
        "airflow-worker-default=default;airflow-worker-heavy=heavy,reports;"
        "airflow-worker-arm=light;airflow-worker-spot=batch")
    assert "AIRFLOW_ECS_METRICS_WORKER_SERVICE" not in env
    # It may count the running tasks of these services, and of no other.
    [count] = [st for st in docs["iam/task-role-policy-scheduler.json"]["Statement"]
               if st["Sid"] == "CountRunningWorkers"]
    assert count["Resource"] == [f"arn:aws:ecs:eu-west-1:123456789012:service/airflow/"
                                 f"airflow-worker-{w}" for w in ("default", "heavy", "arm",
                                                                 "spot")]
    assert s["worker_sets"][1].capacity is not None


def test_the_stack_puts_each_set_on_its_capacity_providers_and_architecture(tmp_path):
    stack = rendered(tmp_path).stack
    resources = stack["Resources"]
    cluster = resources["Cluster"]["Properties"]
    assert cluster["CapacityProviders"] == ["FARGATE", "FARGATE_SPOT"]
    heavy = resources["WorkerHeavyService"]["Properties"]
    assert heavy["CapacityProviderStrategy"] == [
        {"CapacityProvider": "FARGATE", "Base": 1, "Weight": 0},
        {"CapacityProvider": "FARGATE_SPOT", "Weight": 3}]
    assert "LaunchType" not in heavy
    assert heavy["TaskDefinition"] == {"Ref": "WorkerHeavyTaskDefinition"}
    # Every set's tasks are worker tasks: the worker's task role and security group.
    assert heavy["NetworkConfiguration"]["AwsvpcConfiguration"]["SecurityGroups"] == [
        {"Ref": "WorkerSecurityGroup"}]
    arm = resources["WorkerArmTaskDefinition"]["Properties"]
    assert arm["RuntimePlatform"] == {"OperatingSystemFamily": "LINUX", "CpuArchitecture": "ARM64"}
    assert arm["TaskRoleArn"] == {"Fn::GetAtt": ["WorkerTaskRole", "Arn"]}
    assert "WorkerTaskDefinition" not in resources
    for w in ("Default", "Heavy", "Arm", "Spot"):
        policy = resources[f"Worker{w}ScalingPolicy"]["Properties"]
        assert policy["ScalingTargetId"] == {"Ref": f"Worker{w}ScalableTarget"}
        dims = policy["TargetTrackingScalingPolicyConfiguration"][
            "CustomizedMetricSpecification"]["Dimensions"]
        assert dims[1] == {"Name": "Service", "Value": f"airflow-worker-{w.lower()}"}
        assert f"Worker{w}MetricMissingAlarm" in resources
    assert [k for k, v in resources.items() if v["Type"] == "AWS::IAM::Role"] == [
        "ExecutionRole", "MigrateTaskRole", "SchedulerTaskRole", "WebserverTaskRole",
        "WorkerTaskRole"]


def test_without_worker_sets_the_one_worker_is_rendered_as_before(tmp_path):
    r = render.render(write(tmp_path, BASE), {})
    docs = r.documents
    worker, service = docs["worker.json"], docs["services/worker.json"]
    assert worker["family"] == "airflow-worker"
    assert worker["containerDefinitions"][0]["command"] == ["run", "worker"]
    assert worker["runtimePlatform"]["cpuArchitecture"] == "X86_64"
    assert service["launchType"] == "FARGATE"
    assert "capacityProviderStrategy" not in service
    [metrics] = [c for c in docs["scheduler.json"]["containerDefinitions"]
                 if c["name"] == "metrics"]
    env = {e["name"]: e["value"] for e in metrics["environment"]}
    assert env["AIRFLOW_ECS_METRICS_WORKER_SERVICE"] == "airflow-worker"
    assert "AIRFLOW_ECS_METRICS_WORKER_SETS" not in env
    [count] = [st for st in docs["iam/task-role-policy-scheduler.json"]["Statement"]
               if st["Sid"] == "CountRunningWorkers"]
    assert count["Resource"] == "arn:aws:ecs:eu-west-1:123456789012:service/airflow/airflow-worker"
    resources = r.stack["Resources"]
    assert resources["WorkerService"]["Properties"]["LaunchType"] == "FARGATE"
    assert resources["WorkerService"]["Properties"]["TaskDefinition"] == {
        "Ref": "WorkerTaskDefinition"}


def problems_of(tmp_path, env=None, **edit):
    path = write(tmp_path, {**BASE, **edit})
    with pytest.raises(ConfigError) as caught:
        render.render(path, env or {})
    return path, caught.value.problems


@pytest.mark.parametrize("sets, expected", [
    ([{"name": "a", "queues": ["default"], "cpus": "1024"}],
     ["$.worker_sets[0].cpus: unknown key of a worker set (a typo?); a set takes name, "
      "queues, cpu, memory, concurrency, min_count, max_count, target_backlog, capacity, "
      "architecture"]),
    ([{"name": "a", "queues": ["default"]}, {"name": "b"}],
     ["$.worker_sets[1].queues: required: a list of the Celery queues the set's workers "
      "consume, e.g. [\"default\"]"]),
    ([{"name": "a", "queues": []}], ["$.worker_sets[0].queues: required"]),
    ([{"name": "a", "queues": ["default", "heavy"]}, {"name": "b", "queues": ["heavy"]}],
     ["$.worker_sets[1].queues: 'heavy' is also a queue of worker_sets[0]: each queue "
      "belongs to one set (its backlog scales that set); remove it from one of them"]),
    ([{"name": "a", "queues": ["default"]}, {"name": "a", "queues": ["heavy"]}],
     ["$.worker_sets[1].name: 'a' is also the name of worker_sets[0]: give each set its own "
      "name"]),
    ([{"name": "Heavy_1", "queues": ["default"]}],
     ["$.worker_sets[0].name: 'Heavy_1' must be 1-20 lower-case letters"]),
    # "a1" and "a-1" would both be the stack's WorkerA1...
    ([{"name": "a1", "queues": ["default"]}, {"name": "a-1", "queues": ["b"]}],
     ["$.worker_sets[1].name: 'a-1' must be 1-20 lower-case letters, digits and single "
      "hyphens, each part starting with a letter"]),
    ([{"name": "a", "queues": ["default"], "architecture": "ARM64"}],
     ["$.worker_sets[0].architecture: ARM64 is not among image_architectures ['X86_64']: "
      "build and push images for it (docs/deploy.md, \"ARM64\"), then add ARM64 to "
      "image_architectures"]),
    ([{"name": "a", "queues": ["default"], "architecture": "arm"}],
     ["$.worker_sets[0].architecture: 'arm' must be one of X86_64, ARM64"]),
    ([{"name": "a", "queues": ["default"], "min_count": 5, "max_count": 2}],
     ["$.worker_sets[0].max_count: 2 must be at least min_count 5"]),
    ([{"name": "a", "queues": ["default"], "min_count": -1}],
     ["$.worker_sets[0].min_count: -1 must be a whole number from 1 to 1000 (the backlog per "
      "worker can't scale a service out from 0)"]),
    ([{"name": "a", "queues": ["default"], "max_count": 5000}],
     ["$.worker_sets[0].max_count: 5000 must be a whole number from 1 to 1000"]),
    ([{"name": "a", "queues": ["default"], "concurrency": 0, "target_backlog": "4"}],
     ["$.worker_sets[0].concurrency: 0 must be a whole number from 1 to 256",
      "$.worker_sets[0].target_backlog: '4' must be a whole number from 1 to 100000"]),
    ([{"name": "a", "queues": ["default"], "capacity": "spots"}],
     ["$.worker_sets[0].capacity: 'spots' must be \"on-demand\", \"spot\" or "
      "{\"on_demand_base\": N, \"on_demand_weight\": W, \"spot_weight\": W}"]),
    ([{"name": "a", "queues": ["default"], "capacity": {"base": 1, "spot_weight": -2}}],
     ["$.worker_sets[0].capacity.base: unknown key; must be \"on-demand\"",
      "$.worker_sets[0].capacity.spot_weight: -2 must be a whole number from 0 to 1000"]),
    ([{"name": "a", "queues": ["default"], "capacity": {"on_demand_base": 2,
                                                        "spot_weight": 0}}],
     ["$.worker_sets[0].capacity: on_demand_weight and spot_weight are both 0"]),
    ({"name": "a"}, ["$.worker_sets: must be a list of objects such as"]),
])
def test_a_worker_set_mistake_names_the_file_the_json_path_and_the_fix(tmp_path, sets,
                                                                        expected):
    path, problems = problems_of(tmp_path, worker_sets=sets)
    assert len(problems) == len(expected), problems
    for problem, start in zip(problems, expected, strict=True):
        assert problem.startswith(f"{path}: {start}"), problem


def test_spot_is_refused_for_arm64_sets_where_fargate_spot_has_no_capacity(tmp_path):
    sets = [{"name": "a", "queues": ["default"], "architecture": "ARM64", "capacity": "spot"},
            {"name": "b", "queues": ["b"], "architecture": "ARM64",
             "capacity": {"on_demand_base": 1, "on_demand_weight": 1, "spot_weight": 1}}]
    path, problems = problems_of(tmp_path, worker_sets=sets,
                                 image_architectures=["X86_64", "ARM64"])
    assert problems == [
        f"{path}: $.worker_sets[{i}].capacity: Fargate Spot runs X86_64 tasks only, not "
        "ARM64: make this set \"on-demand\", or its architecture X86_64" for i in (0, 1)]
    # A base on Fargate with no weight on Spot is on-demand only: accepted.
    sets[1]["capacity"] = {"on_demand_base": 1, "on_demand_weight": 1, "spot_weight": 0}
    render.render(write(tmp_path, {**BASE, "worker_sets": sets[1:],
                                   "image_architectures": ["X86_64", "ARM64"]}), {})


def test_image_architectures_and_spot_for_other_roles(tmp_path):
    path, problems = problems_of(tmp_path, image_architectures=["ARM64", "ppc"],
                                 scheduler_capacity="spot")
    # No capacity setting exists for the scheduler or the webserver: they stay on-demand.
    assert problems == [f"{path}: $.scheduler_capacity: unknown setting (a typo?); see "
                        "docs/deploy.md"]
    path, problems = problems_of(tmp_path, image_architectures=["ARM64", "ppc"])
    assert problems[0] == (f"{path}: $.image_architectures: ['ARM64', 'ppc'] must list "
                           "architectures among X86_64, ARM64")
    # Every role runs on X86_64 unless told otherwise: each says what it lacks.
    assert problems[1:] == [
        f"{path}: $.{role}_architecture (default): 'X86_64' is not among "
        "image_architectures ['ARM64', 'ppc']: build and push images for it "
        "(docs/deploy.md, \"ARM64\"), then add X86_64 to image_architectures"
        for role in ("scheduler", "webserver", "worker", "migrate")]


def test_every_role_can_run_on_arm64(tmp_path):
    arm = {f"{role}_architecture": "ARM64"
           for role in ("scheduler", "webserver", "worker", "migrate")}
    r = render.render(write(tmp_path, {**BASE, **arm, "image_architectures": ["ARM64"]}), {})
    for stem in ("scheduler", "webserver", "worker", "migrate"):
        assert r.documents[f"{stem}.json"]["runtimePlatform"]["cpuArchitecture"] == "ARM64"
    stack = r.documents[cloudformation.FILE]["Resources"]
    assert {v["Properties"]["RuntimePlatform"]["CpuArchitecture"] for v in stack.values()
            if v["Type"] == "AWS::ECS::TaskDefinition"} == {"ARM64"}
    # A worker set without an architecture of its own takes worker_architecture's.
    r = render.render(write(tmp_path, {**BASE, **arm, "image_architectures": ["ARM64"],
                                       "worker_sets": [{"name": "a", "queues": ["default"]}]}),
                      {})
    assert r.documents["worker-a.json"]["runtimePlatform"]["cpuArchitecture"] == "ARM64"


def test_a_role_architecture_mistake_names_the_setting_and_the_fix(tmp_path):
    path, problems = problems_of(tmp_path, scheduler_architecture="ARM64")
    assert problems == [
        f"{path}: $.scheduler_architecture: 'ARM64' is not among image_architectures "
        "['X86_64']: build and push images for it (docs/deploy.md, \"ARM64\"), then add "
        "ARM64 to image_architectures"]
    path, problems = problems_of(tmp_path, webserver_architecture="arm64")
    assert problems == [f"{path}: $.webserver_architecture: 'arm64' must be one of X86_64, "
                        "ARM64"]
    # A set that inherits a bad worker_architecture is not blamed for it a second time.
    path, problems = problems_of(tmp_path, worker_architecture="ARM64",
                                 worker_sets=[{"name": "a", "queues": ["default"]}])
    assert [p.split(": ")[1] for p in problems] == ["$.worker_architecture"]
    # ...but a Spot set on an ARM64 worker_architecture is refused as an ARM64 set is.
    path, problems = problems_of(tmp_path, worker_architecture="ARM64",
                                 image_architectures=["X86_64", "ARM64"],
                                 worker_sets=[{"name": "a", "queues": ["default"],
                                               "capacity": "spot"}])
    assert problems == [f"{path}: $.worker_sets[0].capacity: Fargate Spot runs X86_64 tasks "
                        "only, not ARM64: make this set \"on-demand\", or its architecture "
                        "X86_64"]


def test_counts_of_the_single_worker_are_capped_too(tmp_path):
    path, problems = problems_of(tmp_path, worker_max_count=100_000)
    assert problems == [f"{path}: $.worker_max_count: 100000 must be at most 1000 (a typo? "
                        "each is a Fargate task)"]


def test_worker_sets_from_the_variable_name_it_in_each_problem(tmp_path):
    sets = json.dumps([{"name": "a", "queues": ["default"]}, {"name": "b", "queues": [],
                                                              "colour": "red"}])
    _, problems = problems_of(tmp_path, env={"AIRFLOW_ECS_DEPLOY_WORKER_SETS": sets})
    assert [p.split(":", 2)[:2] for p in problems] == [
        ["AIRFLOW_ECS_DEPLOY_WORKER_SETS", " $[1].colour"],
        ["AIRFLOW_ECS_DEPLOY_WORKER_SETS", " $[1].queues"]]
    _, problems = problems_of(tmp_path, env={"AIRFLOW_ECS_DEPLOY_WORKER_SETS": "[{"})
    assert problems[0].startswith("AIRFLOW_ECS_DEPLOY_WORKER_SETS: must be a JSON list of "
                                  "objects")
    r = render.render(write(tmp_path, BASE), {"AIRFLOW_ECS_DEPLOY_WORKER_SETS": json.dumps(
        [{"name": "only", "queues": ["default"]}])})
    assert "services/worker-only.json" in r.documents
    assert [w.stem for w in r.settings["worker_sets"]] == ["worker-only"]


def test_every_set_stem_is_a_worker_task_definition_of_the_stack(tmp_path):
    r = rendered(tmp_path)
    stems = cloudformation.task_definition_stems(r.settings, r.documents)
    assert stems == {"migrate": "migrate", "scheduler": "scheduler", "webserver": "webserver",
                     "worker-arm": "worker", "worker-default": "worker",
                     "worker-heavy": "worker", "worker-spot": "worker"}


def test_more_sets_than_the_stacks_template_can_hold_fail_at_render(tmp_path):
    many = [{"name": f"s{i}", "queues": [f"q{i}"]} for i in range(8)]
    stack = {"cloudformation_stack": "airflow", "vpc_id": "vpc-0a1b2c3d4e5f60000",
             "public_subnets": ["subnet-0a1b2c3d4e5f60004", "subnet-0a1b2c3d4e5f60005"],
             "certificate_arn": "arn:aws:acm:eu-west-1:123456789012:certificate/0123abcd"}
    path, problems = problems_of(tmp_path, worker_sets=many, **stack)
    [problem] = problems
    assert problem.startswith(f"{path}: $.worker_sets: with 8 worker sets the stack's "
                              "template is "), problem
    assert problem.endswith("more than the 51200 CloudFormation takes in a request; merge "
                            "sets (a set takes several queues), or unset cloudformation_stack "
                            "and deploy through the ECS API"), problem
    # Through the ECS API the same sets deploy: the template is written, not sent.
    render.render(write(tmp_path, {**BASE, "worker_sets": many}), {})
    render.render(write(tmp_path, {**BASE, **stack, "worker_sets": many[:3]}), {})


def test_a_task_size_fargate_lacks_names_the_set_it_is_in(tmp_path):
    sets = [{"name": "a", "queues": ["default"]},
            {"name": "big", "queues": ["big"], "cpu": "1024", "memory": 1536}]
    _, problems = problems_of(tmp_path, worker_sets=sets)
    assert problems == [
        "task-definitions/worker.json (worker set 'big'): $.memory: '1536' MiB can't go with "
        "1024 CPU units on Fargate; use 2048 to 8192 in steps of 1024"]
