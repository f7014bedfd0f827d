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

import dataclasses
import json
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
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
# ElastiCache's engines, as the bill names them.
CACHE_ENGINES = {"valkey": "Valkey", "redis": "Redis OSS"}
SPOT = "FARGATE_SPOT"
SPOT_ARCH = "X86_64"  # the only architecture Fargate Spot runs (docs/deploy.md, "ARM64")
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
    # The essential container's environment, as the task definition sets it.
    environment: Mapping[str, str] = dataclasses.field(default_factory=dict)


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


def _environment(task_definition: Mapping[str, Any]) -> dict[str, str]:
    for container in task_definition.get("ContainerDefinitions", []):
        if container.get("Essential", True):
            return {str(e.get("Name")): str(e.get("Value"))
                    for e in container.get("Environment") or []}
    return {}


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
            arch=str(platform.get("CpuArchitecture", "X86_64")), environment=_environment(td)))
    return out


def load_peaks(path: Path | None = None) -> dict[str, Any] | None:
    """The measured peaks (bench/fanout.py), or None where no bench has written them."""
    path = path or PEAKS_FILE
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


# Airflow's own defaults for what bounds an api-server's database connections: each of its
# [api] workers keeps a SQLAlchemy pool of sql_alchemy_pool_size connections and opens up
# to sql_alchemy_max_overflow more under load (tests/unit/test_cost.py checks them against
# the installed Airflow; a task definition that sets one wins).
AIRFLOW_POOL_DEFAULTS = {"AIRFLOW__DATABASE__SQL_ALCHEMY_POOL_SIZE": 5,
                         "AIRFLOW__DATABASE__SQL_ALCHEMY_MAX_OVERFLOW": 10,
                         "AIRFLOW__API__WORKERS": 1}


@dataclass(frozen=True)
class DatabaseSize:
    """The RDS class a deployment needs at its maximum scale, and why."""

    instance: str
    connections: int  # needed at the maximum scale, headroom included
    max_connections: int  # what the class allows the deployment
    per_task: Mapping[str, int]  # connections budgeted for one task of each role
    tasks: Mapping[str, int]  # tasks of each role at the maximum scale
    vcpu: float  # the database CPU needed at the maximum scale, headroom included
    rest_vcpu: float  # and with every service at rest
    baseline_vcpu: float  # what the class sustains on its CPU credits
    slots: int  # worker slots of the scaled-out fleet
    monthly: float  # the instance a month at rest, surplus CPU credits included (no storage)
    scale_out: float  # what the surplus credits of the maximum scale add a month

    @property
    def surplus_vcpu(self) -> float:
        return max(self.rest_vcpu - self.baseline_vcpu, 0.0)


def _setting(svc: Service, name: str, default: int) -> int:
    raw = svc.environment.get(name)
    return default if raw is None else int(_number(raw, f"{svc.name}: {name}"))


def _webserver_pool(svc: Service) -> int:
    """The most connections one api-server task can open: its pool and overflow, for each
    of its workers."""
    size, overflow, workers = (_setting(svc, name, default)
                               for name, default in AIRFLOW_POOL_DEFAULTS.items())
    return (size + overflow) * workers


def _worker_concurrency(svcs: Sequence[Service]) -> dict[str, int]:
    """Each worker service's concurrency: its task definition's, else the images' default."""
    from entrypoint import config, defaults
    from entrypoint.airflow_names import WORKER_CONCURRENCY

    default = next(int(d.value) for d in defaults.tuned(config.load({}))
                   if d.name == WORKER_CONCURRENCY)
    return {s.name: _setting(s, WORKER_CONCURRENCY, default) for s in svcs if s.role == "worker"}


def _measured(measured: Mapping[str, Any] | None, key: str) -> Any:
    value = (measured or {}).get(key)
    if value is None:
        from entrypoint.tools.ecs.render import display

        raise ConfigError(f"{display(PEAKS_FILE)}: no {key!r} measured; the database is "
                          "sized from it: run `python -m bench fanout` to measure it")
    return value


def database_size(svcs: Sequence[Service], prices: Mapping[str, Any],
                  measured: Mapping[str, Any] | None, region: str) -> DatabaseSize:
    """The cheapest class of prices.json's database_classes that holds the deployment at its
    maximum scale: the connections every task of every service at its maximum count holds
    (the most one task of the role held in the fan-out, plus HEADROOM; an api-server what
    its pools allow, since its connections grow with the execution-API calls of every
    running task, which the fan-out's 8 slots don't reach), one migrate task besides. Its
    price, as the rest of the bill, at rest: the instance's hours, and the CPU load the
    database carries (prices.json, database_load_why) above the class's baseline billed as
    surplus CPU credits, as RDS bills a burstable class in its default unlimited mode; what
    the load of the maximum scale adds is given apart, as the services' scale-out is."""
    a = prices["assumptions"]
    at = _region(prices, region)
    held = _measured(measured, "peak_connections")
    idle_cpu = float(_measured(measured, "database_idle_cpu"))
    task_cpu = float(_measured(measured, "database_cpu_per_task"))
    per_task = {role: math.ceil(float(held.get(role, 0)) * (1 + HEADROOM)) for role in ROLES}
    webservers = [s for s in svcs if s.role == "webserver"]
    if webservers:
        per_task["webserver"] = max(per_task["webserver"],
                                    *(_webserver_pool(s) for s in webservers))
    connections = per_task["migrate"] + sum(per_task.get(s.role, 0) * s.max_count for s in svcs)
    concurrency = _worker_concurrency(svcs)

    def load(tasks: Callable[[Service], int]) -> tuple[int, float]:
        slots = sum(concurrency[s.name] * tasks(s) for s in svcs if s.role == "worker")
        schedulers = sum(tasks(s) for s in svcs if s.role == "scheduler")
        return slots, (schedulers * idle_cpu
                       + slots * task_cpu / float(a["database_task_seconds"])) * (1 + HEADROOM)

    slots, vcpu = load(lambda s: s.max_count)
    rest_vcpu = load(lambda s: s.count)[1]
    at_most = {role: sum(s.max_count for s in svcs if s.role == role)
               for role in ("scheduler", "webserver", "worker")}
    hours = float(a["hours_per_month"])
    instances = 2 if a["database_multi_az"] else 1  # a standby's credits are billed too
    fits = []
    for cls in a["database_classes"]:
        name = str(cls["class"])
        allowed = math.floor(float(cls["memory_gib"]) * 2**30 * float(a["database_memory_share"])
                             / float(a["database_bytes_per_connection"])) \
            - int(a["database_reserved_connections"])
        if connections > allowed:
            continue
        if name not in at["database_hour"]:
            raise ConfigError(f"{PRICES_FILE.name}: {region} has no database_hour for {name}; "
                              "add its Multi-AZ hourly price")
        baseline = float(cls["baseline_vcpu"])
        credit = float(at["database_cpu_credit_vcpu_hour"]) * instances * hours
        rest = max(rest_vcpu - baseline, 0.0) * credit
        fits.append(DatabaseSize(name, connections, allowed, per_task, at_most, vcpu, rest_vcpu,
                                 baseline, slots, float(at["database_hour"][name]) * hours + rest,
                                 max(vcpu - baseline, 0.0) * credit - rest))
    if not fits:
        raise ConfigError(f"no database class in {PRICES_FILE.name} holds {connections} "
                          "connections at this deployment's maximum scale; add a larger class "
                          "to its database_classes, with its prices")
    return min(fits, key=lambda size: size.monthly)  # the smaller of two equal: the first


def load_prices(path: Path = PRICES_FILE) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the price list: {exc}") from None
    return data


@dataclass(frozen=True)
class Line:
    item: str
    quantity: str
    monthly: float


@dataclass(frozen=True)
class Bill:
    """One deployment's monthly bill in one region, beside MWAA's at comparable capacity."""

    region: str
    ours: list[Line]
    spot_workers: float  # our total with every worker task on Fargate Spot
    mwaa: list[Line]
    scale_out: list[str]  # what the scaled-out services add at their maximum
    database: DatabaseSize

    @property
    def total(self) -> float:
        return sum(line.monthly for line in self.ours)

    @property
    def mwaa_total(self) -> float:
        return sum(line.monthly for line in self.mwaa)


def _region(prices: Mapping[str, Any], region: str) -> Mapping[str, Any]:
    regions = prices["regions"]
    if region not in regions:
        raise ConfigError(f"--region {region}: {PRICES_FILE.name} has no prices for it; "
                          f"choose one of {', '.join(sorted(regions))}, or add the region's "
                          f"figures to {PRICES_FILE}")
    return dict(regions[region])


def _task_hour(svc: Service, fargate: Mapping[str, Any]) -> float:
    if svc.arch not in fargate:
        raise ConfigError(f"{svc.name}: RuntimePlatform.CpuArchitecture {svc.arch!r} has no "
                          f"Fargate price in {PRICES_FILE.name}; known: "
                          f"{', '.join(sorted(fargate))}")
    price = fargate[svc.arch]
    return float(svc.vcpu * price["vcpu_hour"] + svc.memory_gib * price["gib_hour"])


def _size(svc: Service) -> str:
    return f"{svc.vcpu:g} vCPU, {svc.memory_gib:g} GiB, {svc.arch}"


def _money(value: float) -> str:
    return f"{value:,.2f}"


def bill(stack: Mapping[str, Any], region: str,
         prices: Mapping[str, Any] | None = None,
         measured: Mapping[str, Any] | None = None) -> Bill:
    """The monthly bill of a rendered template's resources, and MWAA's at comparable
    capacity: as many schedulers and web servers as ours run, and MWAA workers of
    mwaa.worker_vcpu for as many vCPUs as our workers' steady tasks have. The database's
    class comes from what the bench measured (database_size; default: PEAKS_FILE)."""
    prices = prices if prices is not None else load_prices()
    measured = measured if measured is not None else load_peaks()
    at, a, mw = _region(prices, region), prices["assumptions"], prices["mwaa"]
    hours, discount = float(a["hours_per_month"]), float(a["spot_discount"])
    ours: list[Line] = []
    spot_saving = 0.0
    scale_out = []
    svcs = services(stack)
    for svc in svcs:
        task = _task_hour(svc, at["fargate"]) * hours
        on_spot = svc.spot_tasks
        ours.append(Line(
            f"Fargate: {svc.name} ({svc.role})",
            f"{svc.count} x {_size(svc)}, "
            + ("on-demand" if on_spot == 0 else f"{on_spot:g} of them on Spot "
               f"(assumed {discount:.0%} off)"),
            task * (svc.count - on_spot * discount)))
        if svc.role == "worker":
            # Fargate Spot runs X86_64 tasks only: an ARM64 worker moved to Spot is priced
            # as the X86_64 task of its size, less the discount.
            spot_task = _task_hour(dataclasses.replace(svc, arch=SPOT_ARCH),
                                   at["fargate"]) * hours * (1 - discount)
            spot_saving += (task - spot_task) * (svc.count - on_spot)
        if svc.max_count > svc.count:
            scale_out.append(f"{svc.name} scaled out to its maximum of {svc.max_count} tasks "
                             f"adds {_money(task * (svc.max_count - svc.count))} a month "
                             "on-demand while it lasts")
    albs = len(_resources(stack, LOAD_BALANCER))
    if not albs and any(s.get("LoadBalancers") for s in _resources(stack, SERVICE).values()):
        albs = 1  # the target group given in the settings belongs to a load balancer
    if albs:
        ours.append(Line("Application Load Balancer", f"{albs} x (1 h + {a['alb_lcu']} LCU) "
                         "an hour", albs * (at["alb"]["hour"] + a["alb_lcu"]
                                            * at["alb"]["lcu_hour"]) * hours))
    engine = str(a["cache_engine"])
    ours.append(Line(f"ElastiCache {CACHE_ENGINES.get(engine, engine)} (assumed)",
                     f"{a['redis_nodes']} x {a['redis_node_type']}",
                     a["redis_nodes"] * at["cache_node_hour"][engine] * hours))
    database = database_size(svcs, prices, measured, region)
    credits = (f", {database.surplus_vcpu:.2f} vCPU of surplus CPU credits"
               if database.surplus_vcpu else "")
    if database.scale_out > 0:
        scale_out.append(f"The database's load with every service at its maximum adds "
                         f"{_money(database.scale_out)} a month of surplus CPU credits while "
                         "it lasts")
    ours.append(Line("RDS PostgreSQL (sized below)",
                     f"{database.instance}"
                     + (" Multi-AZ" if a["database_multi_az"] else "")
                     + f", {a['database_storage_gib']} GiB gp3{credits}",
                     database.monthly
                     + a["database_storage_gib"] * at["database_storage_gib_month"]))
    logs = Line("CloudWatch Logs (estimate)",
                f"{a['log_ingest_gib_per_month']} GiB ingested and kept a month",
                a["log_ingest_gib_per_month"] * (at["log_ingest_gib"]
                                                 + at["log_storage_gib_month"]))
    ours.append(logs)

    price = at["mwaa"]

    def count(role: str) -> int:
        return sum(s.count for s in svcs if s.role == role)

    schedulers, webservers = count("scheduler"), count("webserver")
    workers = math.ceil(sum(s.count * s.vcpu for s in svcs if s.role == "worker")
                        / mw["worker_vcpu"])
    mwaa = [Line(f"MWAA {mw['class']} environment",
                 f"{mw['included_schedulers']} schedulers, {mw['included_webservers']} web "
                 f"servers, {mw['included_workers']} worker and the metadata database included",
                 price["environment_hour"] * hours)]
    for what, n, included, hour in (
            ("schedulers", schedulers, mw["included_schedulers"], price["scheduler_hour"]),
            ("web servers", webservers, mw["included_webservers"], price["webserver_hour"]),
            ("workers", workers, mw["included_workers"], price["worker_hour"])):
        if n > included:
            mwaa.append(Line(f"MWAA additional {what}", f"{n - included} x {mw['class']}",
                             (n - included) * hour * hours))
    mwaa.append(Line("MWAA metadata database storage",
                     f"{a['database_storage_gib']} GiB, as ours",
                     a["database_storage_gib"] * price["database_storage_gib_month"]))
    mwaa.append(logs)
    total = sum(line.monthly for line in ours)
    return Bill(region, ours, total - spot_saving, mwaa, scale_out, database)


def _table(lines: Sequence[Line], total: str, amount: float) -> list[str]:
    return ["| item | quantity | USD a month |", "| --- | --- | ---: |",
            *(f"| {x.item} | {x.quantity} | {_money(x.monthly)} |" for x in lines),
            f"| **{total}** | | **{_money(amount)}** |"]


def report(stack: Mapping[str, Any], region: str, source: str,
           prices: Mapping[str, Any] | None = None,
           peaks: Mapping[str, Any] | None = None) -> str:
    """The Markdown of `airflow-ecs cost`: our bill, MWAA's, the ratio, and the task
    memory against the measured peaks where a bench has measured them."""
    prices = prices if prices is not None else load_prices()
    b = bill(stack, region, prices, peaks)
    a = prices["assumptions"]
    lines = [f"### {source} in {region}", "",
             *_table(b.ours, "ours, as rendered", b.total),
             f"| ours with every worker task on Fargate Spot ({SPOT_ARCH}, assumed "
             f"{a['spot_discount']:.0%} off) | | {_money(b.spot_workers)} |", ""]
    lines += [f"MWAA at comparable capacity ({prices['mwaa']['class']}: as many schedulers and "
              f"web servers as ours, {prices['mwaa']['worker_vcpu']}-vCPU workers for our "
              "workers' vCPUs):", "",
              *_table(b.mwaa, "MWAA", b.mwaa_total), ""]
    lines.append(f"Ours against MWAA: {b.total / b.mwaa_total:.1%} on-demand, "
                 f"{b.spot_workers / b.mwaa_total:.1%} with the workers on Fargate Spot.")
    if b.scale_out:
        lines += ["", *(f"- {text}." for text in b.scale_out)]
    lines += ["", _database_text(b.database)]
    if peaks:
        measured = peaks.get("peak_mib", {})
        lines += ["", f"Task memory against the peaks measured by `python -m bench fanout` "
                  f"({peaks.get('measured')}, {peaks.get('machine')}) plus {HEADROOM:.0%}:", "",
                  f"| role | task memory | measured peak | peak + {HEADROOM:.0%} |",
                  "| --- | ---: | ---: | ---: |"]
        lines += [f"| {role} | {size:,} MiB | {measured[role]:,.1f} MiB | "
                  f"{math.ceil(measured[role] * (1 + HEADROOM)):,} MiB |"
                  for role, size in sorted(task_memory(stack).items()) if role in measured]
        lines += ["", *(memory_warnings(stack, measured)
                        or ["no warning: every measured role has the headroom"])]
    return "\n".join(lines) + "\n"


def _database_text(db: DatabaseSize) -> str:
    held = ", ".join(f"{n} {role} task{'s' if n != 1 else ''} x {db.per_task[role]}"
                     for role, n in db.tasks.items() if n)
    return (f"The database, sized for the deployment at its maximum scale: {db.connections} "
            f"connections ({held}, and {db.per_task['migrate']} for a migrate task) of the "
            f"{db.max_connections} a {db.instance} allows; {db.vcpu:.2f} vCPU of load "
            f"({db.slots} worker slots), {db.rest_vcpu:.2f} at rest, against the "
            f"{db.baseline_vcpu:g} vCPU its CPU credits sustain (the load above it is billed "
            "as surplus credits, RDS's unlimited mode); the cheapest class that holds the "
            "connections, surplus credits at rest included. A "
            "database result backend instead of Redis (docs/deploy.md, step 4) would add a "
            f"connection for each worker slot, {db.slots} more.")


def run(settings_file: Path | None, env: Mapping[str, str], region: str | None) -> str:
    """Render the deployment in memory and return its bill (`airflow-ecs cost`)."""
    from entrypoint.tools.ecs.render import display, render

    rendered = render(settings_file, env)
    source = display(settings_file) if settings_file else "the environment's settings"
    return report(rendered.stack, region or str(rendered.settings["region"]), source,
                  peaks=load_peaks())


DOCS_BEGIN = "<!-- cost:begin (generated by `python -m entrypoint.tools.cost`) -->"
DOCS_END = "<!-- cost:end -->"
SETTINGS_DIR = ROOT / "task-definitions" / "settings"
# The smallest production setup: two schedulers and two web servers (a task may stop at any
# time on Fargate), one worker at rest, each task the smallest Fargate size whose memory
# holds the role's measured peak plus HEADROOM, at half a vCPU (what the fan-out used of
# each role's CPU, BENCHMARKS.md, with room for bursts); tests/unit/test_cost.py checks
# the sizes against bench/results/memory-peaks.json.
SMALLEST = "smallest.json"
GOAL = 0.40  # the smallest production setup, on-demand, at most this share of MWAA's bill


def docs() -> str:
    """docs/cost.md's generated part: the committed settings files' bills in their region,
    and the smallest in every region priced, with the goal's verdict."""
    from entrypoint.tools.ecs.render import render

    prices = load_prices()
    sections: list[str] = []
    smallest = SETTINGS_DIR / SMALLEST
    names = [smallest, *sorted(p for p in SETTINGS_DIR.glob("*.json") if p != smallest)]
    verdicts = []
    for path in names:
        rendered = render(path, {})
        source = str(path.relative_to(ROOT))
        regions = [str(rendered.settings["region"])]
        if path == smallest:
            regions += sorted(set(prices["regions"]) - set(regions))
        for region in regions:
            sections.append(report(rendered.stack, region, source, prices))
            if path == smallest:
                b = bill(rendered.stack, region, prices)
                ratio = b.total / b.mwaa_total
                fixed = sum(x.monthly for x in b.ours if not x.item.startswith("Fargate"))
                verdicts.append(
                    f"- {source} in {region}: {_money(b.total)} against MWAA's "
                    f"{_money(b.mwaa_total)} USD a month, {ratio:.1%} on-demand (goal: at most "
                    f"{GOAL:.1%}): **{'met' if ratio <= GOAL else 'missed'}**; "
                    f"{b.spot_workers / b.mwaa_total:.1%} with the workers on Fargate Spot. "
                    f"Without any Fargate task, the load balancer, Redis, PostgreSQL and logs "
                    f"alone come to {_money(fixed)}, {fixed / b.mwaa_total:.1%} of MWAA's.")
    return "\n".join([DOCS_BEGIN, "", "## The smallest production setup against MWAA", "",
                      *verdicts, "", *sections, DOCS_END])


if __name__ == "__main__":
    print(docs())
