"""`airflow-ecs deploy` against moto's ECS and Application Auto Scaling: every rendered
task definition registers and reads back as rendered, the migrate task runs to
completion before the services are created, a second deploy updates them in place, and a
failed migration stops the rollout. Then the CloudFormation path on moto's
CloudFormation: the template of every settings file creates, and `deploy` migrates
before the services get a release, takes "no changes" for success and names the
resource a failed change failed on."""

import ast
import json
import re
from pathlib import Path

import boto3
import pytest
from botocore.stub import Stubber

from entrypoint.cli import main
from entrypoint.errors import DeployError
from entrypoint.tools.ecs import deploy, render

# moto names each resource type its CloudFormation skips (MOTO_SKIPS below).
pytestmark = pytest.mark.filterwarnings("ignore:Tried to parse .* not supported by moto")

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


# --- the CloudFormation stack --------------------------------------------------------------

SETTINGS_FILES = sorted((ROOT / "task-definitions" / "settings").glob("*.json"))
# moto 5.2's CloudFormation has no model of these types: it skips them with a warning and
# the stack completes without them. tests/unit/test_cloudformation.py lints them instead.
MOTO_SKIPS = {"AWS::ServiceDiscovery::HttpNamespace", "AWS::EC2::SecurityGroupEgress",
              "AWS::ApplicationAutoScaling::ScalableTarget",
              "AWS::ApplicationAutoScaling::ScalingPolicy", "AWS::CloudWatch::Alarm"}


@pytest.fixture
def stack_aws(monkeypatch):
    """moto in-process with a VPC, two private and two public subnets in two zones and an
    ACM certificate. Also supplied here, where moto's CloudFormation falls short of AWS's:
    the ENI attribute RunTask reads (as in `aws`); an updated task definition's keys in
    the ECS API's spelling, as moto gives a created one; and list parameters read back as
    CloudFormation writes them, comma-separated."""
    from moto import mock_aws
    from moto.cloudformation.models import Stack
    from moto.core.utils import pascal_to_camelcase, remap_nested_keys
    from moto.ec2.models.elastic_network_interfaces import NetworkInterface
    from moto.ecs.models import TaskDefinition

    monkeypatch.setattr(NetworkInterface, "private_dns_name", property(
        lambda eni: f"ip-{eni.private_ip_address.replace('.', '-')}.{REGION}.compute.internal"),
        raising=False)
    update = TaskDefinition.update_from_cloudformation_json.__func__

    def update_in_api_spelling(cls, original_resource, new_resource_name, cloudformation_json,
                               account_id, region_name):
        props = dict(cloudformation_json["Properties"])
        for key in ("ContainerDefinitions", "Volumes"):
            props[key] = remap_nested_keys(props.get(key, []), pascal_to_camelcase)
        return update(cls, original_resource, new_resource_name,
                      {**cloudformation_json, "Properties": props}, account_id, region_name)

    monkeypatch.setattr(TaskDefinition, "update_from_cloudformation_json",
                        classmethod(update_in_api_spelling))
    listed = Stack.parameter_list.fget
    monkeypatch.setattr(Stack, "parameter_list", property(lambda stack: [
        {**p, "ParameterValue": ",".join(p["ParameterValue"])
         if isinstance(p["ParameterValue"], list) else p["ParameterValue"]}
        for p in listed(stack)]))
    with mock_aws():
        client = lambda service: boto3.client(service, region_name=REGION)  # noqa: E731
        ec2 = client("ec2")
        vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
        subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.9.{i}.0/24",
                                     AvailabilityZone=f"{REGION}{zone}")["Subnet"]["SubnetId"]
                   for i, zone in enumerate("abab")]
        certificate = client("acm").request_certificate(
            DomainName="airflow.example.com")["CertificateArn"]
        client.stack = {"vpc_id": vpc, "subnets": subnets[:2], "public_subnets": subnets[2:],
                        "certificate_arn": certificate}
        yield client


def stack_settings(tmp_path, aws, source=EXAMPLE, **overrides) -> Path:
    path = tmp_path / "stack-settings.json"
    data = {**source, **aws.stack, "cloudformation_stack": "airflow", "poll_seconds": 1,
            **overrides}
    data.pop("security_groups", None)
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize("path", SETTINGS_FILES, ids=lambda p: p.name)
def test_the_template_of_each_settings_file_creates_on_moto(tmp_path, stack_aws, path):
    import warnings

    from entrypoint.tools.ecs import cloudformation

    aws = stack_aws
    settings = stack_settings(tmp_path, aws, json.loads(path.read_text()))
    rendered = render.render(settings, {})
    render.render_all(settings, {}, tmp_path / "out")
    cf = aws("cloudformation")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # The file as written, as `aws cloudformation deploy --template-file` sends it.
        body = (tmp_path / "out" / "cloudformation.json").read_text()
        cf.create_stack(StackName="airflow", TemplateBody=body,
                        Capabilities=["CAPABILITY_NAMED_IAM"], Parameters=[
                            {"ParameterKey": k, "ParameterValue": v}
                            for k, v in cloudformation.parameter_values(
                                rendered.settings).items()])
    [stack] = cf.describe_stacks(StackName="airflow")["Stacks"]
    assert stack["StackStatus"] == "CREATE_COMPLETE"
    skipped = {m.group(1) for w in caught
               if (m := re.search(r"parse (\S+) but it's not supported", str(w.message)))}
    types = {r["Type"] for r in rendered.stack["Resources"].values()}
    assert skipped == MOTO_SKIPS & types == MOTO_SKIPS

    s, docs = rendered.settings, rendered.documents
    ecs = aws("ecs")
    [cluster] = ecs.describe_clusters(clusters=[s["cluster"]])["clusters"]
    assert cluster["status"] == "ACTIVE"
    rendered_services = {d["serviceName"]: d for k, d in docs.items()
                         if k.startswith("services/")}
    names = sorted(rendered_services)
    assert len(names) == 2 + len(s["worker_sets"])
    services = ecs.describe_services(cluster=s["cluster"], services=names)["services"]
    assert sorted(x["serviceName"] for x in services) == names
    # moto's CloudFormation keeps neither a cluster's capacity providers, a service's
    # strategy nor a task definition's runtime platform: tests/unit/test_cloudformation.py
    # checks them in the template.
    for stem in cloudformation.task_definition_stems(s, docs):
        stored = ecs.describe_task_definition(taskDefinition=docs[f"{stem}.json"]["family"])[
            "taskDefinition"]
        assert subset_differences(docs[f"{stem}.json"]["containerDefinitions"],
                                  stored["containerDefinitions"]) == [], stem
    iam = aws("iam")
    for role in ("scheduler", "webserver", "worker", "migrate"):
        name = s[f"{role}_task_role_arn"].rsplit("/", 1)[1]
        policy = iam.get_role_policy(RoleName=name, PolicyName="airflow-ecs")["PolicyDocument"]
        if isinstance(policy, str):  # moto keeps a stack's inline policy as Python's text
            policy = ast.literal_eval(policy)
        # The stack's resources under the names the settings give them: the same policy.
        assert policy == docs[f"iam/task-role-policy-{role}.json"], role
    [group] = aws("logs").describe_log_groups(logGroupNamePrefix=s["log_group"])["logGroups"]
    assert group["retentionInDays"] == s["log_retention_days"]
    elb = aws("elbv2")
    [target_group] = elb.describe_target_groups()["TargetGroups"]
    assert (target_group["HealthCheckPath"], target_group["Port"]) == (
        cloudformation.WEBSERVER_HEALTH_PATH, s["api_port"])
    [listener] = elb.describe_listeners(LoadBalancerArn=target_group["LoadBalancerArns"][0])[
        "Listeners"]
    assert (listener["Protocol"], listener["Port"]) == ("HTTPS", 443)
    groups = {g["GroupName"]: g for g in aws("ec2").describe_security_groups(
        Filters=[{"Name": "vpc-id", "Values": [s["vpc_id"]]}])["SecurityGroups"]}
    by_id = {g["GroupId"]: name.split("-")[-2] for name, g in groups.items()
             if "SecurityGroup" in name}
    web = next(g for name, g in groups.items() if "WebserverSecurityGroup" in name)
    assert sorted((by_id.get(pair["GroupId"]), rule["FromPort"])
                  for rule in web["IpPermissions"] for pair in rule["UserIdGroupPairs"]) == [
        ("LoadBalancerSecurityGroup", 8080), ("WorkerSecurityGroup", 8080)]


def services_of(aws, cluster="airflow"):
    ecs = aws("ecs")
    arns = ecs.list_services(cluster=cluster)["serviceArns"]
    if not arns:
        return {}
    return {s["serviceName"]: s["taskDefinition"].rsplit("/", 1)[1]
            for s in ecs.describe_services(cluster=cluster, services=arns)["services"]}


def test_deploy_through_cloudformation_migrates_before_the_services_get_the_release(
        tmp_path, stack_aws, monkeypatch, caplog):
    caplog.set_level("INFO", logger="airflow-ecs")
    aws = stack_aws
    path = stack_settings(tmp_path, aws)
    seen = []  # what ran while each migrate task ran
    run = deploy._run_to_completion

    def migrate(ecs, s, task_definition, security_groups=None):
        seen.append((task_definition.rsplit("/", 1)[1], services_of(aws), security_groups))
        run(ecs, s, task_definition, security_groups)

    monkeypatch.setattr(deploy, "_run_to_completion", migrate)
    arns = deploy.deploy(path, {}, tmp_path / "out")
    assert {family: arn.rsplit("/", 1)[1] for family, arn in arns.items()} == {
        "airflow-migrate": "airflow-migrate:1", "airflow-scheduler": "airflow-scheduler:1",
        "airflow-webserver": "airflow-webserver:1", "airflow-worker": "airflow-worker:1"}
    assert (tmp_path / "out" / "cloudformation.json").exists()
    [(migrate_task, services, groups)] = seen
    assert (migrate_task, services) == ("airflow-migrate:1", {})  # a new stack: no services
    resources = {r["LogicalResourceId"]: r["PhysicalResourceId"]
                 for r in aws("cloudformation").list_stack_resources(
                     StackName="airflow")["StackResourceSummaries"] if r["LogicalResourceId"]}
    assert groups == [resources["MigrateSecurityGroup"]]
    assert services_of(aws) == {"airflow-scheduler": "airflow-scheduler:1",
                                "airflow-webserver": "airflow-webserver:1",
                                "airflow-worker": "airflow-worker:1"}
    log = caplog.text
    assert log.index("creating the new release but the services' task definitions") < \
        log.index("finished (exit 0)") < log.index("updating the whole release")

    # A new release: while it migrates, the services still run the last one.
    deploy.deploy(path, {"AIRFLOW_ECS_DEPLOY_IMAGE_TAG": "0.1.1"}, tmp_path / "out")
    migrate_task, services, _ = seen[1]
    assert (migrate_task, services) == ("airflow-migrate:2", {
        "airflow-scheduler": "airflow-scheduler:1", "airflow-webserver": "airflow-webserver:1",
        "airflow-worker": "airflow-worker:1"})
    assert services_of(aws) == {"airflow-scheduler": "airflow-scheduler:2",
                                "airflow-webserver": "airflow-webserver:2",
                                "airflow-worker": "airflow-worker:2"}
    worker = aws("ecs").describe_task_definition(taskDefinition="airflow-worker:2")[
        "taskDefinition"]
    assert worker["containerDefinitions"][0]["image"].endswith("/airflow-ecs/worker:0.1.1")

    # The same release again: nothing to change, nothing to migrate.
    caplog.clear()
    again = deploy.deploy(path, {"AIRFLOW_ECS_DEPLOY_IMAGE_TAG": "0.1.1"}, tmp_path / "out")
    assert "stack airflow: no changes" in caplog.text
    assert len(seen) == 2
    assert again["airflow-worker"].endswith("task-definition/airflow-worker:2")
    assert len(aws("ecs").list_tasks(cluster="airflow",
                                     startedBy="airflow-ecs-deploy")["taskArns"]) == 2


def test_a_change_set_without_changes_is_success(tmp_path, stack_aws, caplog):
    caplog.set_level("INFO", logger="airflow-ecs")
    aws = stack_aws
    rendered = render.render(stack_settings(tmp_path, aws), {})
    deploy.deploy_stack(rendered, aws, run_migrate=False)
    assert services_of(aws)["airflow-worker"] == "airflow-worker:1"
    cf = aws("cloudformation")
    assert deploy._change_stack(cf, rendered.settings, rendered.stack, True, "again") is False
    assert "stack airflow: no changes (again)" in caplog.text


STACK_ID = "arn:aws:cloudformation:eu-west-1:123456789012:stack/airflow/0123"
CHANGE_SET = "arn:aws:cloudformation:eu-west-1:123456789012:changeSet/airflow-ecs-0/0123"


def event(logical, kind, status, token, reason=None, second=0):
    import datetime

    return {"StackId": STACK_ID, "EventId": f"{logical}-{status}", "StackName": "airflow",
            "LogicalResourceId": logical, "ResourceType": kind, "ResourceStatus": status,
            "Timestamp": datetime.datetime(2026, 1, 1, 0, 0, second),
            "ClientRequestToken": token,
            **({"ResourceStatusReason": reason} if reason else {})}


def stubbed_change(monkeypatch, responses):
    """_change_stack on a stubbed CloudFormation client; the token it passes is fixed."""
    import uuid

    monkeypatch.setattr(uuid, "uuid4", lambda: uuid.UUID(int=0))
    token = f"airflow-ecs-{uuid.UUID(int=0).hex}"
    cf = boto3.client("cloudformation", region_name=REGION)
    settings = {**EXAMPLE, "cloudformation_stack": "airflow", "poll_seconds": 1,
                "stack_timeout": 1, **{k: "" for k in ("vpc_id", "certificate_arn",
                                                       "redis_security_group",
                                                       "database_security_group",
                                                       "database_instance",
                                                       "alarm_topic_arn")},
                "public_subnets": [], "load_balancer_cidr": "0.0.0.0/0",
                "database_connections_threshold": 0}
    with Stubber(cf) as stub:
        for operation, reply in responses(token):
            stub.add_response(operation, reply)
        try:
            return deploy._change_stack(cf, settings, {"Resources": {}}, True, "the release")
        finally:
            stub.assert_no_pending_responses()


def test_a_failed_update_names_the_failing_resource_its_type_and_reason(monkeypatch):
    reason = ("Error occurred during operation 'ECS Deployment Circuit Breaker was triggered'.")

    def responses(token):
        yield "create_change_set", {"Id": CHANGE_SET, "StackId": STACK_ID}
        yield "describe_change_set", {"Status": "CREATE_COMPLETE", "ChangeSetName": "x",
                                      "StackName": "airflow"}
        yield "execute_change_set", {}
        failed = {"Stacks": [{"StackName": "airflow", "StackId": STACK_ID,
                              "CreationTime": "2026-01-01T00:00:00Z",
                              "StackStatus": "UPDATE_ROLLBACK_COMPLETE"}]}
        yield "describe_stacks", failed  # the waiter
        yield "describe_stacks", failed  # the status reported
        yield "describe_stack_events", {"StackEvents": [  # newest first
            event("airflow", "AWS::CloudFormation::Stack", "UPDATE_ROLLBACK_COMPLETE", token,
                  second=9),
            event("WorkerService", "AWS::ECS::Service", "UPDATE_FAILED", token,
                  "Resource update cancelled", second=5),
            event("WebserverService", "AWS::ECS::Service", "UPDATE_FAILED", token, reason,
                  second=4),
            event("WebserverTaskDefinition", "AWS::ECS::TaskDefinition", "UPDATE_COMPLETE",
                  token, second=2),
            event("airflow", "AWS::CloudFormation::Stack", "UPDATE_IN_PROGRESS", token,
                  "User Initiated", second=1),
            # An earlier deployment's failure is not this one's.
            event("SchedulerService", "AWS::ECS::Service", "UPDATE_FAILED", "airflow-ecs-old",
                  "an old reason"),
        ]}

    with pytest.raises(DeployError) as caught:
        stubbed_change(monkeypatch, responses)
    message = str(caught.value)
    assert message.index("WebserverService (AWS::ECS::Service): UPDATE_FAILED: " + reason) < \
        message.index("WorkerService (AWS::ECS::Service): UPDATE_FAILED: Resource update "
                      "cancelled")
    assert "stack airflow: ended UPDATE_ROLLBACK_COMPLETE" in message
    assert "SchedulerService" not in message and "UPDATE_COMPLETE:" not in message
    assert caught.value.exit_code == 84


@pytest.mark.parametrize("reason,outcome", [
    ("The submitted information didn't contain changes. Submit different information to "
     "create a change set.", False),
    ("Template format error: Unresolved resource dependencies [Nope] in the Resources block",
     "the change set is FAILED: Template format error: Unresolved resource dependencies"),
])
def test_a_failed_change_set_is_no_change_or_an_error_with_its_reason(monkeypatch, reason,
                                                                       outcome):
    def responses(token):
        yield "create_change_set", {"Id": CHANGE_SET, "StackId": STACK_ID}
        failed = {"Status": "FAILED", "StatusReason": reason, "ChangeSetName": "x",
                  "StackName": "airflow"}
        yield "describe_change_set", failed  # the waiter
        yield "describe_change_set", failed  # why
        if outcome is False:
            yield "delete_change_set", {}

    if outcome is False:
        assert stubbed_change(monkeypatch, responses) is False
    else:
        with pytest.raises(DeployError) as caught:
            stubbed_change(monkeypatch, responses)
        assert outcome in str(caught.value)


def test_a_stack_whose_creation_failed_is_not_updated(tmp_path, stack_aws):
    aws = stack_aws
    rendered = render.render(stack_settings(tmp_path, aws), {})
    cf = boto3.client("cloudformation", region_name=REGION)
    with Stubber(cf) as stub:
        stub.add_response("describe_stacks", {"Stacks": [{
            "StackName": "airflow", "StackId": STACK_ID, "CreationTime": "2026-01-01T00:00:00Z",
            "StackStatus": "ROLLBACK_COMPLETE"}]})
        with pytest.raises(DeployError) as caught:
            deploy.deploy_stack(rendered, lambda service: cf if service == "cloudformation"
                                else aws(service))
    assert "stack airflow is ROLLBACK_COMPLETE" in str(caught.value)
    assert "aws cloudformation delete-stack --stack-name airflow" in str(caught.value)


def test_cli_deploy_creates_the_stack_against_the_endpoint_url(tmp_path, aws_server,
                                                               monkeypatch):
    aws = aws_server
    monkeypatch.setenv("AWS_ENDPOINT_URL", aws.url)
    ec2 = aws("ec2")
    vpc = ec2.describe_subnets(SubnetIds=[aws.subnet])["Subnets"][0]["VpcId"]
    public = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.8.{i}.0/24",
                                AvailabilityZone=f"{REGION}{zone}")["Subnet"]["SubnetId"]
              for i, zone in ((2, "a"), (3, "b"))]
    certificate = aws("acm").request_certificate(DomainName="airflow.example.com")[
        "CertificateArn"]
    path = settings_file(tmp_path, aws, cloudformation_stack="airflow", vpc_id=vpc,
                         public_subnets=public, certificate_arn=certificate, cluster="stacked")
    assert main(["deploy", "--settings", str(path), "--out", str(tmp_path / "o"),
                 "--skip-migrate"]) == 0
    [stack] = aws("cloudformation").describe_stacks(StackName="airflow")["Stacks"]
    assert stack["StackStatus"] == "CREATE_COMPLETE"
    assert len(aws("ecs").list_services(cluster="stacked")["serviceArns"]) == 3
    assert (tmp_path / "o" / "cloudformation.json").exists()


def test_the_written_template_deploys_with_aws_cloudformation_deploy(tmp_path, aws_server):
    """By hand, as docs/deploy.md shows it: the file as written, no S3 bucket."""
    import os
    import subprocess
    import sys

    aws = aws_server
    ec2 = aws("ec2")
    vpc = ec2.describe_subnets(SubnetIds=[aws.subnet])["Subnets"][0]["VpcId"]
    public = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.8.{i}.0/24",
                                AvailabilityZone=f"{REGION}{zone}")["Subnet"]["SubnetId"]
              for i, zone in ((4, "a"), (5, "b"))]
    certificate = aws("acm").request_certificate(DomainName="airflow.example.com")[
        "CertificateArn"]
    out = tmp_path / "out"
    render.render_all(settings_file(tmp_path, aws, cluster="by-hand"), {}, out)
    env = {**os.environ, "AWS_DEFAULT_REGION": REGION, "AWS_ACCESS_KEY_ID": "x",
           "AWS_SECRET_ACCESS_KEY": "y"}
    result = subprocess.run(
        [str(Path(sys.executable).parent / "aws"), "--endpoint-url", aws.url,
         "cloudformation", "deploy", "--stack-name", "by-hand",
         "--template-file", str(out / "cloudformation.json"),
         "--capabilities", "CAPABILITY_NAMED_IAM", "--parameter-overrides", f"VpcId={vpc}",
         f"PublicSubnetIds={','.join(public)}", f"CertificateArn={certificate}"],
        env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    [stack] = aws("cloudformation").describe_stacks(StackName="by-hand")["Stacks"]
    assert stack["StackStatus"] == "CREATE_COMPLETE"
    assert len(aws("ecs").list_services(cluster="by-hand")["serviceArns"]) == 3


WORKER_SETS = [{"name": "default", "queues": ["default"], "min_count": 2, "max_count": 8},
               {"name": "spot", "queues": ["batch"], "capacity": {"on_demand_base": 1,
                                                                  "spot_weight": 2}}]


def test_deploy_creates_and_updates_a_service_and_scaling_per_worker_set(tmp_path, aws):
    path = settings_file(tmp_path, aws, worker_sets=WORKER_SETS)
    ecs = aws("ecs")
    with pytest.raises(DeployError) as caught:
        deploy.deploy(path, {}, tmp_path / "out")
    assert str(caught.value) == (
        "cluster airflow lacks the capacity providers FARGATE, FARGATE_SPOT that worker_sets "
        "use; add them (the list replaces the cluster's): aws ecs "
        "put-cluster-capacity-providers --cluster airflow --capacity-providers FARGATE "
        "FARGATE_SPOT --default-capacity-provider-strategy capacityProvider=FARGATE,weight=1")
    # Refused before anything was registered or run.
    assert ecs.list_task_definitions()["taskDefinitionArns"] == []
    ecs.put_cluster_capacity_providers(
        cluster="airflow", capacityProviders=["FARGATE", "FARGATE_SPOT"],
        defaultCapacityProviderStrategy=[{"capacityProvider": "FARGATE", "weight": 1}])
    arns = deploy.deploy(path, {}, tmp_path / "out")
    assert sorted(arns) == ["airflow-migrate", "airflow-scheduler", "airflow-webserver",
                            "airflow-worker-default", "airflow-worker-spot"]
    names = ["airflow-worker-default", "airflow-worker-spot"]
    services = {s["serviceName"]: s for s in ecs.describe_services(
        cluster="airflow", services=names)["services"]}
    assert sorted(services) == names
    # (moto keeps no capacityProviderStrategy: the file deploy sent is read instead.)
    sent = json.loads((tmp_path / "out" / "services" / "worker-spot.json").read_text())
    assert sent["capacityProviderStrategy"] == [
        {"capacityProvider": "FARGATE", "base": 1, "weight": 0},
        {"capacityProvider": "FARGATE_SPOT", "weight": 2}]
    scaling = aws("application-autoscaling")
    targets = {t["ResourceId"]: (t["MinCapacity"], t["MaxCapacity"]) for t in
               scaling.describe_scalable_targets(ServiceNamespace="ecs")["ScalableTargets"]}
    assert targets == {"service/airflow/airflow-worker-default": (2, 8),
                       "service/airflow/airflow-worker-spot": (1, 10)}
    policies = scaling.describe_scaling_policies(ServiceNamespace="ecs")["ScalingPolicies"]
    assert sorted(d["Value"] for p in policies for d in p[
        "TargetTrackingScalingPolicyConfiguration"]["CustomizedMetricSpecification"][
        "Dimensions"] if d["Name"] == "Service") == names
    # A new release updates both sets' services in place.
    deploy.deploy(path, {"AIRFLOW_ECS_DEPLOY_IMAGE_TAG": "0.1.1"}, tmp_path / "out")
    services = ecs.describe_services(cluster="airflow", services=names)["services"]
    assert {s["taskDefinition"].rsplit("/", 1)[1] for s in services} == {
        "airflow-worker-default:2", "airflow-worker-spot:2"}
