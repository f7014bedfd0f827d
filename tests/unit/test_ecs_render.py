"""`airflow-ecs render`: the shipped templates filled from several settings files, every
output checked against botocore's ECS and Application Auto Scaling models, and broken
templates or settings failing with the file and the JSON path named."""

import json
import shutil
from pathlib import Path

import pytest

from entrypoint.cli import main
from entrypoint.errors import ConfigError
from entrypoint.tools import reference
from entrypoint.tools.ecs import render, settings, validate

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "task-definitions" / "settings" / "example.json"
OPERATIONS = {
    "": ("ecs", "RegisterTaskDefinition"),
    "services": ("ecs", "CreateService"),
}

BASE = json.loads(EXAMPLE.read_text())
GIT = {**BASE, "dags_source": "git", "dags_git_url": "https://git.example.com/acme/dags.git",
       "dags_git_ref": "release", "dags_git_token_parameter": "/airflow/prod-git/token",
       "kms_key_arn": "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
       "secrets_manager_secrets": ["airflow/prod/extra"], "image_tag": "2.0.1"}
IMAGE = {**{k: v for k, v in BASE.items() if k not in ("dags_s3_uri", "target_group_arn",
                                                      "admin_password_parameter")},
         "dags_source": "image", "name": "staging", "cluster": "staging", "region": "us-east-2",
         "worker_cpu": "4096", "worker_memory": "16384", "worker_max_count": 50}


def write_settings(tmp_path, data) -> Path:
    path = tmp_path / "settings.json"
    path.write_text(json.dumps(data))
    return path


def operation_of(relative: str):
    folder = relative.split("/")[0] if "/" in relative else ""
    if folder == "scaling":
        return ("application-autoscaling",
                "RegisterScalableTarget" if relative.endswith("-target.json") else
                "PutScalingPolicy")
    return OPERATIONS.get(folder)


@pytest.mark.parametrize("data", [BASE, GIT, IMAGE], ids=["s3", "git", "image"])
def test_every_rendered_file_passes_the_botocore_models(tmp_path, data):
    written = render.render_all(write_settings(tmp_path, data), {}, tmp_path / "out")
    relative = sorted(str(p.relative_to(tmp_path / "out")) for p in written)
    assert relative == [
        "cloudformation.json", "iam/ecs-tasks-trust-policy.json", "iam/execution-role-policy.json",
        "iam/task-role-policy-migrate.json", "iam/task-role-policy-scheduler.json",
        "iam/task-role-policy-webserver.json", "iam/task-role-policy-worker.json",
        "migrate.json", "scaling/worker-policy.json",
        "scaling/worker-target.json", "scheduler.json", "services/scheduler.json",
        "services/webserver.json", "services/worker.json", "webserver.json", "worker.json"]
    for path in written:
        if path.name == "cloudformation.json":
            continue  # its Fn::Sub takes ${...}; tests/unit/test_cloudformation.py lints it
        doc = json.loads(path.read_text())
        assert "${" not in path.read_text(), path
        op = operation_of(str(path.relative_to(tmp_path / "out")))
        if op:
            assert validate.against_model(doc, *op, str(path)) == []
        else:
            assert validate.iam_policy(doc, str(path)) == []


def load(out: Path, name: str) -> dict:
    return json.loads((out / name).read_text())


def env_of(container: dict) -> dict:
    return {e["name"]: e["value"] for e in container.get("environment", [])}


def test_task_definitions_carry_what_ecs_needs(tmp_path):
    out = tmp_path / "out"
    render.render_all(EXAMPLE, {}, out)
    for role, command in [("scheduler", "scheduler+dag-processor+triggerer"),
                          ("webserver", "webserver"), ("worker", "worker"),
                          ("migrate", "migrate")]:
        doc = load(out, f"{role}.json")
        assert (doc["cpu"], doc["memory"]) == (settings.BY_NAME[f"{role}_cpu"].default,
                                               settings.BY_NAME[f"{role}_memory"].default)
        assert doc["taskRoleArn"] == f"arn:aws:iam::123456789012:role/airflow-ecs-task-{role}"
        main_container = doc["containerDefinitions"][0]
        assert main_container["command"] == ["run", command]
        assert main_container["user"] == "50000"
        assert main_container["readonlyRootFilesystem"] is True
        assert {m["containerPath"] for m in main_container["mountPoints"]} == {
            "/tmp", "/opt/airflow/logs", "/opt/airflow/dags-data"}
        assert main_container["logConfiguration"]["options"]["awslogs-group"] == "/ecs/airflow"
        env = env_of(main_container)
        assert env["AIRFLOW_ECS_SSM_PATH"] == "/airflow/prod/"
        assert env["AWS_REGION"] == "eu-west-1"
        assert env["AIRFLOW_ECS_STOP_TIMEOUT"] == str(main_container["stopTimeout"])
        assert env["AIRFLOW__LOGGING__REMOTE_BASE_LOG_FOLDER"] == "s3://acme-airflow/task-logs"
        if role != "migrate":
            assert main_container["healthCheck"]["command"] == [
                "CMD", "airflow-ecs", "health", command]
    worker = load(out, "worker.json")["containerDefinitions"][0]
    assert worker["stopTimeout"] == 120
    assert env_of(worker)["AIRFLOW_ECS_DAGS_S3_URI"] == "s3://acme-airflow/dags/"
    migrate = load(out, "migrate.json")["containerDefinitions"][0]
    assert "secrets" not in migrate
    webserver = load(out, "webserver.json")["containerDefinitions"][0]
    assert webserver["secrets"] == [{
        "name": "AIRFLOW_ECS_ADMIN_PASSWORD",
        "valueFrom": "arn:aws:ssm:eu-west-1:123456789012:parameter/airflow/prod-admin/password"}]
    assert "AIRFLOW_ECS_DAGS_SOURCE" not in env_of(migrate)  # the migration reads no DAGs
    web = load(out, "services/webserver.json")
    assert web["loadBalancers"][0]["containerPort"] == 8080
    assert web["serviceConnectConfiguration"]["services"][0]["clientAliases"] == [
        {"port": 8080, "dnsName": "webserver"}]
    policy = load(out, "scaling/worker-policy.json")
    metric = policy["TargetTrackingScalingPolicyConfiguration"]["CustomizedMetricSpecification"]
    assert metric["MetricName"] == "BacklogPerWorker"
    assert metric["Dimensions"] == [{"Name": "Cluster", "Value": "airflow"},
                                    {"Name": "Service", "Value": "airflow-worker"}]
    metrics = load(out, "scheduler.json")["containerDefinitions"][1]
    assert metrics["command"] == ["run", "metrics"] and metrics["essential"] is False
    assert env_of(metrics)["AIRFLOW_ECS_METRICS_WORKER_SERVICE"] == "airflow-worker"


def test_git_settings_and_environment_overrides(tmp_path):
    out = tmp_path / "out"
    env = {"AIRFLOW_ECS_DEPLOY_IMAGE_TAG": "2.0.2", "AIRFLOW_ECS_DEPLOY_WORKER_CPU": "2048",
           "AIRFLOW_ECS_DEPLOY_WORKER_MEMORY": "8192",
           "AIRFLOW_ECS_DEPLOY_SUBNETS": "subnet-1, subnet-2, subnet-3"}
    render.render_all(write_settings(tmp_path, GIT), env, out)
    worker = load(out, "worker.json")
    assert (worker["cpu"], worker["memory"]) == ("2048", "8192")
    container = worker["containerDefinitions"][0]
    assert container["image"].endswith("/airflow-ecs/worker:2.0.2")
    assert env_of(container)["AIRFLOW_ECS_DAGS_GIT_URL"] == GIT["dags_git_url"]
    assert env_of(container)["AIRFLOW_ECS_DAGS_GIT_REF"] == "release"
    assert [s["name"] for s in container["secrets"]] == ["AIRFLOW_ECS_DAGS_GIT_TOKEN"]
    service = load(out, "services/worker.json")
    assert service["networkConfiguration"]["awsvpcConfiguration"]["subnets"] == [
        "subnet-1", "subnet-2", "subnet-3"]
    for role in settings.ROLES:
        task_policy = load(out, f"iam/task-role-policy-{role}.json")
        sids = [s["Sid"] for s in task_policy["Statement"]]
        assert "ReadTheDagPrefix" not in sids  # no S3 DAG source, no S3 DAG access
        assert {"DecryptSecureStringsAndSecrets", "ReadNamedSecrets"} <= set(sids)
    execution = load(out, "iam/execution-role-policy.json")
    injected = next(s for s in execution["Statement"] if s["Sid"] == "InjectTaskDefinitionSecrets")
    assert injected["Resource"] == [
        "arn:aws:ssm:eu-west-1:123456789012:parameter/airflow/prod-admin/password",
        "arn:aws:ssm:eu-west-1:123456789012:parameter/airflow/prod-git/token"]


def test_image_source_without_load_balancer(tmp_path):
    out = tmp_path / "out"
    render.render_all(write_settings(tmp_path, IMAGE), {}, out)
    assert load(out, "services/webserver.json")["loadBalancers"] == []
    assert load(out, "webserver.json")["containerDefinitions"][0]["secrets"] == []
    worker = load(out, "worker.json")["containerDefinitions"][0]
    assert "AIRFLOW_ECS_DAGS_SOURCE" not in env_of(worker)
    assert worker["image"] == ("123456789012.dkr.ecr.us-east-2.amazonaws.com/airflow-ecs/"
                               f"worker:{settings.BY_NAME['image_tag'].default}")
    assert load(out, "scaling/worker-target.json")["MaxCapacity"] == 50


def broken(tmp_path, name: str, edit) -> Path:
    templates = tmp_path / "templates"
    shutil.copytree(ROOT / "task-definitions", templates)
    path = templates / name
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc, indent=2))
    return templates


def problems_of(templates: Path, env=None, settings_file=EXAMPLE) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        render.render(settings_file, env or {}, templates)
    return caught.value.problems


def test_bad_fargate_cpu_memory_pair_names_the_file_and_path(tmp_path):
    problems = problems_of(ROOT / "task-definitions", {"AIRFLOW_ECS_DEPLOY_WORKER_MEMORY": "1536"})
    worker = render.display(ROOT / "task-definitions" / "worker.json")
    assert problems == [f"{worker}: $.memory: '1536' MiB can't go "
                        "with 1024 CPU units on Fargate; use 2048 to 8192 in steps of 1024"]


def test_secret_without_value_from_names_the_file_and_path(tmp_path):
    def edit(doc):
        doc["containerDefinitions"][0]["secrets"] = [{"name": "AIRFLOW_ECS_ADMIN_PASSWORD"}]
    templates = broken(tmp_path, "webserver.json", edit)
    assert problems_of(templates) == [
        f"{templates}/webserver.json: $.containerDefinitions[0].secrets[0].valueFrom: required "
        "by RegisterTaskDefinition"]


def test_misspelt_key_names_the_file_and_path(tmp_path):
    def edit(doc):
        doc["containerDefinitions"][0]["stopTimout"] = doc["containerDefinitions"][0].pop(
            "stopTimeout")
    templates = broken(tmp_path, "worker.json", edit)
    [problem] = problems_of(templates)
    assert problem.startswith(f"{templates}/worker.json: $.containerDefinitions[0].stopTimout: "
                              "unknown key for RegisterTaskDefinition; valid keys: name, image")


@pytest.mark.parametrize("name,edit,expected", [
    ("worker.json", lambda d: d["containerDefinitions"][0].update(stopTimeout=300),
     "$.containerDefinitions[0].stopTimeout: 300 is outside Fargate's 2-120 s"),
    ("worker.json", lambda d: d["containerDefinitions"][0]["healthCheck"].update(
        command=["airflow-ecs", "health", "worker"]),
     "$.containerDefinitions[0].healthCheck.command: must be [\"CMD\", executable, args...]"),
    ("webserver.json", lambda d: d["containerDefinitions"][0].update(
        image="${image_registry}/${image_prefix}webserver:latest"),
     "$.containerDefinitions[0].image: '123456789012.dkr.ecr.eu-west-1.amazonaws.com/"
     "airflow-ecs/webserver:latest' is not one of our images with the rendered tag"),
    ("scheduler.json", lambda d: d["containerDefinitions"][0].update(user="0"),
     "$.containerDefinitions[0].user: '0': the containers run as UID 50000"),
    ("scheduler.json", lambda d: d.update(cpu="${scheduler_cpus}"),
     "$.cpu: unknown placeholder ${scheduler_cpus}"),
    ("worker.json", lambda d: d["containerDefinitions"][0].update(mountPoints=[]),
     "$.containerDefinitions[0].mountPoints: a read-only root needs a writable volume at /tmp"),
    ("iam/execution-role-policy.json", lambda d: d["Statement"][1].update(Resource="*"),
     "$.Statement[1] (Sid PullTheImages): Resource \"*\" is allowed only for actions "
     "without resource-level"),
    ("worker.json", lambda d: d["containerDefinitions"][0].update(
        linuxParameters={"initProcessEnabled": True}),
     "$.containerDefinitions[0].linuxParameters.initProcessEnabled: the images run tini"),
    ("webserver.json", lambda d: d.update(taskRoleArn="${worker_task_role_arn}"),
     "$.taskRoleArn: 'arn:aws:iam::123456789012:role/airflow-ecs-task-worker' is not the "
     "webserver task role"),
    ("services/webserver.json", lambda d: d["serviceConnectConfiguration"]["services"][0].update(
        portName="http"),
     "$.serviceConnectConfiguration.services[0].portName: 'http' is not a named port"),
    ("scaling/worker-target.json", lambda d: d.update(MinCapacity=20),
     "$.MinCapacity: 20 is above MaxCapacity 10"),
])
def test_rules_the_model_does_not_hold(tmp_path, name, edit, expected):
    templates = broken(tmp_path, name, edit)
    problems = problems_of(templates)
    assert len(problems) == 1 and problems[0].startswith(f"{templates}/{name}: {expected}"), \
        problems


def test_a_per_role_policy_problem_names_each_rendering_it_is_in(tmp_path):
    templates = broken(tmp_path, "iam/task-role-policy.json",
                       lambda d: d["Statement"][5].update(Resource="*"))
    assert problems_of(templates) == [
        f"{templates}/iam/task-role-policy.json ({role}'s): $.Statement[2] (Sid "
        "ReadTheDagPrefix): Resource \"*\" is allowed only for actions without resource-level "
        "permissions (cloudwatch:PutMetricData, ecr:GetAuthorizationToken)"
        for role in ("scheduler", "worker")]


def test_settings_problems_are_all_reported_with_their_origin(tmp_path):
    data = {**BASE, "image_tag": "latest", "worker_min_count": 0, "colour": "blue",
            "admin_password_parameter": "/airflow/prod/admin"}
    del data["subnets"]
    path = write_settings(tmp_path, data)
    with pytest.raises(ConfigError) as caught:
        settings.load(path, {"AIRFLOW_ECS_DEPLOY_WORKER_CPUS": "2"})
    text = "\n".join(caught.value.problems)
    assert f"{path}: $.colour: unknown setting" in text
    assert "AIRFLOW_ECS_DEPLOY_WORKER_CPUS: unknown setting" in text
    assert f"{path}: $.subnets: required (or set AIRFLOW_ECS_DEPLOY_SUBNETS)" in text
    fixed = {k: v for k, v in data.items() if k != "colour"} | {"subnets": ["subnet-1"]}
    fixed_path = write_settings(tmp_path, fixed)
    with pytest.raises(ConfigError) as caught:
        settings.load(fixed_path, {})
    text = "\n".join(caught.value.problems)
    assert "$.image_tag: 'latest' must be a Docker tag other than `latest`" in text
    assert "$.worker_min_count: 0 must be at least 1" in text
    assert "$.admin_password_parameter: '/airflow/prod/admin' must be outside ssm_path" in text


def test_the_webservers_own_parameters_reach_the_webserver_alone(tmp_path):
    data = {**BASE, "webserver_ssm_path": "/airflow/prod-webserver/"}
    out = tmp_path / "out"
    render.render_all(write_settings(tmp_path, data), {}, out)
    role_path = "AIRFLOW_ECS_SSM_ROLE_PATH"
    assert env_of(load(out, "webserver.json")["containerDefinitions"][0])[role_path] == (
        "/airflow/prod-webserver/")
    for role in ("scheduler", "worker", "migrate"):
        assert role_path not in env_of(load(out, f"{role}.json")["containerDefinitions"][0])
    arn = "arn:aws:ssm:eu-west-1:123456789012:parameter/airflow/prod-webserver/*"
    for role in ("scheduler", "webserver", "worker", "migrate"):
        policy = (out / f"iam/task-role-policy-{role}.json").read_text()
        assert (arn in policy) == (role == "webserver"), role
    template = (out / "cloudformation.json").read_text()
    assert template.count("parameter/airflow/prod-webserver/*") == 1

    for wrong, words in (("/airflow/prod/webserver/", "must be outside ssm_path"),
                         ("/airflow/", "must be outside ssm_path"),
                         ("airflow-webserver", "must be a Parameter Store path")):
        with pytest.raises(ConfigError) as caught:
            settings.load(write_settings(tmp_path, {**data, "webserver_ssm_path": wrong}), {})
        assert f"$.webserver_ssm_path: '{wrong}' {words}" in "\n".join(caught.value.problems)


def test_versioned_dags_reach_the_roles_that_read_dags_with_their_manifest_grants(tmp_path):
    data = {**BASE, "dags_versioned": True, "dags_s3_manifest_uri": "s3://acme-meta/versions/"}
    out = tmp_path / "out"
    render.render_all(write_settings(tmp_path, data), {}, out)
    for role in ("scheduler", "worker"):
        env = env_of(load(out, f"{role}.json")["containerDefinitions"][0])
        assert env["AIRFLOW_ECS_DAGS_VERSIONED"] == "true"
        assert env["AIRFLOW_ECS_DAGS_S3_MANIFEST_URI"] == "s3://acme-meta/versions/"
    for role in ("webserver", "migrate"):
        env = env_of(load(out, f"{role}.json")["containerDefinitions"][0])
        assert "AIRFLOW_ECS_DAGS_VERSIONED" not in env
    objects = "arn:aws:s3:::acme-meta/versions/*"

    def actions_on(role: str) -> set[str]:
        policy = json.loads((out / f"iam/task-role-policy-{role}.json").read_text())
        found: set[str] = set()
        for statement in policy["Statement"]:
            resources = statement["Resource"]
            if objects in (resources if isinstance(resources, list) else [resources]):
                action = statement["Action"]
                found.update(action if isinstance(action, list) else [action])
        return found

    assert actions_on("scheduler") == {"s3:GetObject", "s3:PutObject"}
    assert actions_on("worker") == {"s3:GetObject"}
    assert actions_on("webserver") == actions_on("migrate") == set()

    for edit, words in (
            ({"dags_s3_manifest_uri": "s3://acme-airflow/dags/versions/"},
             "$.dags_s3_manifest_uri: 's3://acme-airflow/dags/versions/' must be outside "
             "dags_s3_uri"),
            ({"dags_versioned": "yes"}, "$.dags_versioned: must be true or false, got 'yes'"),
            ({"dags_versioned": False}, "$.dags_s3_manifest_uri: 's3://acme-meta/versions/' "
             "is for versioned S3 DAGs"),
            ({"dags_source": "image", "dags_s3_manifest_uri": ""},
             "$.dags_versioned: True needs dags_source git or s3")):
        with pytest.raises(ConfigError) as caught:
            settings.load(write_settings(tmp_path, {**data, **edit}), {})
        assert words in "\n".join(caught.value.problems), caught.value.problems


def test_nothing_is_written_when_a_file_fails(tmp_path):
    out = tmp_path / "out"
    render.render_all(EXAMPLE, {}, out)
    before = {p: p.read_text() for p in out.glob("**/*.json")}
    with pytest.raises(ConfigError):
        render.render_all(EXAMPLE, {"AIRFLOW_ECS_DEPLOY_WORKER_MEMORY": "1536"}, out)
    assert {p: p.read_text() for p in out.glob("**/*.json")} == before


def test_cli_render_prints_the_files_and_exits_78_on_problems(tmp_path, capfd, caplog):
    assert main(["render", "--settings", str(EXAMPLE), "--out", str(tmp_path / "a")]) == 0
    assert f"{tmp_path}/a/worker.json" in capfd.readouterr().out
    assert main(["render", "--out", str(tmp_path / "b")]) == 78
    assert "account_id: required (or set AIRFLOW_ECS_DEPLOY_ACCOUNT_ID)" in caplog.text
    assert not (tmp_path / "b").exists()


def test_fargate_size_table():
    fails = validate._fargate({"networkMode": "awsvpc", "cpu": "256", "memory": "1536",
                               "containerDefinitions": []}, "f")
    assert fails == ["f: $.memory: '1536' MiB can't go with 256 CPU units on Fargate; "
                     "use 512, 1024 or 2048"]
    ok = validate._fargate({"networkMode": "awsvpc", "cpu": "16384", "memory": "122880",
                            "containerDefinitions": []}, "f")
    assert ok == []


def test_docs_hold_the_generated_settings_table():
    docs = (ROOT / "docs" / "deploy.md").read_text()
    assert reference.render_deploy_settings() in docs, (
        "docs/deploy.md's settings table is out of date: paste the output of "
        "`python -m entrypoint.tools.reference deploy`")


SETTINGS_FILES = sorted((ROOT / "task-definitions" / "settings").glob("*.json"))


def containers(documents: dict):
    for name, doc in documents.items():
        if "/" not in name and name != "cloudformation.json":
            for c in doc["containerDefinitions"]:
                yield name, c


@pytest.mark.parametrize("path", SETTINGS_FILES, ids=lambda p: p.name)
def test_every_shipped_settings_file_renders_without_a_finding(tmp_path, path):
    written = render.render_all(path, {}, tmp_path / "out")
    documents = render.render(path, {}).documents
    sets = [w.stem for w in render.render(path, {}).settings["worker_sets"]]
    # Each worker set: a task definition, a service, a scaling target and a policy.
    assert len(written) == 12 + 4 * len(sets)
    for name, c in containers(documents):
        # The images run tini as PID 1: ECS's init process would push it off PID 1.
        assert "initProcessEnabled" not in c.get("linuxParameters", {}), (name, c["name"])
        env = env_of(c)
        if env.get("AIRFLOW__LOGGING__REMOTE_LOGGING") == "True":
            assert env["AIRFLOW__LOGGING__DELETE_LOCAL_LOGS"] == "True", (name, c["name"])
    assert [name for name, c in containers(documents)
            if "AIRFLOW__LOGGING__REMOTE_LOGGING" in env_of(c)] == sorted(
        ["migrate.json", "scheduler.json", "webserver.json", *(f"{w}.json" for w in sets)])


def test_production_settings_run_two_schedulers_and_webservers_with_rolling_deployments():
    documents = render.render(ROOT / "task-definitions" / "settings" / "production.json",
                              {}).documents
    for role in ("scheduler", "webserver"):
        service = documents[f"services/{role}.json"]
        assert service["desiredCount"] == 2, role
        config = service["deploymentConfiguration"]
        assert (config["minimumHealthyPercent"], config["maximumPercent"]) == (100, 200), role
    assert settings.BY_NAME["scheduler_count"].default == 2
    documents = render.render(EXAMPLE, {"AIRFLOW_ECS_DEPLOY_SCHEDULER_COUNT": "3"}).documents
    assert documents["services/scheduler.json"]["desiredCount"] == 3
    config = documents["services/scheduler.json"]["deploymentConfiguration"]
    assert (config["minimumHealthyPercent"], config["maximumPercent"]) == (100, 200)


def test_counts_out_of_range_name_the_file_or_variable(tmp_path):
    path = write_settings(tmp_path, {**BASE, "scheduler_count": 0, "webserver_count": 101})
    with pytest.raises(ConfigError) as caught:
        settings.load(path, {})
    assert caught.value.problems == [f"{path}: $.scheduler_count: 0 must be from 1 to 10",
                                     f"{path}: $.webserver_count: 101 must be from 1 to 100"]
    with pytest.raises(ConfigError) as caught:
        settings.load(EXAMPLE, {"AIRFLOW_ECS_DEPLOY_SCHEDULER_COUNT": "11"})
    assert caught.value.problems == ["AIRFLOW_ECS_DEPLOY_SCHEDULER_COUNT: 11 must be from 1 "
                                     "to 10"]


PARTITIONS = {"cn-north-1": ("aws-cn", "amazonaws.com.cn"),
              "us-gov-west-1": ("aws-us-gov", "amazonaws.com"),
              "eu-west-1": ("aws", "amazonaws.com")}


@pytest.mark.parametrize("region", PARTITIONS)
def test_partition_and_domain_follow_the_region_as_botocore_has_them(region):
    import re

    import botocore

    data = json.loads((Path(botocore.__file__).parent / "data" / "partitions.json").read_text())
    [known] = [p for p in data["partitions"] if re.match(p["regionRegex"], region)]
    partition = settings.partition_of(region)
    assert (partition, settings.dns_suffix_of(partition)) == PARTITIONS[region] == (
        known["id"], known["outputs"]["dnsSuffix"])


@pytest.mark.parametrize("region", ["cn-north-1", "us-gov-west-1"])
def test_every_arn_is_in_the_regions_partition(tmp_path, region):
    import re

    partition, domain = PARTITIONS[region]
    data = {**BASE, "region": region, "target_group_arn": "",
            "kms_key_arn": f"arn:{partition}:kms:{region}:123456789012:key/1234abcd",
            "secrets_manager_secrets": ["airflow/prod/extra"]}
    out = tmp_path / "out"
    written = render.render_all(write_settings(tmp_path, data), {}, out)
    arns = set()
    for path in written:
        arns |= set(re.findall(r"arn:[^:\"]*:[a-z0-9\-]+:", path.read_text()))
    assert arns and {arn.split(":")[1] for arn in arns} == {partition}, arns
    worker = load(out, "worker.json")
    assert worker["containerDefinitions"][0]["image"].startswith(
        f"123456789012.dkr.ecr.{region}.{domain}/")
    assert worker["taskRoleArn"] == (f"arn:{partition}:iam::123456789012:role/"
                                     "airflow-ecs-task-worker")
    execution = load(out, "iam/execution-role-policy.json")
    decrypt = next(s for s in execution["Statement"] if s["Sid"] == "DecryptInjectedSecrets")
    assert decrypt["Condition"]["StringEquals"]["kms:ViaService"] == f"ssm.{region}.{domain}"


def test_an_arn_of_another_partition_is_refused(tmp_path):
    path = write_settings(tmp_path, {**BASE, "region": "cn-north-1"})
    with pytest.raises(ConfigError) as caught:
        settings.load(path, {})
    assert caught.value.problems == [
        f"{path}: $.target_group_arn: {BASE['target_group_arn']!r} must be an ARN of the "
        "region's partition: arn:aws-cn:elasticloadbalancing:cn-north-1:..."]
    problems = validate.iam_policy(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:GetObject",
                                                 "Resource": "arn:aws:s3:::b/k"}]},
        "p.json", "aws-cn")
    assert problems == ["p.json: $.Statement[0].Resource: 'arn:aws:s3:::b/k' is not in the "
                        "region's partition (arn:aws-cn:...)"]
