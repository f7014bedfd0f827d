"""`airflow-ecs deploy`: render and validate, register the task definitions, run the
migrate task to completion, then create or update the services and the worker
service's scaling.

Runs with the operator's credentials (not a task role). Honours AWS_ENDPOINT_URL
through boto3, so the whole sequence runs against moto in the tests.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from entrypoint.errors import DeployError
from entrypoint.tools.ecs.render import TEMPLATES, render, write

log = logging.getLogger("airflow-ecs")


def deploy(settings_file: Path | None, env: Mapping[str, str], out_dir: Path,
           run_migrate: bool = True, templates: Path = TEMPLATES) -> dict[str, str]:
    """Deploy; return the registered task definition ARN of each family."""
    import boto3

    rendered = render(settings_file, env, templates)
    write(rendered, out_dir)
    s = rendered.settings
    session = boto3.session.Session(region_name=s["region"])
    endpoint = env.get("AWS_ENDPOINT_URL") or None
    ecs = session.client("ecs", endpoint_url=endpoint)
    scaling = session.client("application-autoscaling", endpoint_url=endpoint)

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


def _run_to_completion(ecs: Any, s: Mapping[str, Any], task_definition: str) -> None:
    """Run the migrate task and wait for it to stop; fail unless its container exited 0."""
    from botocore.exceptions import WaiterError

    reply = ecs.run_task(
        cluster=s["cluster"], taskDefinition=task_definition, launchType="FARGATE",
        count=1, startedBy="airflow-ecs-deploy",
        networkConfiguration={"awsvpcConfiguration": {
            "subnets": list(s["subnets"]), "securityGroups": list(s["security_groups"]),
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
            "serviceConnectConfiguration", "enableExecuteCommand", "propagateTags"}
    if f"service/{doc['cluster']}/{doc['serviceName']}" not in scaled:
        keys.add("desiredCount")
    update = {k: v for k, v in doc.items() if k in keys}
    ecs.update_service(service=doc["serviceName"], **update)
    log.info("updated service %s to %s", doc["serviceName"], doc["taskDefinition"])
