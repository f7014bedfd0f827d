"""The role names and their grammar, importable without the rest of the runtime.

`airflow-ecs health ROLE` parses a role too, and runs every 30 s: it must not
pay for the configuration module to do so.
"""

from __future__ import annotations

ROLES = (
    "scheduler",
    "dag-processor",
    "triggerer",
    "webserver",
    "worker",
    "flower",
    "migrate",
    "metrics",
)
# The Airflow command each long-running role execs. The official apache/airflow image
# takes the same words (without "airflow") as its command, so `docker run IMAGE
# scheduler` or `celery worker` start the matching role here too (entrypoint.cli).
COMMANDS: dict[str, tuple[str, ...]] = {
    "scheduler": ("airflow", "scheduler"),
    "dag-processor": ("airflow", "dag-processor"),
    "triggerer": ("airflow", "triggerer"),
    "webserver": ("airflow", "api-server"),
    "worker": ("airflow", "celery", "worker"),
    "flower": ("airflow", "celery", "flower"),
    "migrate": ("airflow", "db", "migrate"),
}
# Roles that may be combined with "+" into a process group under supervisord.
GROUPABLE_ROLES = ("scheduler", "dag-processor", "triggerer", "webserver", "worker", "flower")


def parse_role(value: str) -> str:
    """Validate ROLE (or a '+'-joined group); return it in canonical form."""
    parts = [p.strip() for p in value.split("+")]
    if len(parts) == 1:
        if parts[0] not in ROLES:
            raise ValueError(f"unknown role {value!r}; choose one of {', '.join(ROLES)} "
                             "or a '+'-joined group such as scheduler+dag-processor+triggerer")
        return parts[0]
    for part in parts:
        if part not in GROUPABLE_ROLES:
            raise ValueError(f"{part!r} can't be part of a process group; groups combine "
                             f"{', '.join(GROUPABLE_ROLES)}")
    if len(set(parts)) != len(parts):
        raise ValueError(f"role group {value!r} names a role twice")
    return "+".join(parts)
