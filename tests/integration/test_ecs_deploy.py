"""`airflow-ecs deploy` against moto's ECS and Application Auto Scaling: every rendered
task definition registers and reads back as rendered, the migrate task runs to
completion before the services are created, a second deploy updates them in place, and a
failed migration stops the rollout."""

import json
from pathlib import Path

import boto3
import pytest
from botocore.stub import Stubber

from entrypoint.cli import main
from entrypoint.errors import DeployError
from entrypoint.tools.ecs import deploy, render

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = json.loads((ROOT / "task-definitions" / "settings" / "example.json").read_text())
REGION = EXAMPLE["region"]


@pytest.fixture
def aws(monkeypatch):
    """moto in-process. Its RunTask for awsvpc tasks reads an ENI attribute its EC2 model
    lacks (private_dns_name); the property is supplied here, as EC2 names it."""
    from moto import mock_aws
    from moto.ec2.models.elastic_network_interfaces import NetworkInterface

    monkeypatch.setattr(NetworkInterface, "private_dns_name", property(
        lambda eni: f"ip-{eni.private_ip_address.replace('.', '-')}.{REGION}.compute.internal"),
        raising=False)
    with mock_aws():
        yield _setup(lambda service: boto3.client(service, region_name=REGION), url="")


@pytest.fixture
def aws_server(moto):
    return _setup(lambda service: boto3.client(service, endpoint_url=moto.url,
                                               region_name=REGION), url=moto.url)


def _setup(client, url):
    ec2 = client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.8.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.8.1.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName="airflow", Description="tasks",
                                      VpcId=vpc)["GroupId"]
    client("ecs").create_cluster(clusterName=EXAMPLE["cluster"])
    client.subnet, client.group, client.url = subnet, group, url
    return client


def settings_file(tmp_path, aws, **overrides) -> Path:
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({**EXAMPLE, "subnets": [aws.subnet],
                                "security_groups": [aws.group], "poll_seconds": 1,
                                **overrides}))
    return path


def subset_differences(rendered, stored, path="$"):
    """Where the stored document differs from what was rendered (keys ECS adds are fine)."""
    if isinstance(rendered, dict):
        return [d for k, v in rendered.items()
                for d in (subset_differences(v, stored.get(k), f"{path}.{k}")
                          if isinstance(stored, dict) else [f"{path}: missing"])]
    if isinstance(rendered, list) and isinstance(stored, list) and len(rendered) == len(stored):
        return [d for i, (a, b) in enumerate(zip(rendered, stored, strict=True))
                for d in subset_differences(a, b, f"{path}[{i}]")]
    return [] if rendered == stored else [f"{path}: {rendered!r} != {stored!r}"]


def test_rendered_task_definitions_register_and_read_back_as_rendered(tmp_path, aws):
    rendered = render.render(settings_file(tmp_path, aws), {})
    ecs = aws("ecs")
    for doc in rendered.task_definitions().values():
        arn = ecs.register_task_definition(**doc)["taskDefinition"]["taskDefinitionArn"]
        stored = ecs.describe_task_definition(taskDefinition=arn)["taskDefinition"]
        without_tags = {k: v for k, v in doc.items() if k != "tags"}
        assert subset_differences(without_tags, stored) == [], doc["family"]


def test_deploy_registers_migrates_then_creates_and_updates_the_services(tmp_path, aws, caplog):
    caplog.set_level("INFO", logger="airflow-ecs")
    path = settings_file(tmp_path, aws)
    env = {}
    arns = deploy.deploy(path, env, tmp_path / "out")
    assert sorted(arns) == ["airflow-migrate", "airflow-scheduler", "airflow-webserver",
                            "airflow-worker"]
    assert (tmp_path / "out" / "worker.json").exists()
    log = caplog.text
    assert log.index("migrate task") < log.index("finished (exit 0)") < \
        log.index("created service")

    ecs = aws("ecs")
    names = ["airflow-scheduler", "airflow-webserver", "airflow-worker"]
    services = ecs.describe_services(cluster="airflow", services=names)["services"]
    assert {s["serviceName"]: s["taskDefinition"].rsplit("/", 1)[1] for s in services} == {
        "airflow-scheduler": "airflow-scheduler:1", "airflow-webserver": "airflow-webserver:1",
        "airflow-worker": "airflow-worker:1"}
    assert {s["serviceName"]: s["desiredCount"] for s in services} == {
        "airflow-scheduler": 1, "airflow-webserver": 1, "airflow-worker": 1}
    # Rolling deployments: the new tasks start before the old ones stop. (moto keeps no
    # deploymentConfiguration: the files deploy sent are read instead.)
    for name in ("scheduler", "webserver", "worker"):
        config = json.loads((tmp_path / "out" / "services" / f"{name}.json").read_text())[
            "deploymentConfiguration"]
        assert (config["minimumHealthyPercent"], config["maximumPercent"]) == (100, 200), name
    migrations = ecs.list_tasks(cluster="airflow", startedBy="airflow-ecs-deploy")["taskArns"]
    assert len(migrations) == 1

    scaling = aws("application-autoscaling")
    [target] = scaling.describe_scalable_targets(ServiceNamespace="ecs")["ScalableTargets"]
    assert (target["ResourceId"], target["MinCapacity"], target["MaxCapacity"]) == (
        "service/airflow/airflow-worker", 1, 10)
    [policy] = scaling.describe_scaling_policies(ServiceNamespace="ecs")["ScalingPolicies"]
    spec = policy["TargetTrackingScalingPolicyConfiguration"]
    assert spec["CustomizedMetricSpecification"]["MetricName"] == "BacklogPerWorker"
    assert spec["TargetValue"] == 4

    # The autoscaler moved the workers; a new release must not reset that.
    ecs.update_service(cluster="airflow", service="airflow-worker", desiredCount=5)
    # A count setting changed since still applies to the services that aren't scaled.
    deploy.deploy(path, {**env, "AIRFLOW_ECS_DEPLOY_IMAGE_TAG": "0.1.1",
                         "AIRFLOW_ECS_DEPLOY_SCHEDULER_COUNT": "2"}, tmp_path / "out")
    services = ecs.describe_services(cluster="airflow", services=names)["services"]
    assert {s["taskDefinition"].rsplit(":", 1)[1] for s in services} == {"2"}
    assert {s["serviceName"]: s["desiredCount"] for s in services} == {
        "airflow-scheduler": 2, "airflow-webserver": 1, "airflow-worker": 5}
    worker = ecs.describe_task_definition(taskDefinition="airflow-worker:2")["taskDefinition"]
    assert worker["containerDefinitions"][0]["image"].endswith("/airflow-ecs/worker:0.1.1")
    assert len(ecs.list_tasks(cluster="airflow", startedBy="airflow-ecs-deploy")["taskArns"]) == 2


def test_production_settings_deploy_two_schedulers_and_two_webservers(tmp_path, aws):
    production = json.loads((ROOT / "task-definitions" / "settings" / "production.json")
                            .read_text())
    path = settings_file(tmp_path, aws, **{k: production[k] for k in (
        "scheduler_count", "webserver_count", "worker_min_count", "worker_max_count")})
    deploy.deploy(path, {}, tmp_path / "out")
    services = aws("ecs").describe_services(
        cluster="airflow", services=["airflow-scheduler", "airflow-webserver"])["services"]
    assert {s["serviceName"]: s["desiredCount"] for s in services} == {
        "airflow-scheduler": 2, "airflow-webserver": 2}


def test_cli_deploy_skip_migrate_against_the_endpoint_url(tmp_path, aws_server, monkeypatch):
    aws = aws_server
    monkeypatch.setenv("AWS_ENDPOINT_URL", aws.url)
    path = settings_file(tmp_path, aws)
    assert main(["deploy", "--settings", str(path), "--out", str(tmp_path / "o"),
                 "--skip-migrate"]) == 0
    ecs = aws("ecs")
    assert ecs.list_tasks(cluster="airflow", startedBy="airflow-ecs-deploy")["taskArns"] == []
    assert len(ecs.list_services(cluster="airflow")["serviceArns"]) == 3


def test_a_failed_migration_stops_the_rollout():
    ecs = boto3.client("ecs", region_name=REGION)
    settings = {**EXAMPLE, "subnets": ["subnet-1"], "security_groups": ["sg-1"],
                "assign_public_ip": "DISABLED", "migrate_timeout": 10, "poll_seconds": 1}
    task = "arn:aws:ecs:eu-west-1:123456789012:task/airflow/0123"
    with Stubber(ecs) as stub:
        stub.add_response("run_task", {"tasks": [{"taskArn": task}], "failures": []})
        stopped = {"tasks": [{"taskArn": task, "lastStatus": "STOPPED",
                              "stoppedReason": "Essential container in task exited",
                              "containers": [{"name": "migrate", "exitCode": 82}]}]}
        stub.add_response("describe_tasks", stopped)
        stub.add_response("describe_tasks", stopped)
        with pytest.raises(DeployError) as caught:
            deploy._run_to_completion(ecs, settings, "airflow-migrate:3")
    message = str(caught.value)
    assert "exit codes {'migrate': 82}" in message
    assert "the services were not updated" in message
    assert caught.value.exit_code == 84


def test_rendered_files_are_accepted_by_the_aws_cli_as_they_are(tmp_path, aws_server):
    """`aws ecs register-task-definition --cli-input-json file://...` and `aws ecs
    create-service --cli-input-json` take the rendered files without editing."""
    import os
    import subprocess
    import sys

    aws = aws_server
    out = tmp_path / "out"
    render.render_all(settings_file(tmp_path, aws), {}, out)
    cli = str(Path(sys.executable).parent / "aws")
    env = {**os.environ, "AWS_DEFAULT_REGION": REGION, "AWS_ACCESS_KEY_ID": "x",
           "AWS_SECRET_ACCESS_KEY": "y"}

    def run(*args):
        result = subprocess.run([cli, "--endpoint-url", aws.url, *args], env=env,
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    for role in ("scheduler", "webserver", "worker", "migrate"):
        reply = run("ecs", "register-task-definition", "--cli-input-json",
                    f"file://{out / f'{role}.json'}")
        assert reply["taskDefinition"]["family"] == f"airflow-{role}"
    reply = run("ecs", "create-service", "--cli-input-json",
                f"file://{out / 'services' / 'worker.json'}")
    assert reply["service"]["serviceName"] == "airflow-worker"
