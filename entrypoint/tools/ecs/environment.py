"""What each container is told: environment, ECS-injected secrets, network and tags.

These composite values are built here rather than spelled out in every template,
so that the four task definitions can't drift apart. No value here is secret:
secrets stay in Parameter Store (the SSM path, loaded by the entrypoint) or are
injected by ECS from `valueFrom` ARNs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from entrypoint.config import declared, format_worker_sets
from entrypoint.tools.ecs import healthcheck
from entrypoint.tools.ecs.settings import parameter_arn

SYNCED_DAGS_DIR = "/opt/airflow/dags-data/dags"


def template_values(s: Mapping[str, Any]) -> dict[str, Any]:
    """The settings plus the composite values the templates place whole."""
    values = dict(s)
    values["airflow_environment"] = "per role"  # replaced per task definition in render
    sets = s["worker_sets"]
    metrics = {
        "AIRFLOW_ECS_SSM_PATH": s["ssm_path"],
        "AWS_REGION": s["region"],
        "AIRFLOW_ECS_METRICS_CLUSTER": s["cluster"],
        "AIRFLOW_ECS_METRICS_NAMESPACE": s["metrics_namespace"],
    }
    if any(w.queues for w in sets):
        # Each set's backlog is its own queues', divided by its own running workers.
        metrics[declared("metrics_worker_sets").name] = format_worker_sets(
            [(w.template_values(s["name"])["worker_service"], w.queues) for w in sets])
    else:
        metrics[declared("metrics_worker_service").name] = s["worker_service"]
    values["metrics_environment"] = _env(metrics)
    arns = [f"arn:{s['partition']}:ecs:{s['region']}:{s['account_id']}:service/{s['cluster']}/"
            f"{w.template_values(s['name'])['worker_service']}" for w in sets]
    # One ARN stays a string, as a policy with one worker service has always had it.
    values["worker_service_arns"] = arns[0] if len(arns) == 1 else arns
    values["dags_secrets"] = _secrets(s, {"AIRFLOW_ECS_DAGS_GIT_TOKEN":
                                          s["dags_git_token_parameter"]})
    # The webserver writes the admin account from it at start; no other role needs it.
    values["webserver_secrets"] = _secrets(s, {"AIRFLOW_ECS_ADMIN_PASSWORD":
                                               s["admin_password_parameter"]})
    values["network_configuration"] = {"awsvpcConfiguration": {
        "subnets": list(s["subnets"]),
        "securityGroups": list(s["security_groups"]),
        "assignPublicIp": s["assign_public_ip"],
    }}
    values["webserver_load_balancers"] = ([{
        "targetGroupArn": s["target_group_arn"],
        "containerName": "webserver",
        "containerPort": s["api_port"],
    }] if s["target_group_arn"] else [])
    values["tags"] = [{"key": "airflow-ecs:deployment", "value": s["name"]}]
    # The load balancer's checks fail until the api-server listens: ECS ignores them for
    # as long as the container's own health check does.
    values["webserver_start_allowance"] = healthcheck.start_allowance(
        {e["name"]: e["value"] for e in airflow_environment(s, "webserver")})
    return values


def airflow_environment(s: Mapping[str, Any], role: str) -> list[dict[str, str]]:
    """The environment of an Airflow container of this role (scheduler, webserver, worker,
    migrate)."""
    env = {
        "AIRFLOW_ECS_SSM_PATH": s["ssm_path"],
        "AWS_REGION": s["region"],
        # By default Service Connect gives the webserver service this name in every task.
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": s["execution_api_url"],
        # Workers are ephemeral, and their disks with them: task logs go to S3,
        # with the task role's credentials.
        "AIRFLOW__LOGGING__REMOTE_LOGGING": "True",
        "AIRFLOW__LOGGING__REMOTE_BASE_LOG_FOLDER": s["remote_logs_s3_uri"].rstrip("/"),
        "AIRFLOW__LOGGING__REMOTE_LOG_CONN_ID": "aws_default",
        "AIRFLOW_CONN_AWS_DEFAULT": json.dumps({"conn_type": "aws"}),
        # A log uploaded to S3 is deleted from the task's disk: a long-lived worker or
        # triggerer would otherwise fill Fargate's ephemeral storage with them.
        "AIRFLOW__LOGGING__DELETE_LOCAL_LOGS": "True",
        # Stated here, not left to Parameter Store, so that the health check's timings
        # derived from it hold (the task definition's environment wins).
        "AIRFLOW_ECS_WAIT_TIMEOUT": str(s["wait_timeout"]),
    }
    if role == "webserver":
        env["AIRFLOW_ECS_API_PORT"] = str(s["api_port"])
        if s["webserver_ssm_path"]:
            env[declared("ssm_role_path").name] = s["webserver_ssm_path"]
    if role == "worker":
        env["AIRFLOW__CELERY__WORKER_CONCURRENCY"] = str(s["worker_concurrency"])
    # The api-server and the migration read DAGs from the database, not from files.
    if role in ("scheduler", "worker") and s["dags_source"] != "image":
        env["AIRFLOW_ECS_DAGS_SOURCE"] = s["dags_source"]
        env["AIRFLOW_ECS_DAGS_DIR"] = SYNCED_DAGS_DIR
        env["AIRFLOW_ECS_DAGS_REFRESH_SECONDS"] = str(s["dags_refresh_seconds"])
        env["AIRFLOW_ECS_DAGS_SYNC_TIMEOUT"] = str(s["dags_sync_timeout"])
        if s["dags_source"] == "git":
            env["AIRFLOW_ECS_DAGS_GIT_URL"] = s["dags_git_url"]
            env["AIRFLOW_ECS_DAGS_GIT_REF"] = s["dags_git_ref"]
        else:
            env["AIRFLOW_ECS_DAGS_S3_URI"] = s["dags_s3_uri"]
        if s["dags_versioned"]:
            env[declared("dags_versioned").name] = "true"
            if s["dags_s3_manifest_uri"]:
                env[declared("dags_s3_manifest_uri").name] = s["dags_s3_manifest_uri"]
    return _env(env)


def _env(env: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"name": k, "value": v} for k, v in sorted(env.items())]


def _secrets(s: Mapping[str, Any], names: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"name": name, "valueFrom": parameter_arn(s, parameter)}
            for name, parameter in sorted(names.items()) if parameter]
