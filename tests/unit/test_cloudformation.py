"""build/task-definitions/cloudformation.json: cfn-lint finds nothing in the template of
any shipped settings file; the stack holds the rendered task definitions, services,
scaling and IAM policies themselves (turned back into the API's form, they equal the
rendered files); its security groups allow exactly the connections the roles open; and
a settings mistake the stack would trip on fails at render time."""

import json
import re
import time
from pathlib import Path

import pytest
from cfnlint.api import ManualArgs, lint

from entrypoint.errors import ConfigError
from entrypoint.probe import health
from entrypoint.tools.ecs import cloudformation, render

ROOT = Path(__file__).resolve().parents[2]
SETTINGS_FILES = sorted((ROOT / "task-definitions" / "settings").glob("*.json"))
EXAMPLE = ROOT / "task-definitions" / "settings" / "example.json"
BASE = json.loads(EXAMPLE.read_text())
STACK = {"cloudformation_stack": "airflow", "vpc_id": "vpc-0a1b2c3d4e5f60000",
         "public_subnets": ["subnet-0a1b2c3d4e5f60004", "subnet-0a1b2c3d4e5f60005"],
         "certificate_arn": "arn:aws:acm:eu-west-1:123456789012:certificate/0123abcd"}
EVERYTHING = {**BASE, **STACK, "dags_source": "git",
              "dags_git_url": "ssh://git@git.example.com:2222/acme/dags.git",
              "dags_git_token_parameter": "", "redis_security_group": "sg-0a1b2c3d4e5f60006",
              "database_security_group": "sg-0a1b2c3d4e5f60007",
              "database_instance": "airflow-db", "database_connections_threshold": 300,
              "alarm_topic_arn": "arn:aws:sns:eu-west-1:123456789012:airflow-alarms",
              "load_balancer_cidr": "203.0.113.0/24", "log_retention_days": 90,
              "security_groups": []}
CHINA = {**BASE, "region": "cn-north-1", "target_group_arn": ""}


def write_settings(tmp_path, data) -> Path:
    path = tmp_path / "settings.json"
    path.write_text(json.dumps(data))
    return path


def stack_of(tmp_path, data, env=None) -> render.Rendered:
    return render.render(write_settings(tmp_path, data), env or {})


@pytest.mark.parametrize("path", SETTINGS_FILES, ids=lambda p: p.name)
def test_cfn_lint_finds_nothing_in_the_template_of_each_settings_file(path):
    rendered = render.render(path, {})
    matches = lint(json.dumps(rendered.stack), config=ManualArgs(
        regions=[rendered.settings["region"]], include_checks=["I"]))
    assert [f"{m.rule.id} {m.message} (at {'/'.join(map(str, m.path))})"
            for m in matches] == []


@pytest.mark.parametrize("data", [EVERYTHING, CHINA], ids=["every-stack-setting", "aws-cn"])
def test_cfn_lint_finds_nothing_with_every_stack_setting_or_another_partition(tmp_path, data):
    rendered = stack_of(tmp_path, data)
    assert len(cloudformation.body(rendered.stack).encode()) <= cloudformation.BODY_LIMIT
    matches = lint(json.dumps(rendered.stack), config=ManualArgs(
        regions=[data["region"]], include_checks=["I"]))
    assert [f"{m.rule.id} {m.message}" for m in matches] == []


def test_render_writes_the_template_and_the_same_settings_give_the_same_bytes(tmp_path):
    first = render.render_all(EXAMPLE, {}, tmp_path / "a")
    second = render.render_all(EXAMPLE, {}, tmp_path / "b")
    [a] = [p for p in first if p.name == "cloudformation.json"]
    [b] = [p for p in second if p.name == "cloudformation.json"]
    assert a.read_bytes() == b.read_bytes()
    # Sent as it is, or deployed with `aws cloudformation deploy --template-file`.
    assert len(a.read_bytes()) <= cloudformation.BODY_LIMIT
    assert json.loads(a.read_text()) == render.render(EXAMPLE, {}).stack
    other = render.render(EXAMPLE, {"AIRFLOW_ECS_DEPLOY_IMAGE_TAG": "0.1.1"}).stack
    assert other != json.loads(a.read_text())


# --- the stack holds the rendered documents -------------------------------------------------

def api_form(node, free=False):
    """A CloudFormation ECS property back in the ECS API's spelling."""
    if isinstance(node, dict):
        return {(k if free else k[:1].lower() + k[1:]):
                (v if k in ("Options", "DockerLabels") else api_form(v)) for k, v in node.items()}
    if isinstance(node, list):
        return [api_form(v) for v in node]
    return node


def resolve(node, stack, s):
    """Every reference replaced by the value the stack's resource has: names and ARNs
    that the settings give it."""
    resources = stack["Resources"]
    partition, region, account = s["partition"], s["region"], s["account_id"]

    def value(logical, attribute=None):
        props = resources[logical]["Properties"]
        kind = resources[logical]["Type"]
        if kind == "AWS::IAM::Role":
            return f"arn:{partition}:iam::{account}:role/{props['RoleName']}"
        if kind == "AWS::Logs::LogGroup":
            name = props["LogGroupName"]
            return f"arn:{partition}:logs:{region}:{account}:log-group:{name}:*" \
                if attribute == "Arn" else name
        if kind == "AWS::ECS::Cluster":
            return props["ClusterName"]
        if kind == "AWS::ECS::TaskDefinition":
            return props["Family"]
        if kind == "AWS::ElasticLoadBalancingV2::TargetGroup":
            return s["target_group_arn"]
        raise AssertionError(f"no value for {logical}")

    if isinstance(node, dict):
        if set(node) == {"Ref"}:
            return value(node["Ref"])
        if set(node) == {"Fn::GetAtt"}:
            return value(*node["Fn::GetAtt"])
        if set(node) == {"Fn::Sub"}:
            pseudo = {"AWS::Partition": partition, "AWS::Region": region,
                      "AWS::AccountId": account}
            return re.sub(r"\$\{([^}]+)\}", lambda m: pseudo.get(m[1]) or value(m[1]),
                          node["Fn::Sub"])
        return {k: resolve(v, stack, s) for k, v in node.items()}
    if isinstance(node, list):
        return [resolve(v, stack, s) for v in node]
    return node


@pytest.mark.parametrize("path", SETTINGS_FILES, ids=lambda p: p.name)
def test_task_definitions_and_policies_are_the_rendered_ones(path):
    rendered = render.render(path, {})
    stack, s, docs = rendered.stack, rendered.settings, rendered.documents
    resources = stack["Resources"]
    stems = cloudformation.task_definition_stems(s, docs)
    assert sorted(set(stems.values())) == ["migrate", "scheduler", "webserver", "worker"]
    for stem in stems:
        props = resources[cloudformation.task_definition_id(stem)]["Properties"]
        assert api_form(resolve(props, stack, s)) == docs[f"{stem}.json"], stem
    for role in ("scheduler", "webserver", "worker", "migrate"):
        task_role = resources[f"{role.capitalize()}TaskRole"]["Properties"]
        assert task_role["RoleName"] == s[f"{role}_task_role_arn"].rsplit("/", 1)[1]
        assert task_role["AssumeRolePolicyDocument"] == docs["iam/ecs-tasks-trust-policy.json"]
        [policy] = task_role["Policies"]
        assert resolve(policy["PolicyDocument"], stack, s) == \
            docs[f"iam/task-role-policy-{role}.json"], role
    execution = resources["ExecutionRole"]["Properties"]
    assert resolve(execution["Policies"][0]["PolicyDocument"], stack, s) == \
        docs["iam/execution-role-policy.json"]
    # What the stack creates is referred to, not named: it exists before it is used.
    worker = resources[cloudformation.task_definition_id(s["worker_sets"][0].stem)][
        "Properties"]
    assert worker["TaskRoleArn"] == {"Fn::GetAtt": ["WorkerTaskRole", "Arn"]}
    assert worker["ExecutionRoleArn"] == {"Fn::GetAtt": ["ExecutionRole", "Arn"]}
    assert worker["ContainerDefinitions"][0]["LogConfiguration"]["Options"][
        "awslogs-group"] == {"Ref": "LogGroup"}
    pull = execution["Policies"][0]["PolicyDocument"]["Statement"]
    assert next(st for st in pull if st["Sid"] == "WriteContainerLogs")["Resource"] == {
        "Fn::GetAtt": ["LogGroup", "Arn"]}


def test_services_are_the_rendered_ones_on_the_stacks_network(tmp_path):
    rendered = render.render(EXAMPLE, {})
    stack, s, docs = rendered.stack, rendered.settings, rendered.documents
    resources = stack["Resources"]
    for role in ("scheduler", "webserver", "worker"):
        service = resources[f"{role.capitalize()}Service"]
        props = service["Properties"]
        assert props["NetworkConfiguration"]["AwsvpcConfiguration"].pop("SecurityGroups") == [
            {"Ref": f"{role.capitalize()}SecurityGroup"}]
        assert props["NetworkConfiguration"]["AwsvpcConfiguration"]["Subnets"] == {
            "Ref": "SubnetIds"}
        props["NetworkConfiguration"]["AwsvpcConfiguration"]["Subnets"] = s["subnets"]
        props["TaskDefinition"] = resolve(props["TaskDefinition"], stack, s)
        expected = json.loads(json.dumps(docs[f"services/{role}.json"]))
        del expected["networkConfiguration"]["awsvpcConfiguration"]["securityGroups"]
        if role == "worker":
            # The autoscaler owns the worker count: an update must not reset it.
            assert "DesiredCount" not in props
            del expected["desiredCount"]
        assert api_form(resolve(props, stack, s)) == expected, role
    assert resources["WebserverService"]["DependsOn"] == "HttpsListener"
    assert resources["WebserverService"]["Properties"]["LoadBalancers"][0][
        "TargetGroupArn"] == {"Ref": "TargetGroup"}


def test_without_a_target_group_setting_the_webserver_still_gets_the_stacks(tmp_path):
    rendered = stack_of(tmp_path, {**BASE, "target_group_arn": ""})
    assert rendered.documents["services/webserver.json"]["loadBalancers"] == []
    assert rendered.stack["Resources"]["WebserverService"]["Properties"]["LoadBalancers"] == [
        {"TargetGroupArn": {"Ref": "TargetGroup"}, "ContainerName": "webserver",
         "ContainerPort": 8080}]
    assert "placeholder" not in json.dumps(rendered.stack)
    assert cloudformation.TARGET_GROUP_PLACEHOLDER not in json.dumps(rendered.stack)


def test_worker_scaling_is_the_rendered_one_on_the_stacks_service():
    rendered = render.render(EXAMPLE, {})
    resources = rendered.stack["Resources"]
    target = resources["WorkerScalableTarget"]["Properties"]
    rendered_target = rendered.documents["scaling/worker-target.json"]
    assert (target["MinCapacity"], target["MaxCapacity"]) == (
        rendered_target["MinCapacity"], rendered_target["MaxCapacity"])
    assert target["ResourceId"] == {"Fn::Join": ["/", ["service", {"Ref": "Cluster"},
                                                       {"Fn::GetAtt": ["WorkerService",
                                                                       "Name"]}]]}
    policy = resources["WorkerScalingPolicy"]["Properties"]
    assert policy["ScalingTargetId"] == {"Ref": "WorkerScalableTarget"}
    rendered_policy = rendered.documents["scaling/worker-policy.json"]
    assert policy["TargetTrackingScalingPolicyConfiguration"] == \
        rendered_policy["TargetTrackingScalingPolicyConfiguration"]


# --- security groups --------------------------------------------------------------------------

def rules(stack):
    """(source, destination, port) of every rule, sides named by logical id, parameter or
    CIDR; a rule that depends on a condition carries it."""
    resources = stack["Resources"]
    out = set()

    def side(value):
        if isinstance(value, dict) and "Ref" in value:
            return value["Ref"]
        if isinstance(value, dict) and "Fn::If" in value:
            condition, yes, no = value["Fn::If"]
            return f"{condition} ? {side(yes)} : {side(no)}"
        return value

    for logical, r in resources.items():
        props = r.get("Properties", {})
        if r["Type"] == "AWS::EC2::SecurityGroup":
            assert "SecurityGroupEgress" in props, f"{logical} would let everything out"
            for rule in props.get("SecurityGroupIngress", []):
                out.add((side(rule.get("CidrIp") or rule.get("SourceSecurityGroupId")),
                         logical, rule["FromPort"]))
            for rule in props["SecurityGroupEgress"]:
                out.add((logical, side(rule.get("CidrIp") or
                                       rule.get("DestinationSecurityGroupId")),
                         rule["FromPort"]))
        elif r["Type"] == "AWS::EC2::SecurityGroupIngress":
            assert props["FromPort"] == props["ToPort"], logical
            source = side(props["SourceSecurityGroupId"])
            out.add((source, side(props["GroupId"]) + (
                f" if {r['Condition']}" if "Condition" in r else ""), props["FromPort"]))
        elif r["Type"] == "AWS::EC2::SecurityGroupEgress":
            assert props["FromPort"] == props["ToPort"], logical
            destination = props.get("DestinationSecurityGroupId")
            if isinstance(destination, dict) and "Fn::If" in destination:
                condition, group, _ = destination["Fn::If"]
                assert props["CidrIp"] == {"Fn::If": [condition, {"Ref": "AWS::NoValue"},
                                                      "0.0.0.0/0"]}
                destination = f"{group['Ref']}, else 0.0.0.0/0"
            out.add((side(props["GroupId"]), side(destination), props["FromPort"]))
    return out


def test_security_groups_allow_exactly_the_connections_the_roles_open():
    stack = render.render(EXAMPLE, {}).stack
    web, worker, scheduler, migrate, lb = (f"{r}SecurityGroup" for r in (
        "Webserver", "Worker", "Scheduler", "Migrate", "LoadBalancer"))
    redis = "RedisSecurityGroupId, else 0.0.0.0/0"
    database = "DatabaseSecurityGroupId, else 0.0.0.0/0"
    assert rules(stack) == {
        ("LoadBalancerIngressCidr", lb, 443),
        (lb, web, 8080),  # the load balancer group's egress and the webserver group's ingress
        # The workers reach the execution API through Service Connect.
        (worker, web, 8080),
        # The webserver reads running tasks' logs from the worker's and the triggerer's
        # log servers (the triggerer runs in the scheduler task).
        (web, worker, 8793), (web, scheduler, 8794),
        (web, "0.0.0.0/0", 443), (worker, "0.0.0.0/0", 443), (scheduler, "0.0.0.0/0", 443),
        (migrate, "0.0.0.0/0", 443),
        # The webserver and the migration use no broker.
        (scheduler, redis, 6379), (worker, redis, 6379),
        (scheduler, database, 5432), (worker, database, 5432), (web, database, 5432),
        (migrate, database, 5432),
        (scheduler, "RedisSecurityGroupId if HasRedisSecurityGroup", 6379),
        (worker, "RedisSecurityGroupId if HasRedisSecurityGroup", 6379),
        (scheduler, "DatabaseSecurityGroupId if HasDatabaseSecurityGroup", 5432),
        (worker, "DatabaseSecurityGroupId if HasDatabaseSecurityGroup", 5432),
        (web, "DatabaseSecurityGroupId if HasDatabaseSecurityGroup", 5432),
        (migrate, "DatabaseSecurityGroupId if HasDatabaseSecurityGroup", 5432),
    }


def test_git_over_ssh_lets_the_roles_that_sync_dags_out_on_its_port(tmp_path):
    stack = stack_of(tmp_path, EVERYTHING).stack
    git = {(src, port) for src, dst, port in rules(stack)
           if dst == "0.0.0.0/0" and port not in (443,)}
    assert git == {("SchedulerSecurityGroup", 2222), ("WorkerSecurityGroup", 2222)}
    scp = {**EVERYTHING, "dags_git_url": "git@git.example.com:acme/dags.git"}
    git = {(src, port) for src, dst, port in rules(stack_of(tmp_path, scp).stack)
           if dst == "0.0.0.0/0" and port != 443}
    assert git == {("SchedulerSecurityGroup", 22), ("WorkerSecurityGroup", 22)}
    https = {**EVERYTHING, "dags_git_url": "https://git.example.com/acme/dags.git"}
    assert {port for _, dst, port in rules(stack_of(tmp_path, https).stack)
            if dst == "0.0.0.0/0"} == {443}


def test_the_outputs_name_the_groups_the_existing_redis_and_database_must_let_in():
    stack = render.render(EXAMPLE, {}).stack
    outputs = stack["Outputs"]
    assert outputs["RedisClientSecurityGroups"]["Value"] == {"Fn::Join": [",", [
        {"Ref": "SchedulerSecurityGroup"}, {"Ref": "WorkerSecurityGroup"}]]}
    assert outputs["DatabaseClientSecurityGroups"]["Value"] == {"Fn::Join": [",", [
        {"Ref": "MigrateSecurityGroup"}, {"Ref": "SchedulerSecurityGroup"},
        {"Ref": "WebserverSecurityGroup"}, {"Ref": "WorkerSecurityGroup"}]]}
    assert outputs["MigrateTaskDefinition"]["Value"] == {"Ref": "MigrateTaskDefinition"}


# --- load balancer, alarms, parameters --------------------------------------------------------

def test_the_target_group_asks_the_path_the_health_probe_asks(monkeypatch):
    asked = []
    monkeypatch.setattr(health, "http_ok", lambda role, url, timeout=5.0: asked.append(url)
                        or health.HealthResult(True, "ok"))
    health._probe_other("webserver", {"AIRFLOW_ECS_API_PORT": "8080"}, time.monotonic() + 10)
    assert asked == [f"http://127.0.0.1:8080{cloudformation.WEBSERVER_HEALTH_PATH}"]
    resources = render.render(EXAMPLE, {}).stack["Resources"]
    group = resources["TargetGroup"]["Properties"]
    assert (group["HealthCheckPath"], group["Port"], group["TargetType"]) == (
        cloudformation.WEBSERVER_HEALTH_PATH, 8080, "ip")
    listener = resources["HttpsListener"]["Properties"]
    assert (listener["Protocol"], listener["Port"]) == ("HTTPS", 443)
    assert listener["Certificates"] == [{"CertificateArn": {"Ref": "CertificateArn"}}]
    assert resources["LoadBalancer"]["Properties"]["Subnets"] == {"Ref": "PublicSubnetIds"}


def test_alarms_on_unhealthy_webservers_a_missing_backlog_and_database_connections():
    rendered = render.render(EXAMPLE, {})
    resources = rendered.stack["Resources"]
    alarms = {k: v for k, v in resources.items() if v["Type"] == "AWS::CloudWatch::Alarm"}
    assert sorted(alarms) == ["DatabaseConnectionsAlarm", "UnhealthyWebserverAlarm",
                              "WorkerMetricMissingAlarm"]
    unhealthy = alarms["UnhealthyWebserverAlarm"]["Properties"]
    assert (unhealthy["MetricName"], unhealthy["ComparisonOperator"], unhealthy["Threshold"]) \
        == ("UnHealthyHostCount", "GreaterThanThreshold", 0)
    missing = alarms["WorkerMetricMissingAlarm"]["Properties"]
    metric = rendered.documents["scaling/worker-policy.json"][
        "TargetTrackingScalingPolicyConfiguration"]["CustomizedMetricSpecification"]
    assert (missing["Namespace"], missing["MetricName"], missing["Dimensions"]) == (
        metric["Namespace"], metric["MetricName"], metric["Dimensions"])
    assert (missing["Statistic"], missing["TreatMissingData"]) == ("SampleCount", "breaching")
    database = alarms["DatabaseConnectionsAlarm"]
    assert database["Condition"] == "HasDatabaseInstance"
    assert database["Properties"]["Threshold"] == {"Ref": "DatabaseConnectionsThreshold"}


def test_parameters_default_to_the_settings(tmp_path):
    parameters = stack_of(tmp_path, EVERYTHING).stack["Parameters"]
    assert {k: v.get("Default") for k, v in parameters.items()} == {
        "VpcId": "vpc-0a1b2c3d4e5f60000",
        "SubnetIds": "subnet-0a1b2c3d4e5f60001,subnet-0a1b2c3d4e5f60002",
        "PublicSubnetIds": "subnet-0a1b2c3d4e5f60004,subnet-0a1b2c3d4e5f60005",
        "CertificateArn": STACK["certificate_arn"],
        "LoadBalancerIngressCidr": "203.0.113.0/24",
        "RedisSecurityGroupId": "sg-0a1b2c3d4e5f60006",
        "DatabaseSecurityGroupId": "sg-0a1b2c3d4e5f60007",
        "DatabaseInstanceIdentifier": "airflow-db", "DatabaseConnectionsThreshold": "300",
        "AlarmTopicArn": EVERYTHING["alarm_topic_arn"]}
    # Unset, what the stack can't do without has no default: CloudFormation asks for it.
    parameters = render.render(EXAMPLE, {}).stack["Parameters"]
    assert {k for k, v in parameters.items() if "Default" not in v} == {
        "VpcId", "PublicSubnetIds", "CertificateArn"}
    assert re.fullmatch(parameters["CertificateArn"]["AllowedPattern"], STACK["certificate_arn"])
    assert not re.fullmatch(parameters["CertificateArn"]["AllowedPattern"],
                            STACK["certificate_arn"].replace("eu-west-1", "us-east-1"))
    log_group = stack_of(tmp_path, EVERYTHING).stack["Resources"]["LogGroup"]["Properties"]
    assert (log_group["LogGroupName"], log_group["RetentionInDays"]) == ("/ecs/airflow", 90)


@pytest.mark.parametrize("edit,expected", [
    ({"cloudformation_stack": "airflow"},
     ["$.vpc_id (default): '' is required with cloudformation_stack 'airflow'",
      "$.certificate_arn (default): '' is required with cloudformation_stack 'airflow'",
      "$.public_subnets (default): [] must name two subnets or more"]),
    ({**STACK, "public_subnets": ["subnet-0a1b2c3d4e5f60004"]},
     ["$.public_subnets: ['subnet-0a1b2c3d4e5f60004'] must name two subnets or more"]),
    ({"log_retention_days": 10}, ["$.log_retention_days: 10 must be one of CloudWatch Logs'"]),
    ({"load_balancer_cidr": "10.0.0.1/8"}, ["$.load_balancer_cidr: '10.0.0.1/8' must be an "
                                            "IPv4 network"]),
    ({"database_instance": "airflow-db"},
     ["$.database_connections_threshold (default): 0 must be at least 1 with "
      "database_instance"]),
    ({"redis_security_group": "redis"}, ["$.redis_security_group: 'redis' must be empty or "
                                         "a security group id"]),
    ({"certificate_arn": "arn:aws:acm:us-east-1:123456789012:certificate/x"},
     ["$.certificate_arn: 'arn:aws:acm:us-east-1:123456789012:certificate/x' must be an ARN "
      "of the region's partition: arn:aws:acm:eu-west-1:..."]),
    ({"security_groups": []}, ["$.security_groups: [] must name at least one security group "
                               "(or set cloudformation_stack"]),
])
def test_a_stack_setting_mistake_fails_at_render_naming_the_file_path_and_fix(
        tmp_path, edit, expected):
    path = write_settings(tmp_path, {**BASE, **edit})
    with pytest.raises(ConfigError) as caught:
        render.render(path, {})
    problems = caught.value.problems
    assert len(problems) == len(expected), problems
    for problem, start in zip(problems, expected, strict=True):
        assert problem.startswith(f"{path}: {start}"), problems


def test_a_template_set_the_stack_cant_hold_fails_at_render(tmp_path):
    import shutil

    templates = tmp_path / "templates"
    shutil.copytree(ROOT / "task-definitions", templates)
    shutil.copy(templates / "migrate.json", templates / "flower.json")
    doc = json.loads((templates / "flower.json").read_text())
    doc["family"] = "${name}-flower"
    (templates / "flower.json").write_text(json.dumps(doc))
    with pytest.raises(ConfigError) as caught:
        render.render(EXAMPLE, {}, templates)
    assert caught.value.problems == [
        "cloudformation.json: flower.json: the stack has task roles for scheduler, webserver, "
        "worker, migrate only: name the task definition template after one of them"]


# --- the stack while the migration runs -------------------------------------------------------

def test_before_the_migration_a_new_stack_has_no_services_and_nothing_that_needs_them():
    stack = render.render(EXAMPLE, {}).stack
    before = cloudformation.before_migration(stack, {})
    gone = set(stack["Resources"]) - set(before["Resources"])
    assert gone == {"SchedulerService", "WebserverService", "WorkerService",
                    "WorkerScalableTarget", "WorkerScalingPolicy"}
    assert "MigrateTaskDefinition" in before["Resources"]
    assert not any(set(cloudformation.references(v)) & gone
                   for part in ("Resources", "Outputs") for v in before[part].values())
    assert stack["Resources"]["WorkerService"]["Type"] == "AWS::ECS::Service"  # not edited


def test_before_the_migration_existing_services_stay_on_the_task_definitions_they_run():
    stack = render.render(EXAMPLE, {}).stack
    running = {f"{r}Service": f"arn:aws:ecs:eu-west-1:123456789012:task-definition/"
                              f"airflow-{r.lower()}:7" for r in ("Scheduler", "Webserver",
                                                                 "Worker")}
    before = cloudformation.before_migration(stack, running)
    assert set(before["Resources"]) == set(stack["Resources"])
    for logical, arn in running.items():
        assert before["Resources"][logical]["Properties"]["TaskDefinition"] == arn
        props = dict(before["Resources"][logical]["Properties"])
        del props["TaskDefinition"]
        original = dict(stack["Resources"][logical]["Properties"])
        del original["TaskDefinition"]
        assert props == original
    assert before["Resources"]["WorkerTaskDefinition"] == \
        stack["Resources"]["WorkerTaskDefinition"]
    assert stack["Resources"]["WorkerService"]["Properties"]["TaskDefinition"] == {
        "Ref": "WorkerTaskDefinition"}


def test_a_name_is_replaced_only_where_it_names_the_resource(tmp_path):
    # The log group named as the deployment: the tags, the namespace and the metric's
    # dimensions still say "airflow", only the awslogs driver's option refers to the group.
    stack = stack_of(tmp_path, {**BASE, "log_group": "airflow"}).stack
    resources = stack["Resources"]
    worker = resources["WorkerTaskDefinition"]["Properties"]
    assert worker["ContainerDefinitions"][0]["LogConfiguration"]["Options"][
        "awslogs-group"] == {"Ref": "LogGroup"}
    assert worker["Tags"] == [{"Key": "airflow-ecs:deployment", "Value": "airflow"}]
    service = resources["WorkerService"]["Properties"]
    assert service["ServiceConnectConfiguration"]["Namespace"] == "airflow"
    assert "DesiredCount" not in service
    dimensions = resources["WorkerScalingPolicy"]["Properties"][
        "TargetTrackingScalingPolicyConfiguration"]["CustomizedMetricSpecification"]["Dimensions"]
    assert dimensions == [{"Name": "Cluster", "Value": "airflow"},
                          {"Name": "Service", "Value": "airflow-worker"}]
