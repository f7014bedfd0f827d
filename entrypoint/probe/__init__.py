"""The health probe: `airflow-ecs health ROLE`, run every 30 s beside a role.

Docker's HEALTHCHECK and ECS start it as a new process on a small task, so its
import cost is its budget (BENCHMARKS.md, health probes): it never imports
Airflow, Celery's app machinery or boto3, and every check is bounded by the
probe's deadline. The start-up waits reuse its dependency checks.
A probe whose own machinery fails (a library changed under it) reports that,
never a healthy dependency as unhealthy.
"""
