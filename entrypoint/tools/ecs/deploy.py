"""`airflow-ecs deploy`: render and validate, register the task definitions, run the
migrate task to completion, then create or update the services and the worker
service's scaling.

With `cloudformation_stack` set, the same sequence goes through CloudFormation, as
`aws cloudformation deploy` does it (a change set, executed, then waited for): first the
stack of the new release with every existing service left on the task definition it
runs (a new stack: without its services), then the migrate task, then the whole stack.

Runs with the operator's credentials (not a task role). Honours AWS_ENDPOINT_URL
through boto3, so the whole sequence runs against moto in the tests.
"""

from __future__ import annotations

import json
import logging
import math
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from entrypoint.errors import DeployError
from entrypoint.tools.ecs import cloudformation
from entrypoint.tools.ecs.render import TEMPLATES, Rendered, render, write

log = logging.getLogger("airflow-ecs")
CAPABILITIES = ["CAPABILITY_NAMED_IAM"]  # the roles have names: the policies name them
NO_CHANGES = ("didn't contain changes", "No updates are to be performed")
# Stack states no change set can leave, and the way out of each.
STUCK = {
    "ROLLBACK_COMPLETE": "delete it (its creation failed: aws cloudformation delete-stack "
                         "--stack-name {name})",
    "ROLLBACK_FAILED": "delete it (aws cloudformation delete-stack --stack-name {name})",
    "DELETE_FAILED": "delete it again (aws cloudformation delete-stack --stack-name {name})",
    "UPDATE_ROLLBACK_FAILED": "finish the rollback (aws cloudformation "
                              "continue-update-rollback --stack-name {name})",
}


def deploy(settings_file: Path | None, env: Mapping[str, str], out_dir: Path,
           run_migrate: bool = True, templates: Path = TEMPLATES) -> dict[str, str]:
    """Deploy; return the registered task definition ARN of each family."""
    import boto3

    rendered = render(settings_file, env, templates)
    write(rendered, out_dir)
    s = rendered.settings
    session = boto3.session.Session(region_name=s["region"])
    endpoint = env.get("AWS_ENDPOINT_URL") or None
    if s["cloudformation_stack"]:
        return deploy_stack(rendered, lambda service: session.client(service,
                                                                     endpoint_url=endpoint),
                            run_migrate)
    ecs = session.client("ecs", endpoint_url=endpoint)
    scaling = session.client("application-autoscaling", endpoint_url=endpoint)
    _check_capacity_providers(ecs, s["cluster"], rendered.of_kind("services").values())

    arns: dict[str, str] = {}
    for doc in rendered.task_definitions().values():
        arn = ecs.register_task_definition(**doc)["taskDefinition"]["taskDefinitionArn"]
        arns[doc["family"]] = arn
        log.info("registered %s", arn)

    if run_migrate:
        migrate = arns.get(f"{s['name']}-migrate")
        if migrate is None:
            raise DeployError("no migrate task definition was rendered; deploy with "
                              "--skip-migrate to update the services without one")
        _run_to_completion(ecs, s, migrate)

    scaled = {doc["ResourceId"] for doc in rendered.of_kind("scaling").values()}
    for doc in rendered.of_kind("services").values():
        family = doc["taskDefinition"].split(":")[0]
        doc = {**doc, "taskDefinition": arns[family]}
        _create_or_update(ecs, doc, scaled)

    for name, doc in sorted(rendered.of_kind("scaling").items()):
        if name.endswith("-target.json"):
            scaling.register_scalable_target(**doc)
            log.info("scalable target %s: %s to %s tasks", doc["ResourceId"],
                     doc["MinCapacity"], doc["MaxCapacity"])
    for name, doc in sorted(rendered.of_kind("scaling").items()):
        if name.endswith("-policy.json"):
            scaling.put_scaling_policy(**doc)
            log.info("scaling policy %s on %s", doc["PolicyName"], doc["ResourceId"])
    return arns


def _check_capacity_providers(ecs: Any, cluster: str, services: Iterable[Mapping[str, Any]]
                              ) -> None:
    """The capacity providers the worker sets name must be the cluster's (the stack makes
    its cluster so; an existing cluster may have none): ECS would refuse the service."""
    wanted = {item["capacityProvider"] for doc in services
              for item in doc.get("capacityProviderStrategy", [])}
    if not wanted:
        return
    found = ecs.describe_clusters(clusters=[cluster]).get("clusters") or [{}]
    have = set(found[0].get("capacityProviders") or [])
    missing = sorted(wanted - have)
    if missing:
        every = " ".join(sorted(have | wanted))
        raise DeployError(f"cluster {cluster} lacks the capacity providers {', '.join(missing)} "
                          "that worker_sets use; add them (the list replaces the cluster's): "
                          f"aws ecs put-cluster-capacity-providers --cluster {cluster} "
                          f"--capacity-providers {every} --default-capacity-provider-strategy "
                          "capacityProvider=FARGATE,weight=1")


def _run_to_completion(ecs: Any, s: Mapping[str, Any], task_definition: str,
                       security_groups: list[str] | None = None) -> None:
    """Run the migrate task and wait for it to stop; fail unless its container exited 0."""
    from botocore.exceptions import WaiterError

    reply = ecs.run_task(
        cluster=s["cluster"], taskDefinition=task_definition, launchType="FARGATE",
        count=1, startedBy="airflow-ecs-deploy",
        networkConfiguration={"awsvpcConfiguration": {
            "subnets": list(s["subnets"]),
            "securityGroups": list(security_groups or s["security_groups"]),
            "assignPublicIp": s["assign_public_ip"]}})
    if reply.get("failures") or not reply.get("tasks"):
        raise DeployError(f"the migrate task did not start: {reply.get('failures')}")
    task_arn = reply["tasks"][0]["taskArn"]
    log.info("migrate task %s started; waiting up to %s s", task_arn, s["migrate_timeout"])
    try:
        ecs.get_waiter("tasks_stopped").wait(
            cluster=s["cluster"], tasks=[task_arn],
            WaiterConfig={"Delay": s["poll_seconds"],
                          "MaxAttempts": max(1, s["migrate_timeout"] // s["poll_seconds"])})
    except WaiterError as exc:
        raise DeployError(f"the migrate task {task_arn} did not stop within "
                          f"{s['migrate_timeout']} s (last status: {_status(exc)}); "
                          "its logs are in the log group under the migrate/ prefix") from None
    task = ecs.describe_tasks(cluster=s["cluster"], tasks=[task_arn])["tasks"][0]
    codes = {c["name"]: c.get("exitCode") for c in task.get("containers", [])}
    if not codes or any(code != 0 for code in codes.values()):
        raise DeployError(f"the migrate task {task_arn} failed: exit codes {codes}, "
                          f"stopped reason {task.get('stoppedReason')!r}; the services were "
                          "not updated. Its logs are in the log group under the migrate/ prefix")
    log.info("migrate task %s finished (exit 0)", task_arn)


def _status(exc: Exception) -> str:
    tasks = (getattr(exc, "last_response", None) or {}).get("tasks") or [{}]
    return str(tasks[0].get("lastStatus", "unknown"))


def _create_or_update(ecs: Any, doc: Mapping[str, Any], scaled: set[str]) -> None:
    found = ecs.describe_services(cluster=doc["cluster"], services=[doc["serviceName"]])
    active = [x for x in found.get("services", []) if x.get("status") != "INACTIVE"]
    if not active:
        ecs.create_service(**doc)
        log.info("created service %s (%s)", doc["serviceName"], doc["taskDefinition"])
        return
    # A scaled service's desiredCount is left to the autoscaler once the service exists;
    # the others follow their count setting (scheduler_count, webserver_count).
    keys = {"cluster", "taskDefinition", "deploymentConfiguration", "networkConfiguration",
            "loadBalancers", "platformVersion", "healthCheckGracePeriodSeconds",
            "serviceConnectConfiguration", "enableExecuteCommand", "propagateTags",
            "capacityProviderStrategy"}
    if f"service/{doc['cluster']}/{doc['serviceName']}" not in scaled:
        keys.add("desiredCount")
    update = {k: v for k, v in doc.items() if k in keys}
    ecs.update_service(service=doc["serviceName"], **update)
    log.info("updated service %s to %s", doc["serviceName"], doc["taskDefinition"])


def deploy_stack(rendered: Rendered, client: Callable[[str], Any],
                 run_migrate: bool = True) -> dict[str, str]:
    """Create or update the stack; return the task definition ARN of each family."""
    s = rendered.settings
    cf, ecs = client("cloudformation"), client("ecs")
    name = s["cloudformation_stack"]
    status = _stack_status(cf, name)
    if status in STUCK:
        raise DeployError(f"stack {name} is {status}: CloudFormation can't update it. See "
                          f"its events for why, {STUCK[status].format(name=name)}, then "
                          "deploy again")
    if status and status.endswith("_IN_PROGRESS") and status != "REVIEW_IN_PROGRESS":
        raise DeployError(f"stack {name} is {status}: another change is under way; deploy "
                          "again once it has finished")
    exists = status not in (None, "REVIEW_IN_PROGRESS")
    template = rendered.stack
    if run_migrate and cloudformation.task_definition_id("migrate") not in template["Resources"]:
        raise DeployError("no migrate task definition was rendered; deploy with "
                          "--skip-migrate to update the services without one")
    if exists and _deployed(cf, name) == (template, cloudformation.parameter_values(s)):
        # The services run this release already, migrated before they got it.
        log.info("stack %s: no changes", name)
    elif run_migrate:
        running = _running_task_definitions(cf, ecs, name) if exists else {}
        _change_stack(cf, s, cloudformation.before_migration(template, running), exists,
                      "the new release but the services' task definitions")
        ids = _physical_ids(cf, name)
        _run_to_completion(ecs, s, ids[cloudformation.task_definition_id("migrate")],
                           [ids[cloudformation.security_group_id("migrate")]])
        _change_stack(cf, s, template, True, "the whole release")
    else:
        _change_stack(cf, s, template, exists, "the whole release")
    ids = _physical_ids(cf, name, "AWS::ECS::TaskDefinition")
    return {arn.rsplit("/", 1)[1].rsplit(":", 1)[0]: arn for arn in ids.values()}


def _stack_status(cf: Any, name: str) -> str | None:
    from botocore.exceptions import ClientError

    try:
        stacks = cf.describe_stacks(StackName=name)["Stacks"]
    except ClientError as exc:
        if "does not exist" in str(exc):
            return None
        raise
    return str(stacks[0]["StackStatus"]) if stacks else None


def _deployed(cf: Any, name: str) -> tuple[Any, dict[str, str]]:
    """The stack's template and parameter values as they are now."""
    body = cf.get_template(StackName=name, TemplateStage="Original")["TemplateBody"]
    stack = cf.describe_stacks(StackName=name)["Stacks"][0]
    return (json.loads(body) if isinstance(body, str) else body,
            {p["ParameterKey"]: p.get("ParameterValue", "")
             for p in stack.get("Parameters", [])})


def _physical_ids(cf: Any, name: str, kind: str | None = None) -> dict[str, str]:
    """The stack's resources by logical id: each one's physical id (an ARN, name or id)."""
    ids = {}
    for page in cf.get_paginator("list_stack_resources").paginate(StackName=name):
        for r in page["StackResourceSummaries"]:
            if r.get("PhysicalResourceId") and (kind is None or r["ResourceType"] == kind):
                ids[r["LogicalResourceId"]] = r["PhysicalResourceId"]
    return ids


def _running_task_definitions(cf: Any, ecs: Any, name: str) -> dict[str, str]:
    """The stack's services that exist, by logical id: the task definition each one runs."""
    services = _physical_ids(cf, name, "AWS::ECS::Service")
    if not services:
        return {}
    by_arn = {arn: logical for logical, arn in services.items()}
    cluster = _physical_ids(cf, name, "AWS::ECS::Cluster")["Cluster"]
    found = ecs.describe_services(cluster=cluster, services=list(services.values()))
    return {by_arn[x["serviceArn"]]: x["taskDefinition"] for x in found.get("services", [])
            if x.get("status") != "INACTIVE" and x["serviceArn"] in by_arn}


def _change_stack(cf: Any, s: Mapping[str, Any], template: Mapping[str, Any], exists: bool,
                  what: str) -> bool:
    """Create a change set, execute it and wait for the stack; False if nothing changed."""
    from botocore.exceptions import ClientError, WaiterError

    name = s["cloudformation_stack"]
    body = cloudformation.body(template)
    if len(body.encode()) > cloudformation.BODY_LIMIT:
        raise DeployError(f"the template of stack {name} is {len(body.encode())} bytes, more "
                          f"than the {cloudformation.BODY_LIMIT} CloudFormation takes in a "
                          "request")
    wait = {"Delay": s["poll_seconds"],
            "MaxAttempts": max(1, math.ceil(s["stack_timeout"] / s["poll_seconds"]))}
    token = f"airflow-ecs-{uuid.uuid4().hex}"
    try:
        change = cf.create_change_set(
            StackName=name, ChangeSetName=token, ChangeSetType="UPDATE" if exists else "CREATE",
            TemplateBody=body, Capabilities=CAPABILITIES,
            Parameters=[{"ParameterKey": k, "ParameterValue": v}
                        for k, v in cloudformation.parameter_values(s).items()],
            Description=f"airflow-ecs deploy: {what}")
    except ClientError as exc:
        if any(text in str(exc) for text in NO_CHANGES):
            log.info("stack %s: no changes (%s)", name, what)
            return False
        raise DeployError(f"stack {name}: CloudFormation refused the change set: {exc}") from None
    try:
        cf.get_waiter("change_set_create_complete").wait(
            ChangeSetName=change["Id"], StackName=name, WaiterConfig=wait)
    except WaiterError:
        found = cf.describe_change_set(ChangeSetName=change["Id"], StackName=name)
        reason = str(found.get("StatusReason", ""))
        if found.get("Status") == "FAILED" and any(text in reason for text in NO_CHANGES):
            cf.delete_change_set(ChangeSetName=change["Id"], StackName=name)
            log.info("stack %s: no changes (%s)", name, what)
            return False
        raise DeployError(f"stack {name}: the change set is {found.get('Status')}: "
                          f"{reason or 'no reason given'}") from None
    log.info("stack %s: %s %s", name, "updating" if exists else "creating", what)
    try:
        cf.execute_change_set(ChangeSetName=change["Id"], StackName=name,
                              ClientRequestToken=token)
        cf.get_waiter("stack_update_complete" if exists else "stack_create_complete").wait(
            StackName=name, WaiterConfig=wait)
    except (ClientError, WaiterError) as exc:
        status = _stack_status(cf, name)
        failures = _failures(cf, name, token)
        if status and status.endswith("_IN_PROGRESS"):
            cause = (f"still {status} after {s['stack_timeout']} s (stack_timeout); "
                     "CloudFormation goes on")
        else:
            cause = f"ended {status}" if status else str(exc)
        raise DeployError(f"stack {name}: {cause}" + "".join(
            f"\n    {f}" for f in failures or ["no failed resource reported; see the "
                                                  "stack's events"])) from None
    log.info("stack %s: %s", name, _stack_status(cf, name))
    return True


def _failures(cf: Any, name: str, token: str) -> list[str]:
    """The resources this change failed, the first failure first: logical id, type and
    CloudFormation's reason."""
    failed = [f"{e['LogicalResourceId']} ({e['ResourceType']}): {e['ResourceStatus']}: "
              f"{e.get('ResourceStatusReason', 'no reason given')}"
              for e in _events_of(cf, name, token) if e["ResourceStatus"].endswith("_FAILED")]
    return failed[::-1]


def _events_of(cf: Any, name: str, token: str) -> Iterator[dict[str, Any]]:
    """The stack's events, newest first, down to the first of an earlier change."""
    for page in cf.get_paginator("describe_stack_events").paginate(StackName=name):
        for event in page["StackEvents"]:
            if event.get("ClientRequestToken") not in (token, None):
                return
            yield event
