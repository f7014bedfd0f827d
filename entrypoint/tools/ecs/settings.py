"""Deployment settings: a JSON settings file, overridden by AIRFLOW_ECS_DEPLOY_* variables.

Every setting is declared once below (name, kind, default, meaning); docs/deploy.md
lists them and a test keeps that table equal to this one. `load()` reports every
problem at once, each naming the setting, where it came from (the file or the
variable) and the fix. Derived values used by the templates (role ARNs, bucket
and prefix of an S3 URI, ...) are computed here, in one place.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from entrypoint import __version__
from entrypoint.errors import ConfigError
from entrypoint.tools.ecs import healthcheck, template

ENV_PREFIX = "AIRFLOW_ECS_DEPLOY_"
ROLES = ("scheduler", "webserver", "worker", "migrate")
COUNT_LIMITS = {"scheduler_count": (1, 10), "webserver_count": (1, 100)}
# Most tasks of one worker service: a typo (10000 for 100) would otherwise let the
# autoscaler start as many as the account's Fargate quota allows.
WORKER_COUNT_CAP = 1000
ARCHITECTURES = ("X86_64", "ARM64")
ON_DEMAND, SPOT = "FARGATE", "FARGATE_SPOT"  # ECS's Fargate capacity providers
# ECS's bounds of a capacity provider strategy item.
CAPACITY_BASE_CAP, CAPACITY_WEIGHT_CAP = 100_000, 1000
# A set's name goes into its service, family, scaling policy and alarm names, and into a
# CloudFormation logical id: its parts capitalised, hyphens dropped. Each part starts with
# a letter, so that two names never give one id ("a-1" and "a1" would).
_SET_NAME = re.compile(r"^[a-z][a-z0-9]*(-[a-z][a-z0-9]*)*$")
_SET_NAME_MAX = 20
# A Celery queue name as the worker's --queues and the metrics role's syntax take it.
_QUEUE = re.compile(r"^[A-Za-z0-9_.\-]{1,100}$")
SET_KEYS = ("name", "queues", "cpu", "memory", "concurrency", "min_count", "max_count",
            "target_backlog", "capacity", "architecture")
CAPACITY_KEYS = ("on_demand_base", "on_demand_weight", "spot_weight")


@dataclasses.dataclass(frozen=True)
class WorkerSet:
    """One worker service: the templates of the worker role rendered with these values."""

    name: str  # "" for the one worker of a deployment without worker_sets
    queues: tuple[str, ...]  # empty: Airflow's default queue (the worker's own default)
    cpu: str
    memory: str
    concurrency: int
    min_count: int
    max_count: int
    target_backlog: int
    # ECS's capacityProviderStrategy; None: launchType FARGATE, as without worker_sets.
    capacity: tuple[tuple[tuple[str, Any], ...], ...] | None
    architecture: str

    @property
    def stem(self) -> str:
        """Name of the set's rendered files: worker.json, worker-NAME.json, ..."""
        return f"worker-{self.name}" if self.name else "worker"

    def template_values(self, deployment: str) -> dict[str, Any]:
        """What the worker role's templates are filled with for this set."""
        family = f"{deployment}-{self.stem}"
        command = ["run", "worker"]
        if self.queues:
            # `airflow celery worker` consumes [operators] default_queue unless told
            # otherwise; that option also becomes the worker's Celery default queue, where
            # "a,b" would name one queue: the set's queues go on the command line instead.
            command += ["--", "--queues", ",".join(self.queues)]
        return {
            "worker_set_name": self.name,
            "worker_cpu": self.cpu, "worker_memory": self.memory,
            "worker_concurrency": self.concurrency, "worker_min_count": self.min_count,
            "worker_max_count": self.max_count, "worker_target_backlog": self.target_backlog,
            "worker_service": family, "worker_family": family,
            "worker_architecture": self.architecture, "worker_command": command,
            "worker_launch_type": "FARGATE" if self.capacity is None else template.OMIT,
            "worker_capacity_provider_strategy": (
                template.OMIT if self.capacity is None else [dict(item)
                                                               for item in self.capacity]),
        }


@dataclasses.dataclass(frozen=True)
class DeploySetting:
    name: str
    kind: str  # "text", "int", "bool", "list" or "sets"
    default: Any
    meaning: str

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()


REQUIRED = object()

DEPLOY_SETTINGS: tuple[DeploySetting, ...] = (
    DeploySetting("account_id", "text", REQUIRED, "AWS account id (12 digits)."),
    DeploySetting("region", "text", REQUIRED, "AWS region, e.g. eu-west-1."),
    DeploySetting("name", "text", "airflow",
                  "Prefix of task families, services, roles and the log group."),
    DeploySetting("cluster", "text", "airflow", "ECS cluster the services run in."),
    DeploySetting("image_registry", "text", "",
                  "Registry of the images; empty: the account's ECR registry in the region."),
    DeploySetting("image_prefix", "text", "airflow-ecs/",
                  "Repository prefix: images are REGISTRY/PREFIX{base,scheduler,webserver,"
                  "worker}."),
    DeploySetting("image_tag", "text", __version__,
                  "Tag of every image (`make push TAG=...`); never `latest`."),
    DeploySetting("ssm_path", "text", REQUIRED,
                  "Parameter Store path every role loads as its environment "
                  "(AIRFLOW_ECS_SSM_PATH)."),
    DeploySetting("admin_password_parameter", "text", "",
                  "Parameter (outside ssm_path) ECS injects into the webserver task as "
                  "AIRFLOW_ECS_ADMIN_PASSWORD, the admin login; empty: put "
                  "AIRFLOW_ECS_ADMIN_PASSWORD under ssm_path instead."),
    DeploySetting("webserver_ssm_path", "text", "",
                  "Parameter Store path (outside ssm_path) the webserver alone loads besides "
                  "ssm_path (AIRFLOW_ECS_SSM_ROLE_PATH): its login settings and secrets, such "
                  "as the LDAP bind password, which no other role may read; empty: none."),
    DeploySetting("dags_git_token_parameter", "text", "",
                  "Parameter (outside ssm_path) ECS injects as AIRFLOW_ECS_DAGS_GIT_TOKEN into "
                  "the roles that read DAGs."),
    DeploySetting("kms_key_arn", "text", "",
                  "Customer managed KMS key of the SecureStrings and secrets; empty: the AWS "
                  "managed keys, which need no KMS statement."),
    DeploySetting("secrets_manager_secrets", "list", [],
                  "Names of the Secrets Manager secrets that `secretsmanager:` references may "
                  "read (the task role gets these only)."),
    DeploySetting("dags_source", "text", "image", "Where DAGs come from: image, git or s3."),
    DeploySetting("dags_git_url", "text", "", "Git repository of the DAGs (dags_source git)."),
    DeploySetting("dags_git_ref", "text", "main", "Branch, tag or commit sha of the DAGs."),
    DeploySetting("dags_s3_uri", "text", "", "s3://BUCKET/PREFIX/ of the DAGs (dags_source s3)."),
    DeploySetting("dags_versioned", "bool", False,
                  "Versioned DAG bundles (AIRFLOW_ECS_DAGS_VERSIONED, docs/dags.md): each DAG "
                  "run keeps the DAG version it started with; dags_source git or s3."),
    DeploySetting("dags_s3_manifest_uri", "text", "",
                  "s3://BUCKET/PREFIX/ outside dags_s3_uri where the dag-processor keeps each "
                  "DAG version's object list (AIRFLOW_ECS_DAGS_S3_MANIFEST_URI), so workers can "
                  "build older versions; versioned S3 DAGs only; empty: none."),
    DeploySetting("dags_refresh_seconds", "int", 60,
                  "Seconds between DAG syncs in running tasks (0: at start only)."),
    DeploySetting("dags_sync_timeout", "int", 120,
                  "Deadline in seconds of one DAG sync (AIRFLOW_ECS_DAGS_SYNC_TIMEOUT); the "
                  "first sync at start counts towards the health checks' start-up allowance."),
    DeploySetting("wait_timeout", "int", 300,
                  "Deadline in seconds of the dependency waits at start "
                  "(AIRFLOW_ECS_WAIT_TIMEOUT); the health checks give a starting task this "
                  "long, plus the first DAG sync, before they count a failure."),
    DeploySetting("remote_logs_s3_uri", "text", REQUIRED,
                  "s3://BUCKET/PREFIX/ for task logs: workers are ephemeral, their disks too."),
    DeploySetting("log_group", "text", "", "CloudWatch log group; empty: /ecs/NAME."),
    DeploySetting("subnets", "list", REQUIRED, "Private subnets of the tasks."),
    DeploySetting("security_groups", "list", [],
                  "Security groups of the tasks (required unless cloudformation_stack is set: "
                  "the stack makes its own)."),
    DeploySetting("assign_public_ip", "text", "DISABLED", "ENABLED or DISABLED."),
    DeploySetting("target_group_arn", "text", "",
                  "ALB target group of the webserver (health check path /api/v2/monitor/health); "
                  "empty: no load balancer."),
    DeploySetting("service_connect_namespace", "text", "",
                  "Cloud Map namespace of Service Connect, through which workers reach the "
                  "execution API at http://webserver:PORT/execution/; empty: NAME."),
    DeploySetting("execution_api_url", "text", "",
                  "URL of the execution API for workers; empty: "
                  "http://webserver:API_PORT/execution/ through Service Connect."),
    DeploySetting("api_port", "int", 8080, "Port of the api-server (AIRFLOW_ECS_API_PORT)."),
    DeploySetting("scheduler_cpu", "text", "2048", "Scheduler task CPU units."),
    DeploySetting("scheduler_memory", "text", "4096", "Scheduler task memory (MiB)."),
    DeploySetting("webserver_cpu", "text", "1024", "Webserver task CPU units."),
    DeploySetting("webserver_memory", "text", "2048", "Webserver task memory (MiB)."),
    DeploySetting("worker_cpu", "text", "1024", "Worker task CPU units."),
    DeploySetting("worker_memory", "text", "2048", "Worker task memory (MiB)."),
    DeploySetting("migrate_cpu", "text", "512", "Migrate task CPU units."),
    DeploySetting("migrate_memory", "text", "2048", "Migrate task memory (MiB)."),
    *(DeploySetting(f"{role}_architecture", "text", "X86_64",
                    f"CPU architecture of the {role} tasks: X86_64, or ARM64 (Graviton, about "
                    "20% less on Fargate), which image_architectures must list"
                    + (" (the default of a worker set's)." if role == "worker" else "."))
      for role in ROLES),
    DeploySetting("scheduler_count", "int", 2,
                  "Scheduler tasks (1 to 10); with 2 or more, a task lost or replaced leaves "
                  "one scheduling."),
    DeploySetting("webserver_count", "int", 2, "Webserver tasks (1 to 100)."),
    DeploySetting("worker_min_count", "int", 1, "Fewest workers (at least 1)."),
    DeploySetting("worker_max_count", "int", 10, "Most workers."),
    DeploySetting("worker_concurrency", "int", 4,
                  "Task slots per worker (AIRFLOW__CELERY__WORKER_CONCURRENCY)."),
    DeploySetting("worker_target_backlog", "int", 4,
                  "Target of BacklogPerWorker (queued + running tasks per worker); the worker "
                  "concurrency keeps every slot busy."),
    DeploySetting("worker_sets", "sets", [],
                  "Worker services, each with its own Celery queues, size, counts, capacity "
                  "(on-demand, spot or a mix) and architecture (see \"Worker sets\"); the "
                  "worker_* settings above are their defaults. Empty: one worker service, "
                  "NAME-worker, on the default queue."),
    DeploySetting("image_architectures", "list", ["X86_64"],
                  "CPU architectures the pushed images hold (X86_64, ARM64): the roles' "
                  "*_architecture and the worker sets' may name these only."),
    DeploySetting("metrics_namespace", "text", "AirflowEcs",
                  "CloudWatch namespace of the metrics."),
    DeploySetting("cloudformation_stack", "text", "",
                  "CloudFormation stack `deploy` creates or updates from "
                  "build/task-definitions/cloudformation.json; empty: `deploy` calls the ECS and "
                  "Application Auto Scaling APIs instead."),
    DeploySetting("vpc_id", "text", "",
                  "VPC of the subnets (the stack's VpcId; required with cloudformation_stack)."),
    DeploySetting("public_subnets", "list", [],
                  "Subnets of the stack's internet-facing load balancer, in two zones or more "
                  "(PublicSubnetIds; required with cloudformation_stack)."),
    DeploySetting("certificate_arn", "text", "",
                  "ACM certificate of the stack's HTTPS listener (CertificateArn; required with "
                  "cloudformation_stack)."),
    DeploySetting("load_balancer_cidr", "text", "0.0.0.0/0",
                  "Addresses the stack's load balancer takes HTTPS from "
                  "(LoadBalancerIngressCidr)."),
    DeploySetting("redis_security_group", "text", "",
                  "Security group of the Redis: the stack lets the tasks that use Redis in on "
                  "6379 (RedisSecurityGroupId); empty: add that rule yourself, for the stack's "
                  "RedisClientSecurityGroups output."),
    DeploySetting("database_security_group", "text", "",
                  "Security group of the database: the stack lets every task in on 5432 "
                  "(DatabaseSecurityGroupId); empty: add that rule yourself, for the stack's "
                  "DatabaseClientSecurityGroups output."),
    DeploySetting("database_instance", "text", "",
                  "RDS instance identifier of the metadata database: the stack alarms on its "
                  "connections (DatabaseInstanceIdentifier); empty: no such alarm."),
    DeploySetting("database_connections_threshold", "int", 0,
                  "Connections above which that alarm fires, below the instance's "
                  "max_connections (DatabaseConnectionsThreshold; required with "
                  "database_instance)."),
    DeploySetting("alarm_topic_arn", "text", "",
                  "SNS topic the stack's alarms notify (AlarmTopicArn); empty: they notify no "
                  "one."),
    DeploySetting("log_retention_days", "int", 30,
                  "Days the stack's log group keeps the containers' logs (one of CloudWatch "
                  "Logs' retention periods)."),
    DeploySetting("stack_timeout", "int", 3600,
                  "Seconds `deploy` waits for each change of the stack to finish."),
    DeploySetting("migrate_timeout", "int", 900, "Seconds `deploy` waits for the migrate task."),
    DeploySetting("poll_seconds", "int", 6, "Seconds between `deploy`'s status polls."),
)
BY_NAME = {s.name: s for s in DEPLOY_SETTINGS}

_BUCKET = r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]"
_S3_URI = re.compile(rf"^s3://(?P<bucket>{_BUCKET})/(?P<prefix>(?:[^/].*/)?)$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,30}$")
_SSM = re.compile(r"^/[A-Za-z0-9_.\-/]*/$")
_SSM_NAME = re.compile(r"^/[A-Za-z0-9_.\-/]*[A-Za-z0-9_.\-]$")
_STACK = re.compile(r"^[A-Za-z][A-Za-z0-9\-]{0,127}$")
_DB_INSTANCE = re.compile(r"^[A-Za-z](?:-?[A-Za-z0-9])*$")
# The periods CloudWatch Logs accepts as a log group's retention.
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096,
                      1827, 2192, 2557, 2922, 3288, 3653)


def load(settings_file: Path | None, env: Mapping[str, str]) -> dict[str, Any]:
    """Return every setting plus the derived values; raise ConfigError listing all problems."""
    problems: list[str] = []
    raw: dict[str, Any] = {}
    origin: dict[str, str] = {}
    if settings_file is not None:
        try:
            data = json.loads(Path(settings_file).read_text())
        except OSError as exc:
            raise ConfigError(f"settings file {settings_file}: cannot read it: "
                              f"{exc.strerror}") from None
        except json.JSONDecodeError as exc:
            raise ConfigError(f"settings file {settings_file}: not JSON: {exc.msg} at line "
                              f"{exc.lineno} column {exc.colno}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"settings file {settings_file}: must be a JSON object")
        for key, value in data.items():
            if key not in BY_NAME:
                problems.append(f"{settings_file}: $.{key}: unknown setting (a typo?); "
                                "see docs/deploy.md")
                continue
            raw[key] = value
            origin[key] = f"{settings_file}: $.{key}"
    for name in sorted(n for n in env if n.startswith(ENV_PREFIX)):
        key = name[len(ENV_PREFIX):].lower()
        if key not in BY_NAME:
            problems.append(f"{name}: unknown setting (a typo?); see docs/deploy.md")
            continue
        raw[key] = env[name]
        origin[key] = name

    values: dict[str, Any] = {}
    for setting in DEPLOY_SETTINGS:
        where = origin.get(setting.name, f"{settings_file or 'settings'}: $.{setting.name}")
        if setting.name not in raw:
            if setting.default is REQUIRED:
                problems.append(f"{where}: required (or set {setting.env}); {setting.meaning}")
                continue
            values[setting.name] = setting.default
            continue
        value, problem = _convert(setting, raw[setting.name])
        if problem:
            problems.append(f"{where}: {problem}")
            continue
        values[setting.name] = value
    if problems:
        raise ConfigError(problems)
    problems.extend(_check(values, origin, settings_file))
    if problems:
        raise ConfigError(problems)
    return _derive(values)


def _convert(setting: DeploySetting, value: Any) -> tuple[Any, str | None]:
    if setting.kind == "sets":
        if isinstance(value, str):  # the variable's form: the same JSON as in the file
            try:
                value = json.loads(value) if value.strip() else []
            except json.JSONDecodeError as exc:
                return None, f"must be a JSON list of objects: {exc.msg}"
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            return None, ("must be a list of objects such as {\"name\": \"heavy\", "
                          f"\"queues\": [\"heavy\"]}}, got {value!r}")
        return value, None
    if setting.kind == "int":
        if isinstance(value, bool):
            return None, f"must be a whole number, got {value!r}"
        try:
            return int(value), None
        except (TypeError, ValueError):
            return None, f"must be a whole number, got {value!r}"
    if setting.kind == "bool":
        if isinstance(value, bool):
            return value, None
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true", None
        return None, f"must be true or false, got {value!r}"
    if setting.kind == "list":
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            return None, f"must be a list of strings (or comma-separated), got {value!r}"
        return value, None
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None, f"must be a string, got {value!r}"
    return str(value).strip(), None


def _check(v: dict[str, Any], origin: dict[str, str], settings_file: Path | None) -> list[str]:
    def where(key: str) -> str:
        return origin.get(key, f"{settings_file or 'settings'}: $.{key} (default)")

    problems = []

    def need(ok: bool, key: str, fix: str) -> None:
        if not ok:
            problems.append(f"{where(key)}: {v[key]!r} {fix}")

    need(bool(re.fullmatch(r"\d{12}", v["account_id"])), "account_id", "must be 12 digits")
    need(bool(re.fullmatch(r"[a-z]{2}(-[a-z]+)+-\d", v["region"])), "region",
         "must be a region name, e.g. eu-west-1")
    need(bool(_NAME.match(v["name"])), "name",
         "must be 1-31 letters, digits, - or _ (it prefixes every family and service)")
    need(bool(_NAME.match(v["cluster"])), "cluster", "must be a cluster name")
    need(bool(_TAG.match(v["image_tag"])) and v["image_tag"] != "latest", "image_tag",
         "must be a Docker tag other than `latest` (a deployment names one build)")
    need(v["image_prefix"] == "" or bool(re.fullmatch(r"[a-z0-9][a-z0-9._/\-]*/",
                                                       v["image_prefix"])),
         "image_prefix", "must be empty or lower-case path segments ending in '/'")
    need(bool(_SSM.match(v["ssm_path"])), "ssm_path",
         "must be a Parameter Store path starting and ending with '/', e.g. /airflow/prod/")
    if v["webserver_ssm_path"]:
        need(bool(_SSM.match(v["webserver_ssm_path"])), "webserver_ssm_path",
             "must be a Parameter Store path starting and ending with '/', e.g. "
             "/airflow/prod-webserver/")
        need(not (v["webserver_ssm_path"].startswith(v["ssm_path"])
                  or v["ssm_path"].startswith(v["webserver_ssm_path"])), "webserver_ssm_path",
             f"must be outside ssm_path {v['ssm_path']} (and not contain it): every role "
             "loads ssm_path, and this path is for the webserver alone")
    for key in ("admin_password_parameter", "dags_git_token_parameter"):
        value = v[key]
        if not value:
            continue
        need(bool(_SSM_NAME.match(value)), key, "must be a parameter name starting with '/'")
        need(not value.startswith(v["ssm_path"]), key,
             f"must be outside ssm_path {v['ssm_path']}: every role loads the parameters "
             "under it, and this one is for ECS to inject where it is needed only")
    need(v["dags_source"] in ("image", "git", "s3"), "dags_source", "must be image, git or s3")
    if v["dags_source"] == "git":
        need(bool(v["dags_git_url"]), "dags_git_url", "is required with dags_source git")
    if v["dags_source"] == "s3":
        need(bool(_S3_URI.match(v["dags_s3_uri"])), "dags_s3_uri",
             "must be s3://BUCKET/PREFIX/ (ending in '/') with dags_source s3")
    if v["dags_versioned"]:
        need(v["dags_source"] in ("git", "s3"), "dags_versioned",
             "needs dags_source git or s3 (the image's DAGs have one version)")
    if v["dags_s3_manifest_uri"]:
        manifests = v["dags_s3_manifest_uri"]
        need(bool(_S3_URI.match(manifests)), "dags_s3_manifest_uri",
             "must be s3://BUCKET/PREFIX/ (ending in '/')")
        need(v["dags_versioned"] and v["dags_source"] == "s3", "dags_s3_manifest_uri",
             "is for versioned S3 DAGs: set dags_versioned true and dags_source s3, or remove it")
        need(not (v["dags_s3_uri"] and (manifests.startswith(v["dags_s3_uri"])
                                        or v["dags_s3_uri"].startswith(manifests))),
             "dags_s3_manifest_uri", f"must be outside dags_s3_uri {v['dags_s3_uri']}: the "
             "manifests would become DAG files")
    need(bool(_S3_URI.match(v["remote_logs_s3_uri"])), "remote_logs_s3_uri",
         "must be s3://BUCKET/PREFIX/ (ending in '/')")
    need(v["assign_public_ip"] in ("ENABLED", "DISABLED"), "assign_public_ip",
         "must be ENABLED or DISABLED")
    need(bool(v["subnets"]), "subnets", "must name at least one subnet")
    stack = v["cloudformation_stack"]
    need(bool(v["security_groups"]) or bool(stack), "security_groups",
         "must name at least one security group (or set cloudformation_stack: the stack "
         "makes the tasks' groups)")
    need(not stack or bool(_STACK.match(stack)), "cloudformation_stack",
         "must be a stack name: a letter, then letters, digits or - (128 at most)")
    need(not v["vpc_id"] or bool(re.fullmatch(r"vpc-[0-9a-f]{8,17}", v["vpc_id"])), "vpc_id",
         "must be a VPC id, e.g. vpc-0a1b2c3d4e5f60000")
    need(all(re.fullmatch(r"subnet-[0-9a-f]{8,17}", x) for x in v["public_subnets"]),
         "public_subnets", "must be subnet ids, e.g. subnet-0a1b2c3d4e5f60004")
    for key in ("redis_security_group", "database_security_group"):
        need(not v[key] or bool(re.fullmatch(r"sg-[0-9a-f]{8,17}", v[key])), key,
             "must be empty or a security group id, e.g. sg-0a1b2c3d4e5f60005")
    need(not v["database_instance"] or (len(v["database_instance"]) <= 63 and
                                        bool(_DB_INSTANCE.match(v["database_instance"]))),
         "database_instance", "must be empty or an RDS instance identifier (a letter, then "
         "letters, digits or single hyphens, 63 at most)")
    need(v["database_connections_threshold"] >= (1 if v["database_instance"] else 0),
         "database_connections_threshold",
         "must be at least 1 with database_instance: set it below the instance's "
         "max_connections")
    try:
        cidr = ipaddress.IPv4Network(v["load_balancer_cidr"])
    except ValueError:
        cidr = None
    need(cidr is not None and str(cidr) == v["load_balancer_cidr"], "load_balancer_cidr",
         "must be an IPv4 network such as 0.0.0.0/0 or 203.0.113.0/24 (no host bits set)")
    need(v["log_retention_days"] in LOG_RETENTION_DAYS, "log_retention_days",
         f"must be one of CloudWatch Logs' periods: {', '.join(map(str, LOG_RETENTION_DAYS))}")
    if stack:
        for key in ("vpc_id", "certificate_arn"):
            need(bool(v[key]), key, f"is required with cloudformation_stack {stack!r}")
        need(len(v["public_subnets"]) >= 2, "public_subnets",
             f"must name two subnets or more, in different zones, with cloudformation_stack "
             f"{stack!r} (the load balancer's)")
    need(v["worker_max_count"] <= WORKER_COUNT_CAP, "worker_max_count",
         f"must be at most {WORKER_COUNT_CAP} (a typo? each is a Fargate task)")
    architectures = v["image_architectures"]
    need(bool(architectures) and all(a in ARCHITECTURES for a in architectures),
         "image_architectures", f"must list architectures among {', '.join(ARCHITECTURES)}")
    for role in ROLES:
        fix = _architecture_fix(v[f"{role}_architecture"], architectures)
        need(fix is None, f"{role}_architecture", fix or "")
    problems.extend(worker_sets_of(v, origin.get("worker_sets", ""), settings_file)[1])
    need(v["worker_min_count"] >= 1, "worker_min_count",
         "must be at least 1: the backlog per worker can't scale a service out from 0")
    need(v["worker_max_count"] >= v["worker_min_count"], "worker_max_count",
         "must be at least worker_min_count")
    need(1 <= v["worker_concurrency"] <= 256, "worker_concurrency", "must be from 1 to 256")
    need(v["worker_target_backlog"] >= 1, "worker_target_backlog", "must be at least 1")
    need(0 <= v["dags_refresh_seconds"] <= 86400, "dags_refresh_seconds",
         "must be from 0 to 86400")
    need(1 <= v["api_port"] <= 65535, "api_port", "must be a port number")
    need(not v["execution_api_url"] or bool(re.match(r"^https?://[^/]+/(.*/)?execution/$",
                                                      v["execution_api_url"])),
         "execution_api_url", "must be an http(s) URL ending in /execution/")
    for key, (low, high) in COUNT_LIMITS.items():
        need(low <= v[key] <= high, key, f"must be from {low} to {high}")
    need(1 <= v["wait_timeout"] <= 86400, "wait_timeout", "must be from 1 to 86400")
    need(1 <= v["dags_sync_timeout"] <= 86400, "dags_sync_timeout", "must be from 1 to 86400")
    if not problems:
        sync = v["dags_sync_timeout"] if v["dags_source"] in healthcheck.SYNCING_SOURCES else 0
        allowance = sync + v["wait_timeout"] + healthcheck.START_MARGIN
        need(allowance <= healthcheck.longest_allowance(), "wait_timeout",
             f"plus the first DAG sync ({sync} s) and {healthcheck.START_MARGIN} s of start-up "
             f"is {allowance} s, longer than ECS's health check can wait "
             f"({healthcheck.longest_allowance()} s)")
    partition = partition_of(v["region"])
    for key, service in (("kms_key_arn", "kms"), ("target_group_arn", "elasticloadbalancing"),
                         ("certificate_arn", "acm"), ("alarm_topic_arn", "sns")):
        need(not v[key] or v[key].startswith(f"arn:{partition}:{service}:{v['region']}:"),
             key, f"must be an ARN of the region's partition: arn:{partition}:{service}:"
             f"{v['region']}:...")
    need(v["poll_seconds"] >= 1, "poll_seconds", "must be at least 1")
    need(v["migrate_timeout"] >= v["poll_seconds"], "migrate_timeout",
         "must be at least poll_seconds")
    need(v["stack_timeout"] >= v["poll_seconds"], "stack_timeout",
         "must be at least poll_seconds")
    return problems


def worker_sets_of(v: Mapping[str, Any], origin: str,
                   settings_file: Path | None) -> tuple[list[WorkerSet], list[str]]:
    """The worker sets of checked settings, and the problems of `worker_sets`, each naming
    its JSON path (`FILE: $.worker_sets[1].queues`) and the fix."""
    if not v["worker_sets"]:
        return [WorkerSet("", (), v["worker_cpu"], v["worker_memory"], v["worker_concurrency"],
                          v["worker_min_count"], v["worker_max_count"],
                          v["worker_target_backlog"], None, v["worker_architecture"])], []
    if origin.startswith(ENV_PREFIX):
        base = f"{origin}: $"
    else:
        base = origin or f"{settings_file or 'settings'}: $.worker_sets"
    problems: list[str] = []
    sets: list[WorkerSet] = []
    names: dict[str, int] = {}
    owners: dict[str, int] = {}
    for i, raw in enumerate(v["worker_sets"]):
        at = f"{base}[{i}]"
        before = len(problems)
        for key in raw:
            if key not in SET_KEYS:
                problems.append(f"{at}.{key}: unknown key of a worker set (a typo?); a set "
                                f"takes {', '.join(SET_KEYS)}")
        name = raw.get("name")
        if not isinstance(name, str) or not _SET_NAME.match(name) or len(name) > _SET_NAME_MAX:
            problems.append(f"{at}.name: {name!r} must be 1-{_SET_NAME_MAX} lower-case letters, "
                            "digits and single hyphens, each part starting with a letter, e.g. "
                            "heavy or spot-2g (it ends the set's service name, NAME-worker-SET)")
        elif name in names:
            problems.append(f"{at}.name: {name!r} is also the name of worker_sets"
                            f"[{names[name]}]: give each set its own name")
        else:
            names[name] = i
        queues = raw.get("queues")
        if not isinstance(queues, list) or not queues:
            problems.append(f"{at}.queues: required: a list of the Celery queues the set's "
                            "workers consume, e.g. [\"default\"] (a task goes to a queue by "
                            "its operator's queue= argument)")
            queues = []
        for queue in queues:
            if not isinstance(queue, str) or not _QUEUE.match(queue):
                problems.append(f"{at}.queues: {queue!r} must be a queue name: 1-100 letters, "
                                "digits, _ . or -")
            elif queue in owners:
                problems.append(f"{at}.queues: {queue!r} is also a queue of worker_sets"
                                f"[{owners[queue]}]: each queue belongs to one set (its "
                                "backlog scales that set); remove it from one of them")
            else:
                owners[queue] = i
        counts = {}
        for key, setting, low, high in (
                ("concurrency", "worker_concurrency", 1, 256),
                ("min_count", "worker_min_count", 1, WORKER_COUNT_CAP),
                ("max_count", "worker_max_count", 1, WORKER_COUNT_CAP),
                ("target_backlog", "worker_target_backlog", 1, 100_000)):
            value = raw.get(key, v[setting])
            if isinstance(value, bool) or not isinstance(value, int) or \
                    not low <= value <= high:
                problems.append(f"{at}.{key}: {value!r} must be a whole number from {low} to "
                                f"{high}" + (" (the backlog per worker can't scale a service "
                                             "out from 0)" if key == "min_count" else ""))
            counts[key] = value
        if not len(problems) - before and counts["min_count"] > counts["max_count"]:
            problems.append(f"{at}.max_count: {counts['max_count']} must be at least min_count "
                            f"{counts['min_count']}")
        size = {}
        for key, setting in (("cpu", "worker_cpu"), ("memory", "worker_memory")):
            value = raw.get(key, v[setting])
            if isinstance(value, bool) or not isinstance(value, str | int) or \
                    not str(value).isdigit():
                problems.append(f"{at}.{key}: {value!r} must be a number, e.g. "
                                f"{BY_NAME[setting].default!r} (a Fargate task size)")
            size[key] = str(value)
        # Without its own, a set runs on worker_architecture, whose own check names it.
        architecture = raw.get("architecture", v["worker_architecture"])
        fix = _architecture_fix(architecture, v["image_architectures"])
        if "architecture" in raw and fix:
            shown = architecture if architecture in ARCHITECTURES else repr(architecture)
            problems.append(f"{at}.architecture: {shown} {fix}")
        capacity, capacity_problems = _capacity(raw.get("capacity", "on-demand"),
                                                f"{at}.capacity")
        problems.extend(capacity_problems)
        if capacity and architecture == "ARM64" and any(
                dict(item)["capacityProvider"] == SPOT and dict(item)["weight"] > 0
                for item in capacity):
            # ECS: "Linux tasks with the ARM64 architecture don't support the Fargate Spot
            # capacity provider."
            problems.append(f"{at}.capacity: Fargate Spot runs X86_64 tasks only, not "
                            "ARM64: make this set \"on-demand\", or its architecture X86_64")
        if len(problems) == before:
            sets.append(WorkerSet(name, tuple(queues), size["cpu"], size["memory"],
                                  counts["concurrency"], counts["min_count"],
                                  counts["max_count"], counts["target_backlog"], capacity,
                                  architecture))
    return sets, problems


def _architecture_fix(architecture: Any, images: list[str]) -> str | None:
    """What is wrong with a role's or a set's architecture, as the fix; None when it fits."""
    if architecture not in ARCHITECTURES:
        return f"must be one of {', '.join(ARCHITECTURES)}"
    if architecture not in images:
        return (f"is not among image_architectures {images}: build and push images for it "
                f"(docs/deploy.md, \"ARM64\"), then add {architecture} to "
                "image_architectures")
    return None


def _capacity(value: Any, at: str) -> tuple[tuple[tuple[tuple[str, Any], ...], ...],
                                            list[str]]:
    """ECS's capacityProviderStrategy of a set's `capacity`: "on-demand", "spot", or
    {"on_demand_base": N, "on_demand_weight": W, "spot_weight": W} (a base of N tasks on
    Fargate, the rest split by weight; the weights default to 0 and 1)."""
    fix = ('must be "on-demand", "spot" or {"on_demand_base": N, "on_demand_weight": W, '
           '"spot_weight": W}')
    if value in ("on-demand", "spot"):
        provider = ON_DEMAND if value == "on-demand" else SPOT
        return ((("capacityProvider", provider), ("weight", 1)),), []
    if not isinstance(value, dict):
        return (), [f"{at}: {value!r} {fix}"]
    problems = [f"{at}.{key}: unknown key; {fix}" for key in value if key not in CAPACITY_KEYS]
    got = {}
    for key, default, high in (("on_demand_base", 0, CAPACITY_BASE_CAP),
                               ("on_demand_weight", 0, CAPACITY_WEIGHT_CAP),
                               ("spot_weight", 1, CAPACITY_WEIGHT_CAP)):
        number = value.get(key, default)
        if isinstance(number, bool) or not isinstance(number, int) or not 0 <= number <= high:
            problems.append(f"{at}.{key}: {number!r} must be a whole number from 0 to {high}")
        got[key] = number
    if not problems and got["on_demand_weight"] + got["spot_weight"] < 1:
        problems.append(f"{at}: on_demand_weight and spot_weight are both 0: ECS places no "
                        "task beyond the base; give spot_weight (or on_demand_weight) 1 or more")
    if problems:
        return (), problems
    on_demand = (("capacityProvider", ON_DEMAND), ("base", got["on_demand_base"]),
                 ("weight", got["on_demand_weight"]))
    return (on_demand, (("capacityProvider", SPOT), ("weight", got["spot_weight"]))), []


def _derive(v: dict[str, Any]) -> dict[str, Any]:
    out = dict(v)
    region, account = v["region"], v["account_id"]
    partition = out["partition"] = partition_of(region)
    out["dns_suffix"] = dns_suffix_of(partition)
    out["image_registry"] = (v["image_registry"]
                             or f"{account}.dkr.ecr.{region}.{out['dns_suffix']}")
    out["log_group"] = v["log_group"] or f"/ecs/{v['name']}"
    out["service_connect_namespace"] = v["service_connect_namespace"] or v["name"]
    out["execution_api_url"] = (v["execution_api_url"]
                                or f"http://webserver:{v['api_port']}/execution/")
    out["execution_role_arn"] = f"arn:{partition}:iam::{account}:role/{v['name']}-ecs-execution"
    for role in ROLES:
        out[f"{role}_task_role_arn"] = (f"arn:{partition}:iam::{account}:role/"
                                        f"{task_role_name(v['name'], role)}")
    out["worker_service"] = f"{v['name']}-worker"
    out["worker_sets"], _ = worker_sets_of(v, "", None)
    out["ssm_path_trimmed"] = v["ssm_path"].rstrip("/")
    out["webserver_ssm_path_trimmed"] = v["webserver_ssm_path"].rstrip("/")
    out["dags_s3_uri"] = v["dags_s3_uri"] if v["dags_source"] == "s3" else ""
    out["dags_git_url"] = v["dags_git_url"] if v["dags_source"] == "git" else ""
    out["dags_git_token_parameter"] = (v["dags_git_token_parameter"]
                                       if v["dags_source"] == "git" else "")
    out["dags_s3_manifest_uri"] = v["dags_s3_manifest_uri"] if out["dags_s3_uri"] else ""
    manifests = (_S3_URI.match(out["dags_s3_manifest_uri"]) if out["dags_s3_manifest_uri"]
                 else None)
    out["manifest_bucket"], out["manifest_prefix"] = ((manifests["bucket"], manifests["prefix"])
                                                      if manifests else ("", ""))
    dags = _S3_URI.match(out["dags_s3_uri"]) if out["dags_s3_uri"] else None
    out["dags_bucket"], out["dags_prefix"] = (dags["bucket"], dags["prefix"]) if dags else ("", "")
    logs = _S3_URI.match(v["remote_logs_s3_uri"])
    assert logs is not None  # checked above
    out["logs_bucket"], out["logs_prefix"] = logs["bucket"], logs["prefix"]
    out["secrets_manager_arns"] = [
        f"arn:{partition}:secretsmanager:{region}:{account}:secret:{name}-??????"
        for name in v["secrets_manager_secrets"]]
    out["injected_parameter_arns"] = [parameter_arn(out, name) for name in
                                      (out["admin_password_parameter"],
                                       out["dags_git_token_parameter"]) if name]
    return out


def parameter_arn(values: Mapping[str, Any], name: str) -> str:
    return (f"arn:{partition_of(values['region'])}:ssm:{values['region']}:"
            f"{values['account_id']}:parameter{name}")


def partition_of(region: str) -> str:
    """The AWS partition a region belongs to: the second field of every ARN in it."""
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


def dns_suffix_of(partition: str) -> str:
    """Domain of the partition's service endpoints (ECR registries, kms:ViaService)."""
    return "amazonaws.com.cn" if partition == "aws-cn" else "amazonaws.com"


def task_role_name(name: str, role: str) -> str:
    """IAM role of one role's tasks: each gets only the permissions that role uses."""
    return f"{name}-ecs-task-{role}"
