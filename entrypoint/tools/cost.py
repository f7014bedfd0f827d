"""`airflow-ecs cost`: the monthly bill of a rendered deployment, beside AWS MWAA's.

The compute is read from the rendered CloudFormation template, generically: every
AWS::ECS::Service, its task definition's Cpu, Memory and RuntimePlatform, its
CapacityProviderStrategy (FARGATE, FARGATE_SPOT) or LaunchType, and its task count
(DesiredCount, or the MinCapacity of the scalable target that refers to it). So any
number of worker services is counted, each as its template says. What the template
does not hold (the Redis cluster, the PostgreSQL database, the log volume) is priced
from the stated assumptions of prices.json, as are all prices: AWS's public price pages,
written down by hand (cited there by URL, with the date), never fetched by this command.

`python -m entrypoint.tools.cost` prints docs/cost.md's generated part; a test checks
the document holds it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from entrypoint.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
PRICES_FILE = Path(__file__).with_name("prices.json")
# Written by `python -m bench fanout` (bench/fanout.py): each role's measured peak memory.
PEAKS_FILE = ROOT / "bench" / "results" / "memory-peaks.json"
# A task's memory should exceed the measured peak by at least this share: the peak is one
# small DAG on a local stack; real DAGs, more of them and bursts of work take more.
HEADROOM = 0.30
# The roles whose peaks are measured and compared; the deployment's roles.
ROLES = ("migrate", "scheduler", "webserver", "worker")
SPOT = "FARGATE_SPOT"
ON_DEMAND = "FARGATE"
SERVICE = "AWS::ECS::Service"
TASK_DEFINITION = "AWS::ECS::TaskDefinition"
SCALABLE_TARGET = "AWS::ApplicationAutoScaling::ScalableTarget"
LOAD_BALANCER = "AWS::ElasticLoadBalancingV2::LoadBalancer"


@dataclass(frozen=True)
class Service:
    """One ECS service's steady tasks, as the template declares them."""

    name: str  # the logical id in the template
    role: str
    vcpu: float
    memory_gib: float
    count: int  # tasks always running: DesiredCount, or the scaling target's minimum
    max_count: int  # the scaling target's maximum (count where the service does not scale)
    spot_tasks: float  # of count, how many the capacity-provider strategy puts on Spot
    arch: str  # X86_64 or ARM64


def _resources(stack: Mapping[str, Any], kind: str) -> dict[str, Mapping[str, Any]]:
    return {name: r.get("Properties", {}) for name, r in stack.get("Resources", {}).items()
            if r.get("Type") == kind}


def _logical_ids(node: Any) -> Iterator[str]:
    """The logical ids a part of a template refers to (Ref and Fn::GetAtt)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "Ref" and isinstance(value, str):
                yield value
            elif key == "Fn::GetAtt" and isinstance(value, list) and value:
                yield str(value[0])
            else:
                yield from _logical_ids(value)
    elif isinstance(node, list):
        for item in node:
            yield from _logical_ids(item)


def role_of(task_definition: Mapping[str, Any], fallback: str) -> str:
    """The role an ECS task runs: its essential container's `run ROLE` (the first role of
    a `+` group such as scheduler+dag-processor+triggerer), else that container's name."""
    for container in task_definition.get("ContainerDefinitions", []):
        if not container.get("Essential", True):
            continue
        command = container.get("Command") or []
        if len(command) >= 2 and command[0] == "run":
            return str(command[1]).split("+")[0]
        return str(container.get("Name", fallback))
    return fallback


def _number(value: Any, where: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: expected a number, got {value!r} (cost reads the "
                          "rendered template's literal values)") from None


def task_memory(stack: Mapping[str, Any]) -> dict[str, int]:
    """Each role's task memory (MiB), the largest where several task definitions run it."""
    out: dict[str, int] = {}
    for name, td in _resources(stack, TASK_DEFINITION).items():
        role = role_of(td, name)
        out[role] = max(out.get(role, 0), int(_number(td.get("Memory"), f"{name}.Memory")))
    return out


def _spot_tasks(strategy: Sequence[Mapping[str, Any]], count: int) -> float:
    """How many of count tasks a capacity-provider strategy puts on FARGATE_SPOT: the
    provider with a base gets its base first, the rest is shared by weight (ECS rounds
    task by task; the expected share is what a month's bill averages to)."""
    spot = 0.0
    rest = count
    for item in strategy:
        base = min(int(item.get("Base", 0)), rest)
        if item.get("CapacityProvider") == SPOT:
            spot += base
        rest -= base
    weights = {str(i.get("CapacityProvider")): float(i.get("Weight", 0)) for i in strategy}
    total = sum(weights.values())
    if rest > 0 and total > 0:
        spot += rest * weights.get(SPOT, 0.0) / total
    return spot


def services(stack: Mapping[str, Any]) -> list[Service]:
    """Every ECS service of the template with its task size, count, Spot share and CPU
    architecture."""
    tds = _resources(stack, TASK_DEFINITION)
    targets = _resources(stack, SCALABLE_TARGET)
    out = []
    for name, svc in sorted(_resources(stack, SERVICE).items()):
        refs = list(_logical_ids(svc.get("TaskDefinition")))
        if not refs or refs[0] not in tds:
            raise ConfigError(f"{name}.TaskDefinition: refers to no AWS::ECS::TaskDefinition "
                              "of the template")
        td = tds[refs[0]]
        scaling = [t for t in targets.values() if name in _logical_ids(t.get("ResourceId"))]
        if "DesiredCount" in svc:
            count = int(_number(svc["DesiredCount"], f"{name}.DesiredCount"))
        elif scaling:
            count = int(_number(scaling[0].get("MinCapacity"), f"{name}'s MinCapacity"))
        else:
            count = 1  # CloudFormation's default DesiredCount
        maximum = int(_number(scaling[0].get("MaxCapacity"), f"{name}'s MaxCapacity")) \
            if scaling else count
        strategy = svc.get("CapacityProviderStrategy")
        if strategy:
            spot = _spot_tasks(strategy, count)
        else:
            spot = float(count) if svc.get("LaunchType") == SPOT else 0.0
        platform = td.get("RuntimePlatform") or {}
        out.append(Service(
            name=name, role=role_of(td, name),
            vcpu=_number(td.get("Cpu"), f"{refs[0]}.Cpu") / 1024,
            memory_gib=_number(td.get("Memory"), f"{refs[0]}.Memory") / 1024,
            count=count, max_count=max(maximum, count), spot_tasks=spot,
            arch=str(platform.get("CpuArchitecture", "X86_64"))))
    return out


def load_peaks(path: Path = PEAKS_FILE) -> dict[str, Any] | None:
    """The measured peaks (bench/fanout.py), or None where no bench has written them."""
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not JSON ({exc.msg}); rerun `python -m bench fanout` "
                          "to write it again") from None
    return data


def memory_warnings(stack: Mapping[str, Any], peaks: Mapping[str, float],
                    headroom: float = HEADROOM) -> list[str]:
    """A line for each role whose task memory is below its measured peak plus headroom."""
    lines = []
    for role, size in sorted(task_memory(stack).items()):
        peak = peaks.get(role)
        if peak is None:
            continue
        wanted = math.ceil(peak * (1 + headroom))
        if size < wanted:
            lines.append(f"warning: {role}: task memory {size} MiB is below the measured peak "
                         f"{peak:,.1f} MiB plus {headroom:.0%} headroom ({wanted} MiB); raise "
                         f"{role}_memory in the settings file")
    return lines
