"""Operator tooling: run on an operator's machine or in CI, never in a container.

`ecs/`: render, validate and deploy the ECS task definitions, services, scaling
and IAM policies (`airflow-ecs render|deploy`, `make task-definitions`).
`reference`: the configuration tables of the README and docs/deploy.md,
generated from the settings tables.
"""
