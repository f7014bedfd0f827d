"""The deployment as one CloudFormation stack: build/task-definitions/cloudformation.json.

Built from the documents `render` has just filled and validated, with no templates of
its own: the stack's task definitions, services, worker scaling and IAM policies are the
rendered JSON files, their keys spelt as CloudFormation spells them, and the ARNs and
names by which they point at a resource the stack creates (roles, log group, cluster,
target group, task definitions, subnets, security groups) turned into a Ref, Fn::GetAtt
or Fn::Sub of that resource. The stack gives its resources the names the settings give
them (cluster, services, families, roles, namespace), so the names the documents carry
as plain values (the metrics container's environment, the metric's dimensions) hold.
Around them the stack creates what the API path of `deploy` expects to exist: the
cluster and its Service Connect namespace, the log group, the IAM roles, one security
group per role holding only the rules that role's connections need, the load balancer,
and alarms. The VPC, its subnets, Redis and the database are the stack's parameters.

The same settings and templates give the same template, byte for byte (no time, no
random names): a stack update changes only what the settings or templates changed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from entrypoint import config, rolenames, waits
from entrypoint.errors import ConfigError
from entrypoint.tools.ecs.settings import BY_NAME, ON_DEMAND, ROLES, SPOT

FILE = "cloudformation.json"
# The largest template CloudFormation takes in a request (TemplateBody, or `aws
# cloudformation deploy --template-file` without an S3 bucket).
BODY_LIMIT = 51_200
POLICY_NAME = "airflow-ecs"
HTTPS_PORT = 443
REDIS_PORT = 6379
DATABASE_PORT = 5432
# Airflow's log servers ([logging] worker_log_server_port and trigger_log_server_port, at
# their defaults; the images EXPOSE them): the webserver reads the log of a task that is
# still running, or deferred, from the process that runs it.
LOG_SERVERS = {"worker": 8793, "triggerer": 8794}


def _webserver_health_path() -> str:
    """Where the `health` probe asks the api-server (the role table's row); the load
    balancer asks the same."""
    probe = rolenames.row("webserver").health
    if not isinstance(probe, rolenames.HttpGet):
        raise TypeError(f"the webserver's health probe is {probe!r}, not an HTTP GET: the "
                        "load balancer's health check needs a path")
    return probe.path


WEBSERVER_HEALTH_PATH = _webserver_health_path()
GIT_PORTS = {"https": 443, "http": 80, "ssh": 22, "git": 9418}
ANYWHERE = "0.0.0.0/0"
REDIS, DATABASE = "Redis", "Database"  # the groups of the existing Redis and database
LOAD_BALANCER = "LoadBalancer"
# A stand-in target group ARN for the rendering the template is built from: it becomes
# a Ref of the stack's own target group.
TARGET_GROUP_PLACEHOLDER = "targetgroup/airflow-ecs-stack/0000000000000000"
# Keys of the ECS API whose values are maps of free-form keys, kept as they are.
FREE_FORM = frozenset({"options", "dockerLabels", "driverOpts", "labels"})
# An alarm fires once its condition has held this many periods in a row: one period
# alone is a task being replaced or a publication arriving late.
ALARM_PERIODS = 5


@dataclass(frozen=True)
class Parameter:
    name: str
    setting: str
    type: str
    required: bool  # the stack can't do without a value
    constraints: tuple[tuple[str, Any], ...] = ()


PARAMETERS = (
    Parameter("VpcId", "vpc_id", "AWS::EC2::VPC::Id", True),
    Parameter("SubnetIds", "subnets", "List<AWS::EC2::Subnet::Id>", True),
    Parameter("PublicSubnetIds", "public_subnets", "List<AWS::EC2::Subnet::Id>", True),
    Parameter("CertificateArn", "certificate_arn", "String", True, (
        ("AllowedPattern", r"^arn:PARTITION:acm:REGION:\d{12}:certificate/.+$"),
        ("ConstraintDescription", "an ACM certificate ARN of the region"))),
    Parameter("LoadBalancerIngressCidr", "load_balancer_cidr", "String", True, (
        ("AllowedPattern", r"^(\d{1,3}\.){3}\d{1,3}/\d{1,2}$"),
        ("ConstraintDescription", "an IPv4 network such as 0.0.0.0/0"))),
    Parameter("RedisSecurityGroupId", "redis_security_group", "String", False, (
        ("AllowedPattern", r"^(sg-[0-9a-f]{8,17})?$"),
        ("ConstraintDescription", "empty or a security group id"))),
    Parameter("DatabaseSecurityGroupId", "database_security_group", "String", False, (
        ("AllowedPattern", r"^(sg-[0-9a-f]{8,17})?$"),
        ("ConstraintDescription", "empty or a security group id"))),
    Parameter("DatabaseInstanceIdentifier", "database_instance", "String", False, (
        ("AllowedPattern", r"^([A-Za-z](-?[A-Za-z0-9])*)?$"), ("MaxLength", 63),
        ("ConstraintDescription", "empty or an RDS instance identifier"))),
    Parameter("DatabaseConnectionsThreshold", "database_connections_threshold", "Number",
              False, (("MinValue", 0),)),
    Parameter("AlarmTopicArn", "alarm_topic_arn", "String", False, (
        ("AllowedPattern", r"^(arn:PARTITION:sns:REGION:\d{12}:.+)?$"),
        ("ConstraintDescription", "empty or an SNS topic ARN of the region"))),
)
CONDITIONS = {"HasRedisSecurityGroup": "RedisSecurityGroupId",
              "HasDatabaseSecurityGroup": "DatabaseSecurityGroupId",
              "HasDatabaseInstance": "DatabaseInstanceIdentifier",
              "HasAlarmTopic": "AlarmTopicArn"}


def body(stack: Mapping[str, Any]) -> str:
    """The template as it is written and sent: without indentation, which would take it
    past BODY_LIMIT (`jq . cloudformation.json` reads it indented)."""
    return json.dumps(stack, separators=(",", ":")) + "\n"


def parameter_values(s: Mapping[str, Any]) -> dict[str, str]:
    """Each parameter's value from the settings, as CloudFormation takes it."""
    return {p.name: _text(s[p.setting]) for p in PARAMETERS}


def _text(value: Any) -> str:
    return ",".join(value) if isinstance(value, list) else str(value)


@dataclass(frozen=True)
class Role:
    """One task definition's role, and what its containers connect to."""

    name: str  # the task definition's file stem: scheduler, webserver, worker, migrate
    members: frozenset[str]  # what its containers run: scheduler, triggerer, metrics, ...
    redis: bool
    database: bool
    execution_api: bool
    git_port: int | None

    @property
    def logical(self) -> str:
        return _logical(self.name)


def _logical(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in name.replace("_", "-").split("-"))


def task_definition_stems(s: Mapping[str, Any], documents: Mapping[str, Any]) -> dict[str, str]:
    """The role of each rendered task definition, by file stem: a role's own (worker.json)
    or one of its worker sets' (worker-heavy.json, each set a task definition of the
    worker role)."""
    sets = {w.stem for w in s.get("worker_sets", ())}
    stems = {}
    for key in sorted(documents):
        if "/" in key or not key.endswith(".json") or key == FILE:
            continue
        stem = key[:-len(".json")]
        stems[stem] = "worker" if stem in sets else stem
    return stems


def _roles(s: Mapping[str, Any], documents: Mapping[str, Any]) -> dict[str, Role]:
    by_role: dict[str, list[Any]] = {}
    for stem, role in task_definition_stems(s, documents).items():
        by_role.setdefault(role, []).append(documents[f"{stem}.json"])
    roles = {}
    for name, docs in by_role.items():
        containers = [c for doc in docs for c in doc["containerDefinitions"]]
        commands = [c["command"][1] for c in containers
                    if c.get("command", [])[:1] == ["run"] and len(c["command"]) > 1]
        needs = [waits.needs(command) for command in commands]
        urls = [e["value"] for c in containers for e in c.get("environment", [])
                if e.get("name") == "AIRFLOW_ECS_DAGS_GIT_URL"]
        roles[name] = Role(name, frozenset(m for c in commands for m in c.split("+")),
                           any(n[0] for n in needs), any(n[1] for n in needs),
                           any(n[3] for n in needs), _git_port(urls[0]) if urls else None)
    return roles


def _git_port(url: str) -> int | None:
    if "://" not in url:
        return GIT_PORTS["ssh"]  # user@host:path, git's scp-like form of ssh
    parts = urlsplit(url)
    try:
        return parts.port or GIT_PORTS.get(parts.scheme)
    except ValueError:
        return None


@dataclass(frozen=True)
class Flow:
    """A connection one side opens to the other: an egress rule on the source's group
    and an ingress rule on the destination's."""

    source: str  # a role, LOAD_BALANCER
    destination: str  # a role, REDIS, DATABASE or ANYWHERE
    port: int
    why: str


def flows(s: Mapping[str, Any], roles: Mapping[str, Role]) -> list[Flow]:
    """Every connection the roles open, from what their containers run."""
    [web] = [r.name for r in roles.values() if "webserver" in r.members]
    api = s["api_port"]
    out = [Flow(LOAD_BALANCER, web, api, "requests the load balancer forwards")]
    for r in roles.values():
        if r.execution_api:
            out.append(Flow(r.name, web, api, "execution API, through Service Connect"))
        for member, port in LOG_SERVERS.items():
            if member in r.members:
                out.append(Flow(web, r.name, port, f"logs of running tasks, from the {member}"))
    for r in roles.values():
        out.append(Flow(r.name, ANYWHERE, HTTPS_PORT, "AWS APIs, through a NAT gateway or "
                        "VPC endpoints"))
        if r.git_port and r.git_port != HTTPS_PORT:
            out.append(Flow(r.name, ANYWHERE, r.git_port, "the DAG repository"))
        if r.redis:
            out.append(Flow(r.name, REDIS, REDIS_PORT, "the Celery broker"))
        if r.database:
            out.append(Flow(r.name, DATABASE, DATABASE_PORT, "the metadata database"))
    return out


def target_group_placeholder(s: Mapping[str, Any]) -> str:
    return (f"arn:{s['partition']}:elasticloadbalancing:{s['region']}:{s['account_id']}:"
            f"{TARGET_GROUP_PLACEHOLDER}")


def template(s: Mapping[str, Any], documents: Mapping[str, Any]) -> dict[str, Any]:
    """The stack of the rendered documents (rendered with the target group placeholder)."""
    roles = _roles(s, documents)
    stems = task_definition_stems(s, documents)
    problems = [f"{r}.json: the stack has task roles for {', '.join(ROLES)} only: name the "
                "task definition template after one of them" for r in roles if r not in ROLES]
    if not any("webserver" in r.members for r in roles.values()):
        problems.append("no task definition runs the webserver, which the stack's load "
                        "balancer forwards to")
    if problems:
        raise ConfigError([f"{FILE}: {p}" for p in problems])
    refs = _References(_reference_table(s, roles), _prefix_table(s), s["log_group"])
    documents = {key: refs.put(doc) for key, doc in documents.items()}
    tds = {stem: documents[f"{stem}.json"] for stem in stems}
    tags = [{"Key": t["key"], "Value": t["value"]}
            for t in next(iter(tds.values())).get("tags", [])]
    resources: dict[str, Any] = {}
    resources["Namespace"] = _resource("AWS::ServiceDiscovery::HttpNamespace", {
        "Name": s["service_connect_namespace"],
        "Description": f"Service Connect of {s['name']}: the execution API for the workers",
        "Tags": tags})
    resources["Cluster"] = {**_resource("AWS::ECS::Cluster", {
        "ClusterName": s["cluster"],
        "ClusterSettings": [{"Name": "containerInsights", "Value": "enabled"}],
        # What a worker set's capacity provider strategy names; a service with a launch
        # type (every service but the worker sets') runs on Fargate as before.
        "CapacityProviders": [ON_DEMAND, SPOT],
        # ECS takes the namespace by name, as the services do.
        "ServiceConnectDefaults": {"Namespace": s["service_connect_namespace"]},
        "Tags": tags}), "DependsOn": "Namespace"}
    resources["LogGroup"] = {**_resource("AWS::Logs::LogGroup", {
        "LogGroupName": s["log_group"], "RetentionInDays": s["log_retention_days"],
        "Tags": tags}),
        # Kept, the group's name would stop the next stack of this deployment from
        # creating it; the retention is what keeps logs.
        "DeletionPolicy": "Delete", "UpdateReplacePolicy": "Delete"}
    resources.update(_iam(s, documents, roles, tags))
    resources.update(_network(s, roles, tds, tags))
    for stem in stems:
        resources[task_definition_id(stem)] = {
            **_resource("AWS::ECS::TaskDefinition", _cfn(tds[stem])),
            # A new revision replaces the old one; the old one stays registered, as with
            # the API path, so that services still on it (a rollback, a deployment
            # waiting for its migration) can keep starting tasks from it.
            "UpdateReplacePolicy": "Retain", "DeletionPolicy": "Delete"}
    services = _services(s, documents, stems)
    resources.update(services)
    resources.update(_scaling(s, documents, services))
    resources.update(_alarms(s, documents))
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": (f"airflow-ecs {s['name']}: Airflow on ECS Fargate (webserver, "
                        f"scheduler and worker services, worker scaling, load balancer)"),
        "Parameters": _parameters(s),
        "Rules": _rules(s),
        "Conditions": {name: {"Fn::Not": [{"Fn::Equals": [{"Ref": parameter}, ""]}]}
                       for name, parameter in CONDITIONS.items()},
        "Resources": resources,
        "Outputs": _outputs(s, roles, stems),
    }


def _resource(kind: str, properties: Mapping[str, Any]) -> dict[str, Any]:
    return {"Type": kind, "Properties": dict(properties)}


def _cfn(node: Any) -> Any:
    """An ECS API document in CloudFormation's spelling: the same keys, capitalised."""
    if isinstance(node, dict):
        return {key[:1].upper() + key[1:]: dict(value) if key in FREE_FORM and
                isinstance(value, dict) else _cfn(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_cfn(item) for item in node]
    return node


def _parameters(s: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for p in PARAMETERS:
        value = s[p.setting]
        spec: dict[str, Any] = {"Type": p.type, "Description": BY_NAME[p.setting].meaning}
        if value not in ("", []) or not p.required:
            # The settings' value: the template deploys as it is, `deploy` passes it too.
            spec["Default"] = _text(value)
        spec.update((key, value.replace("PARTITION", s["partition"]).replace(
            "REGION", s["region"]) if isinstance(value, str) else value)
            for key, value in p.constraints)
        out[p.name] = spec
    return out


def _rules(s: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "RenderedForThisAccountAndRegion": {"Assertions": [
            {"Assert": {"Fn::Equals": [{"Ref": "AWS::AccountId"}, s["account_id"]]},
             "AssertDescription": f"rendered for account {s['account_id']}: render again "
                                  "with this account's account_id"},
            {"Assert": {"Fn::Equals": [{"Ref": "AWS::Region"}, s["region"]]},
             "AssertDescription": f"rendered for region {s['region']}: render again with "
                                  "this region"}]},
        "DatabaseAlarmHasAThreshold": {
            "RuleCondition": {"Fn::Not": [{"Fn::Equals": [
                {"Ref": "DatabaseInstanceIdentifier"}, ""]}]},
            "Assertions": [{"Assert": {"Fn::Not": [{"Fn::Equals": [
                {"Ref": "DatabaseConnectionsThreshold"}, "0"]}]},
                "AssertDescription": "DatabaseConnectionsThreshold must be set (below the "
                                     "instance's max_connections) with "
                                     "DatabaseInstanceIdentifier"}]},
    }


def _iam(s: Mapping[str, Any], documents: Mapping[str, Any], roles: Mapping[str, Role],
         tags: list[dict[str, str]]) -> dict[str, Any]:
    trust = documents["iam/ecs-tasks-trust-policy.json"]

    def role(arn: str, policy: Any, why: str) -> dict[str, Any]:
        return _resource("AWS::IAM::Role", {
            "RoleName": arn.rsplit("/", 1)[1], "Description": why,
            "AssumeRolePolicyDocument": trust,
            "Policies": [{"PolicyName": POLICY_NAME, "PolicyDocument": policy}],
            "Tags": tags})

    out = {"ExecutionRole": role(s["execution_role_arn"],
                                 documents["iam/execution-role-policy.json"],
                                 "ECS pulls the images, writes the logs and injects secrets")}
    for r in roles.values():
        out[f"{r.logical}TaskRole"] = role(s[f"{r.name}_task_role_arn"],
                                           documents[f"iam/task-role-policy-{r.name}.json"],
                                           f"what the {r.name} tasks call")
    return out


def task_definition_id(role: str) -> str:
    return f"{_logical(role)}TaskDefinition"


def security_group_id(role: str) -> str:
    return f"{_logical(role)}SecurityGroup"


def _group(side: str) -> dict[str, Any]:
    return {"Ref": f"{_logical(side)}SecurityGroup"}


def _network(s: Mapping[str, Any], roles: Mapping[str, Role], tds: Mapping[str, Any],
             tags: list[dict[str, str]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    every = flows(s, roles)
    [web] = [f.destination for f in every if f.source == LOAD_BALANCER]
    for r in roles.values():
        out[f"{r.logical}SecurityGroup"] = _resource("AWS::EC2::SecurityGroup", {
            "GroupDescription": f"{s['name']} {r.name} tasks",
            "VpcId": {"Ref": "VpcId"},
            # Given here, these replace the default rule that lets everything out.
            "SecurityGroupEgress": [
                {"IpProtocol": "tcp", "FromPort": f.port, "ToPort": f.port, "CidrIp": ANYWHERE,
                 "Description": f.why} for f in every
                if f.source == r.name and f.destination == ANYWHERE],
            "Tags": tags})
    out["LoadBalancerSecurityGroup"] = _resource("AWS::EC2::SecurityGroup", {
        "GroupDescription": f"{s['name']} load balancer",
        "VpcId": {"Ref": "VpcId"},
        "SecurityGroupIngress": [{"IpProtocol": "tcp", "FromPort": HTTPS_PORT,
                                  "ToPort": HTTPS_PORT,
                                  "CidrIp": {"Ref": "LoadBalancerIngressCidr"},
                                  "Description": "HTTPS from the users"}],
        "SecurityGroupEgress": [
            {"IpProtocol": "tcp", "FromPort": f.port, "ToPort": f.port,
             "DestinationSecurityGroupId": _group(f.destination), "Description": f.why}
            for f in every if f.source == LOAD_BALANCER],
        "Tags": tags})
    for f in every:
        name = f"{_logical(f.source)}To{_logical(f.destination)}{f.port}"
        rule = {"IpProtocol": "tcp", "FromPort": f.port, "ToPort": f.port,
                "Description": f.why}
        if f.destination in roles:
            # Rules between two of the stack's groups are resources of their own: inside
            # the groups they would make each group wait for the other.
            out[f"{name}Ingress"] = _resource("AWS::EC2::SecurityGroupIngress", {
                **rule, "GroupId": _group(f.destination),
                "SourceSecurityGroupId": _group(f.source)})
            if f.source != LOAD_BALANCER:
                out[f"{name}Egress"] = _resource("AWS::EC2::SecurityGroupEgress", {
                    **rule, "GroupId": _group(f.source),
                    "DestinationSecurityGroupId": _group(f.destination)})
        elif f.destination in (REDIS, DATABASE):
            condition = f"Has{f.destination}SecurityGroup"
            existing = {"Ref": f"{f.destination}SecurityGroupId"}
            # Without the existing group's id, the tasks may reach that port anywhere:
            # its own group decides who gets in.
            out[f"{name}Egress"] = _resource("AWS::EC2::SecurityGroupEgress", {
                **rule, "GroupId": _group(f.source),
                "DestinationSecurityGroupId": {"Fn::If": [condition, existing,
                                                          {"Ref": "AWS::NoValue"}]},
                "CidrIp": {"Fn::If": [condition, {"Ref": "AWS::NoValue"}, ANYWHERE]}})
            out[f"{name}Ingress"] = {**_resource("AWS::EC2::SecurityGroupIngress", {
                **rule, "GroupId": existing, "SourceSecurityGroupId": _group(f.source)}),
                "Condition": condition}
    web_container = next(c for c in tds[web]["containerDefinitions"]
                         if any(p.get("containerPort") == s["api_port"]
                                for p in c.get("portMappings", [])))
    out["LoadBalancer"] = _resource("AWS::ElasticLoadBalancingV2::LoadBalancer", {
        "Type": "application", "Scheme": "internet-facing",
        "Subnets": {"Ref": "PublicSubnetIds"},
        "SecurityGroups": [{"Ref": "LoadBalancerSecurityGroup"}],
        "LoadBalancerAttributes": [
            {"Key": "routing.http.drop_invalid_header_fields.enabled", "Value": "true"}],
        "Tags": tags})
    out["TargetGroup"] = _resource("AWS::ElasticLoadBalancingV2::TargetGroup", {
        "TargetType": "ip", "Protocol": "HTTP", "Port": s["api_port"],
        "VpcId": {"Ref": "VpcId"},
        "HealthCheckProtocol": "HTTP", "HealthCheckPath": WEBSERVER_HEALTH_PATH,
        "HealthCheckIntervalSeconds": 15, "HealthyThresholdCount": 2,
        "Matcher": {"HttpCode": "200"},
        # Requests in flight get as long to finish as the api-server gets to stop.
        "TargetGroupAttributes": [{"Key": "deregistration_delay.timeout_seconds",
                                   "Value": str(web_container.get("stopTimeout", 30))}],
        "Tags": tags})
    out["HttpsListener"] = _resource("AWS::ElasticLoadBalancingV2::Listener", {
        "LoadBalancerArn": {"Ref": "LoadBalancer"}, "Port": HTTPS_PORT, "Protocol": "HTTPS",
        "SslPolicy": "ELBSecurityPolicy-TLS13-1-2-2021-06",
        "Certificates": [{"CertificateArn": {"Ref": "CertificateArn"}}],
        "DefaultActions": [{"Type": "forward", "TargetGroupArn": {"Ref": "TargetGroup"}}]})
    return out


def _services(s: Mapping[str, Any], documents: Mapping[str, Any],
              stems: Mapping[str, str]) -> dict[str, Any]:
    by_family = {documents[f"{stem}.json"]["family"]: stem for stem in stems}
    scaled = {doc["ResourceId"] for key, doc in documents.items()
              if key.startswith("scaling/") and key.endswith("-target.json")}
    out = {}
    for key, doc in sorted(documents.items()):
        if not key.startswith("services/"):
            continue
        stem = by_family[doc["taskDefinition"].split(":")[0]]
        role = _logical(stems[stem])
        props = _cfn(doc)
        props["Cluster"] = {"Ref": "Cluster"}
        props["TaskDefinition"] = {"Ref": task_definition_id(stem)}
        vpc = props["NetworkConfiguration"]["AwsvpcConfiguration"]
        vpc["Subnets"] = {"Ref": "SubnetIds"}
        vpc["SecurityGroups"] = [{"Ref": f"{role}SecurityGroup"}]
        if f"service/{doc['cluster']}/{doc['serviceName']}" in scaled:
            # Left out, an update keeps the count the autoscaler set; a new service
            # starts with one task, and the scaling target's minimum applies.
            props.pop("DesiredCount", None)
        resource = _resource("AWS::ECS::Service", props)
        if props.get("LoadBalancers"):
            # ECS refuses a target group that no listener forwards to yet.
            resource["DependsOn"] = "HttpsListener"
        out[f"{_logical(key[len('services/'):-len('.json')])}Service"] = resource
    return out


def _service_of(resource_id: str, services: Mapping[str, Any]) -> str:
    name = resource_id.rsplit("/", 1)[1]
    [logical] = [k for k, v in services.items() if v["Properties"]["ServiceName"] == name]
    return logical


def _scaling(s: Mapping[str, Any], documents: Mapping[str, Any],
             services: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    targets = {}
    for key, doc in sorted(documents.items()):
        if key.startswith("scaling/") and key.endswith("-target.json"):
            service = _service_of(doc["ResourceId"], services)
            logical = f"{_logical(key[len('scaling/'):-len('-target.json')])}ScalableTarget"
            targets[doc["ResourceId"]] = logical
            out[logical] = _resource("AWS::ApplicationAutoScaling::ScalableTarget", {
                "ServiceNamespace": doc["ServiceNamespace"],
                "ScalableDimension": doc["ScalableDimension"],
                "ResourceId": {"Fn::Join": ["/", ["service", {"Ref": "Cluster"},
                                                  {"Fn::GetAtt": [service, "Name"]}]]},
                "MinCapacity": doc["MinCapacity"], "MaxCapacity": doc["MaxCapacity"]})
    for key, doc in sorted(documents.items()):
        if key.startswith("scaling/") and key.endswith("-policy.json"):
            logical = f"{_logical(key[len('scaling/'):-len('-policy.json')])}ScalingPolicy"
            props = {k: v for k, v in doc.items()
                     if k not in ("ServiceNamespace", "ResourceId", "ScalableDimension")}
            out[logical] = _resource("AWS::ApplicationAutoScaling::ScalingPolicy", {
                **props, "ScalingTargetId": {"Ref": targets[doc["ResourceId"]]}})
    return out


def _metrics_period() -> int:
    """A CloudWatch period that holds at least one of the sidecar's publications."""
    interval = float(next(x.default for x in config.SETTINGS
                          if x.name == "AIRFLOW_ECS_METRICS_INTERVAL"))
    return 60 * max(1, math.ceil(interval / 60))


def _alarms(s: Mapping[str, Any], documents: Mapping[str, Any]) -> dict[str, Any]:
    actions = {"Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}],
                          {"Ref": "AWS::NoValue"}]}

    def alarm(name: str, why: str, **props: Any) -> dict[str, Any]:
        return _resource("AWS::CloudWatch::Alarm", {
            "AlarmName": f"{s['name']}-{name}", "AlarmDescription": why,
            "EvaluationPeriods": ALARM_PERIODS, "DatapointsToAlarm": ALARM_PERIODS,
            "AlarmActions": actions, "OKActions": actions, **props})

    out = {"UnhealthyWebserverAlarm": alarm(
        "webserver-unhealthy",
        "A webserver task fails the load balancer's health check "
        f"({WEBSERVER_HEALTH_PATH}).",
        Namespace="AWS/ApplicationELB", MetricName="UnHealthyHostCount",
        Dimensions=[
            {"Name": "TargetGroup", "Value": {"Fn::GetAtt": ["TargetGroup",
                                                             "TargetGroupFullName"]}},
            {"Name": "LoadBalancer", "Value": {"Fn::GetAtt": ["LoadBalancer",
                                                              "LoadBalancerFullName"]}}],
        Statistic="Maximum", Period=60, Threshold=0,
        ComparisonOperator="GreaterThanThreshold", TreatMissingData="notBreaching")}
    for key, doc in sorted(documents.items()):
        if not (key.startswith("scaling/") and key.endswith("-policy.json")):
            continue
        metric = doc["TargetTrackingScalingPolicyConfiguration"]["CustomizedMetricSpecification"]
        stem = key[len("scaling/"):-len("-policy.json")]
        out[f"{_logical(stem)}MetricMissingAlarm"] = alarm(
            f"{stem}-{metric['MetricName']}-missing".lower(),
            f"{metric['MetricName']} is not published: the {stem} service can't scale. The "
            "scheduler task's metrics container publishes it; see its logs (prefix "
            "metrics/).",
            Namespace=metric["Namespace"], MetricName=metric["MetricName"],
            Dimensions=metric["Dimensions"], Statistic="SampleCount",
            Period=_metrics_period(), Threshold=1, ComparisonOperator="LessThanThreshold",
            # No data is the very condition: the alarm fires on it.
            TreatMissingData="breaching")
    out["DatabaseConnectionsAlarm"] = {**alarm(
        "database-connections",
        "The metadata database holds more connections than DatabaseConnectionsThreshold.",
        Namespace="AWS/RDS", MetricName="DatabaseConnections",
        Dimensions=[{"Name": "DBInstanceIdentifier",
                     "Value": {"Ref": "DatabaseInstanceIdentifier"}}],
        Statistic="Maximum", Period=60, Threshold={"Ref": "DatabaseConnectionsThreshold"},
        ComparisonOperator="GreaterThanThreshold", TreatMissingData="missing"),
        "Condition": "HasDatabaseInstance"}
    return out


def _outputs(s: Mapping[str, Any], roles: Mapping[str, Role],
             stems: Mapping[str, str]) -> dict[str, Any]:
    every = flows(s, roles)

    def clients(destination: str) -> dict[str, Any]:
        return {"Fn::Join": [",", [_group(f.source) for f in every
                                   if f.destination == destination]]}

    out: dict[str, Any] = {
        "Cluster": {"Description": "ECS cluster", "Value": {"Ref": "Cluster"}},
        "LoadBalancerUrl": {"Description": "The Airflow UI (point a DNS name of the "
                                           "certificate at LoadBalancerDnsName)",
                            "Value": {"Fn::Sub": "https://${LoadBalancer.DNSName}/"}},
        "LoadBalancerDnsName": {"Description": "DNS name of the load balancer",
                                "Value": {"Fn::GetAtt": ["LoadBalancer", "DNSName"]}},
        "TargetGroupArn": {"Description": "Target group of the webserver tasks",
                           "Value": {"Ref": "TargetGroup"}},
        "LogGroup": {"Description": "Log group of every container",
                     "Value": {"Ref": "LogGroup"}},
        "RedisClientSecurityGroups": {
            "Description": f"Groups to let in on {REDIS_PORT} in the Redis group (the stack "
                          "does it when given RedisSecurityGroupId)",
            "Value": clients(REDIS)},
        "DatabaseClientSecurityGroups": {
            "Description": f"Groups to let in on {DATABASE_PORT} in the database group (the "
                           "stack does it when given DatabaseSecurityGroupId)",
            "Value": clients(DATABASE)},
    }
    for r in roles.values():
        out[f"{r.logical}SecurityGroup"] = {"Description": f"Security group of the {r.name} "
                                                           "tasks",
                                            "Value": _group(r.name)}
    for stem in stems:
        out[task_definition_id(stem)] = {"Description": f"Task definition of the {stem} tasks",
                                         "Value": {"Ref": task_definition_id(stem)}}
    return out


def _reference_table(s: Mapping[str, Any], roles: Mapping[str, Role]) -> dict[str, Any]:
    """The ARNs the rendered documents name, and the reference the stack puts instead:
    the resources it creates under them. (An ARN names one thing only; a name alone
    may equal another value, and is replaced where it stands instead.)"""
    table: dict[str, Any] = {
        s["execution_role_arn"]: {"Fn::GetAtt": ["ExecutionRole", "Arn"]},
        target_group_placeholder(s): {"Ref": "TargetGroup"},
        (f"arn:{s['partition']}:logs:{s['region']}:{s['account_id']}:log-group:"
         f"{s['log_group']}:*"): {"Fn::GetAtt": ["LogGroup", "Arn"]},
    }
    for r in roles.values():
        table[s[f"{r.name}_task_role_arn"]] = {"Fn::GetAtt": [f"{r.logical}TaskRole", "Arn"]}
    return table


def _prefix_table(s: Mapping[str, Any]) -> dict[str, str]:
    """ARN beginnings that name the stack's cluster, and the same in Fn::Sub's terms."""
    arn = f"arn:{s['partition']}:ecs:{s['region']}:{s['account_id']}:"
    sub = "arn:${AWS::Partition}:ecs:${AWS::Region}:${AWS::AccountId}:"
    return {f"{arn}{kind}/{s['cluster']}/": f"{sub}{kind}/${{Cluster}}/"
            for kind in ("service", "task")}


@dataclass(frozen=True)
class _References:
    arns: Mapping[str, Any]  # whole ARNs: the reference instead
    prefixes: Mapping[str, str]  # ARN beginnings: the same in Fn::Sub's terms
    log_group: str  # the log group's name, where the awslogs driver names it

    def put(self, node: Any, key: str = "") -> Any:
        if isinstance(node, dict):
            return {k: self.put(v, k) for k, v in node.items()}
        if isinstance(node, list):
            return [self.put(v) for v in node]
        if not isinstance(node, str):
            return node
        if key == "awslogs-group" and node == self.log_group:
            return {"Ref": "LogGroup"}
        if node in self.arns:
            return self.arns[node]
        for prefix, sub in self.prefixes.items():
            if node.startswith(prefix):
                return {"Fn::Sub": sub + node[len(prefix):]}
        return node


def references(node: Any) -> Iterator[str]:
    """The logical ids a part of a template refers to (Ref, Fn::GetAtt, Fn::Sub)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "Ref" and isinstance(value, str):
                yield value
            elif key == "Fn::GetAtt" and isinstance(value, list):
                yield value[0]
            elif key == "Fn::Sub":
                text = value if isinstance(value, str) else value[0]
                for part in text.split("${")[1:]:
                    yield part.split("}")[0].split(".")[0]
                if not isinstance(value, str):
                    yield from references(value[1])
            elif key == "DependsOn":
                yield from [value] if isinstance(value, str) else value
            else:
                yield from references(value)
    elif isinstance(node, list):
        for item in node:
            yield from references(item)


def before_migration(body: Mapping[str, Any], running: Mapping[str, str]) -> dict[str, Any]:
    """The stack as it must be while the migrate task runs: everything of the new release
    but the services' task definitions. A service that exists (in `running`, by logical id)
    stays on the task definition it runs; one that doesn't is left out, with everything
    that refers to it, until the migration has succeeded."""
    out = dict(body)
    resources = {k: dict(v) for k, v in body["Resources"].items()}
    dropped = {k for k, v in resources.items()
               if v["Type"] == "AWS::ECS::Service" and k not in running}
    while True:
        more = {k for k, v in resources.items()
                if k not in dropped and dropped & set(references(v))}
        if not more:
            break
        dropped |= more
    for k in dropped:
        del resources[k]
    for k, arn in running.items():
        resources[k]["Properties"] = {**resources[k]["Properties"], "TaskDefinition": arn}
    out["Resources"] = resources
    out["Outputs"] = {k: v for k, v in body.get("Outputs", {}).items()
                      if not dropped & set(references(v))}
    return out
