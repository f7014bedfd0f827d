"""Offline validation of rendered ECS, Application Auto Scaling and IAM JSON.

First against botocore's own service models (the input shapes of
RegisterTaskDefinition, CreateService, RegisterScalableTarget and
PutScalingPolicy: every key, type and required field the API checks), then the
rules those models don't hold but ECS enforces at registration or at run time.
Every problem names the file and the JSON path.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Mapping
from typing import Any

from entrypoint import private_apis
from entrypoint.probe import health
from entrypoint.tools.ecs import healthcheck
from entrypoint.tools.ecs.settings import ROLES, partition_of
from entrypoint.tools.ecs.template import json_path

# Fargate task sizes: CPU units -> valid memory values in MiB.
FARGATE_SIZES: dict[int, range] = {
    256: range(512, 2048 + 1, 512),
    512: range(1024, 4096 + 1, 1024),
    1024: range(2048, 8192 + 1, 1024),
    2048: range(4096, 16384 + 1, 1024),
    4096: range(8192, 30720 + 1, 1024),
    8192: range(16384, 61440 + 1, 4096),
    16384: range(32768, 122880 + 1, 8192),
}
# 256 CPU units take 512, 1024 or 2048 MiB only (not 1536).
_SIZE_EXCEPTIONS = {(256, 1536)}
STOP_TIMEOUT_RANGE = (2, 120)  # Fargate's limits, in seconds
HEALTH_LIMITS = healthcheck.LIMITS
# Actions that take no resource-level permission: "*" is the only resource they accept.
WILDCARD_ACTIONS = frozenset({"ecr:GetAuthorizationToken", "cloudwatch:PutMetricData"})
IMAGE_ROLES = ("base", "scheduler", "webserver", "worker")


@functools.cache
def input_shape(service: str, operation: str) -> Any:  # a botocore Shape
    import botocore.session

    model = botocore.session.get_session().get_service_model(service)
    return model.operation_model(operation).input_shape


def against_model(doc: Any, service: str, operation: str, source: str) -> list[str]:
    from botocore.validate import ParamValidator

    if not isinstance(doc, dict):
        return [f"{source}: $: must be a JSON object ({operation} input)"]
    report = ParamValidator().validate(doc, input_shape(service, operation))
    if private_apis.lookup(private_apis.BOTOCORE_VALIDATION_ERRORS) is None:
        text = report.generate_report() if report.has_errors() else ""
        return [f"{source}: {line.strip()}" for line in text.splitlines() if line.strip()]
    problems = []
    for kind, name, info in report._errors:  # the report's structured form
        path = "$" + name
        if kind == "unknown field":
            problems.append(f"{source}: {json_path(path, info['unknown_param'])}: unknown key "
                            f"for {operation}; valid keys: {', '.join(info['valid_names'])}")
        elif kind == "missing required field":
            problems.append(f"{source}: {json_path(path, info['required_name'])}: required by "
                            f"{operation}")
        elif kind == "invalid type":
            types = ", ".join(t.split("'")[1] if "'" in t else t for t in info["valid_types"])
            problems.append(f"{source}: {path}: {info['param']!r} has the wrong type; "
                            f"{operation} takes {types}")
        else:
            problems.append(f"{source}: {path}: {kind}: {info}")
    return problems


def task_definition(doc: Mapping[str, Any], source: str, values: Mapping[str, Any],
                    role: str | None = None) -> list[str]:
    problems = against_model(doc, "ecs", "RegisterTaskDefinition", source)
    if problems:
        return problems
    problems += _roles(doc, source, values, role)
    if "FARGATE" in doc.get("requiresCompatibilities", []):
        problems += _fargate(doc, source)
    volumes = {v["name"] for v in doc.get("volumes", [])}
    containers = doc["containerDefinitions"]
    if not any(c.get("essential", True) for c in containers):
        problems.append(f"{source}: $.containerDefinitions: no container is essential")
    for i, c in enumerate(containers):
        problems += _container(c, f"$.containerDefinitions[{i}]", source, values, volumes)
    return problems


def _roles(doc: Mapping[str, Any], source: str, values: Mapping[str, Any],
           role: str | None) -> list[str]:
    """Each role's tasks run with that role's own task role, in the region's partition."""
    problems = []
    partition = partition_of(values["region"])
    for key in ("taskRoleArn", "executionRoleArn"):
        arn = doc.get(key, "")
        if arn and not arn.startswith(f"arn:{partition}:iam::"):
            problems.append(f"{source}: $.{key}: {arn!r} is not an IAM ARN of the region's "
                            f"partition (arn:{partition}:iam::...)")
    if role in ROLES and doc.get("taskRoleArn") != values[f"{role}_task_role_arn"]:
        problems.append(f"{source}: $.taskRoleArn: {doc.get('taskRoleArn')!r} is not the "
                        f"{role} task role {values[f'{role}_task_role_arn']} (write "
                        f"${{{role}_task_role_arn}}): each role's tasks get only its "
                        "permissions")
    return problems


def _fargate(doc: Mapping[str, Any], source: str) -> list[str]:
    problems = []
    if doc.get("networkMode") != "awsvpc":
        problems.append(f"{source}: $.networkMode: Fargate requires awsvpc, got "
                        f"{doc.get('networkMode')!r}")
    cpu, memory = _int(doc.get("cpu")), _int(doc.get("memory"))
    if cpu not in FARGATE_SIZES:
        problems.append(f"{source}: $.cpu: {doc.get('cpu')!r} is not a Fargate CPU size; "
                        f"use one of {', '.join(map(str, FARGATE_SIZES))}")
    elif memory not in FARGATE_SIZES[cpu] or (cpu, memory) in _SIZE_EXCEPTIONS:
        sizes = FARGATE_SIZES[cpu]
        problems.append(f"{source}: $.memory: {doc.get('memory')!r} MiB can't go with "
                        f"{cpu} CPU units on Fargate; use {sizes.start} to {sizes.stop - 1} "
                        f"in steps of {sizes.step}" if cpu != 256 else
                        f"{source}: $.memory: {doc.get('memory')!r} MiB can't go with 256 CPU "
                        "units on Fargate; use 512, 1024 or 2048")
    else:
        used = sum(c.get("cpu", 0) for c in doc["containerDefinitions"])
        if used > cpu:
            problems.append(f"{source}: $.containerDefinitions: the containers reserve {used} "
                            f"CPU units, more than the task's {cpu}")
    return problems


def _container(c: Mapping[str, Any], path: str, source: str, values: Mapping[str, Any],
               volumes: set[str]) -> list[str]:
    problems = []
    at = f"{source}: {path}"
    problems += _image(c.get("image", ""), f"{at}.image", values)
    user = str(c.get("user", ""))
    if user.split(":")[0] in ("", "0", "root"):
        problems.append(f"{at}.user: {user!r}: the containers run as UID 50000 (non-root); "
                        "set \"user\": \"50000\"")
    stop = c.get("stopTimeout")
    if stop is not None and not STOP_TIMEOUT_RANGE[0] <= stop <= STOP_TIMEOUT_RANGE[1]:
        problems.append(f"{at}.stopTimeout: {stop} is outside Fargate's "
                        f"{STOP_TIMEOUT_RANGE[0]}-{STOP_TIMEOUT_RANGE[1]} s")
    env = {e.get("name"): e.get("value") for e in c.get("environment", [])}
    if stop is not None and "AIRFLOW_ECS_STOP_TIMEOUT" in env and \
            env["AIRFLOW_ECS_STOP_TIMEOUT"] != str(stop):
        problems.append(f"{at}.environment: AIRFLOW_ECS_STOP_TIMEOUT="
                        f"{env['AIRFLOW_ECS_STOP_TIMEOUT']} differs from stopTimeout {stop}")
    names = [e.get("name") for e in c.get("environment", [])]
    for j, s in enumerate(c.get("secrets", [])):
        if s["name"] in names:
            problems.append(f"{at}.secrets[{j}].name: {s['name']} is also in environment")
        if not re.match(rf"^arn:{partition_of(values['region'])}:(ssm|secretsmanager):"
                        rf"{values['region']}:\d{{12}}:(parameter/|secret:)", s["valueFrom"]):
            problems.append(f"{at}.secrets[{j}].valueFrom: {s['valueFrom']!r} must be the ARN "
                            "of an SSM parameter or a Secrets Manager secret in the "
                            "region's partition")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        problems.append(f"{at}.environment: set twice: {', '.join(dupes)}")
    if "healthCheck" in c:
        problems += _health(c["healthCheck"], f"{at}.healthCheck",
                            healthcheck.start_allowance(healthcheck.container_env(c)))
    if (c.get("linuxParameters") or {}).get("initProcessEnabled"):
        problems.append(f"{at}.linuxParameters.initProcessEnabled: the images run tini as "
                        "PID 1 already; ECS's init would push it off PID 1 (remove the key)")
    mounts = {m.get("containerPath") for m in c.get("mountPoints", [])}
    for j, m in enumerate(c.get("mountPoints", [])):
        if m.get("sourceVolume") not in volumes:
            problems.append(f"{at}.mountPoints[{j}].sourceVolume: {m.get('sourceVolume')!r} "
                            "is not in $.volumes")
    if c.get("readonlyRootFilesystem") and "/tmp" not in mounts:  # noqa: S108
        problems.append(f"{at}.mountPoints: a read-only root needs a writable volume at /tmp")
    log = c.get("logConfiguration", {})
    if log.get("logDriver") != "awslogs":
        problems.append(f"{at}.logConfiguration.logDriver: must be awslogs")
    else:
        for option in ("awslogs-group", "awslogs-region", "awslogs-stream-prefix"):
            if not log.get("options", {}).get(option):
                problems.append(f"{at}.logConfiguration.options: {option} is required")
    return problems


def _image(image: str, at: str, values: Mapping[str, Any]) -> list[str]:
    expected = [f"{values['image_registry']}/{values['image_prefix']}{role}:{values['image_tag']}"
                for role in IMAGE_ROLES]
    if image not in expected:
        return [f"{at}: {image!r} is not one of our images with the rendered tag; expected one "
                f"of {', '.join(expected)}"]
    return []


def _health(check: Mapping[str, Any], at: str, allowance: int) -> list[str]:
    problems = []
    command = check.get("command", [])
    if not command or command[0] not in ("CMD", "CMD-SHELL") or len(command) < 2:
        problems.append(f"{at}.command: must be [\"CMD\", executable, args...] or "
                        f"[\"CMD-SHELL\", \"shell command\"], got {command!r}")
    elif command[0] == "CMD-SHELL" and len(command) != 2:
        problems.append(f"{at}.command: CMD-SHELL takes exactly one string")
    for key, (low, high) in HEALTH_LIMITS.items():
        value = check.get(key)
        if value is not None and not low <= value <= high:
            problems.append(f"{at}.{key}: {value} is outside ECS's {low}-{high}")
    timeout = check.get("timeout", 5)
    if timeout <= health.BUDGET:
        problems.append(f"{at}.timeout: {timeout} s does not exceed the health command's own "
                        f"{health.BUDGET:g} s budget: ECS would count a slow but "
                        "complete answer as a failure")
    gives_up = healthcheck.gives_up_after(check)
    if not problems and gives_up < allowance:
        problems.append(f"{at}: gives up after {gives_up} s (startPeriod + retries x interval), "
                        f"before the container's start-up allowance of {allowance} s (first "
                        "DAG sync + AIRFLOW_ECS_WAIT_TIMEOUT + margin): ECS would stop a "
                        "starting task before the entrypoint reports what it waits for; leave "
                        "the timings out to have them derived")
    return problems


def service(doc: Mapping[str, Any], source: str,
            task_definitions: Mapping[str, Mapping[str, Any]]) -> list[str]:
    problems = against_model(doc, "ecs", "CreateService", source)
    if problems:
        return problems
    family = doc["taskDefinition"].split(":")[0]
    task = task_definitions.get(family)
    if task is None:
        return [f"{source}: $.taskDefinition: {family!r} is not a rendered task definition "
                f"({', '.join(sorted(task_definitions))})"]
    if doc.get("launchType") == "FARGATE" and not doc.get("networkConfiguration", {}).get(
            "awsvpcConfiguration", {}).get("subnets"):
        problems.append(f"{source}: $.networkConfiguration.awsvpcConfiguration.subnets: "
                        "Fargate services need subnets")
    ports = {(c["name"], p.get("containerPort")): p.get("name")
             for c in task["containerDefinitions"] for p in c.get("portMappings", [])}
    for i, lb in enumerate(doc.get("loadBalancers", [])):
        if (lb.get("containerName"), lb.get("containerPort")) not in ports:
            problems.append(f"{source}: $.loadBalancers[{i}]: container "
                            f"{lb.get('containerName')!r} has no port {lb.get('containerPort')}")
    names = set(ports.values())
    for i, sc in enumerate(doc.get("serviceConnectConfiguration", {}).get("services", [])):
        if sc["portName"] not in names:
            problems.append(f"{source}: $.serviceConnectConfiguration.services[{i}].portName: "
                            f"{sc['portName']!r} is not a named port of {family}")
    return problems


def scalable_target(doc: Mapping[str, Any], source: str, services: set[str]) -> list[str]:
    problems = against_model(doc, "application-autoscaling", "RegisterScalableTarget", source)
    if problems:
        return problems
    if doc["MinCapacity"] > doc["MaxCapacity"]:
        problems.append(f"{source}: $.MinCapacity: {doc['MinCapacity']} is above MaxCapacity "
                        f"{doc['MaxCapacity']}")
    return problems + _resource_id(doc, source, services)


def scaling_policy(doc: Mapping[str, Any], source: str, services: set[str]) -> list[str]:
    problems = against_model(doc, "application-autoscaling", "PutScalingPolicy", source)
    return problems or _resource_id(doc, source, services)


def _resource_id(doc: Mapping[str, Any], source: str, services: set[str]) -> list[str]:
    if doc["ResourceId"] not in services:
        return [f"{source}: $.ResourceId: {doc['ResourceId']!r} is not a rendered service "
                f"({', '.join(sorted(services))})"]
    return []


def iam_policy(doc: Any, source: str, partition: str | None = None) -> list[str]:
    if not isinstance(doc, dict) or doc.get("Version") != "2012-10-17":
        return [f"{source}: $.Version: must be \"2012-10-17\""]
    statements = doc.get("Statement")
    if not isinstance(statements, list) or not statements:
        return [f"{source}: $.Statement: must be a non-empty list"]
    problems = []
    if partition is not None:
        problems += [f"{source}: {path}: {arn!r} is not in the region's partition "
                     f"(arn:{partition}:...)" for path, arn in _strings(doc, "$")
                     if arn.startswith("arn:") and arn.split(":")[1] != partition]
    for i, st in enumerate(statements):
        at = f"{source}: $.Statement[{i}]" + (f" (Sid {st['Sid']})" if st.get("Sid") else "")
        if st.get("Effect") not in ("Allow", "Deny"):
            problems.append(f"{at}: Effect must be Allow or Deny")
        actions = list(_as_list(st.get("Action")))
        if not actions:
            problems.append(f"{at}: Action is required")
        for action in actions:
            if not re.fullmatch(r"[a-z0-9\-]+:[A-Za-z0-9]+", action):
                problems.append(f"{at}: Action {action!r} must name one action (no wildcards)")
        if "Principal" in st:
            continue  # a trust policy: the resource is the role itself
        resources = list(_as_list(st.get("Resource")))
        if not resources:
            problems.append(f"{at}: Resource is required")
        if "*" in resources and not set(actions) <= WILDCARD_ACTIONS:
            problems.append(f"{at}: Resource \"*\" is allowed only for actions without "
                            f"resource-level permissions ({', '.join(sorted(WILDCARD_ACTIONS))})")
    return problems


def _strings(node: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(node, str):
        yield path, node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from _strings(value, json_path(path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _strings(value, json_path(path, i))


def _as_list(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        yield from value


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
