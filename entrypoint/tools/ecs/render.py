"""Render task-definitions/ with a deployment's settings into build/task-definitions/.

Layout of the templates (the output mirrors it):

    task-definitions/ROLE.json          RegisterTaskDefinition input, one per role
    task-definitions/services/*.json    CreateService input
    task-definitions/scaling/*-target.json, *-policy.json
                                        RegisterScalableTarget / PutScalingPolicy input
    task-definitions/iam/*.json         IAM policy documents; task-role-policy.json is
                                        rendered once per role, as
                                        iam/task-role-policy-ROLE.json
    (no template)                       cloudformation.json: all of the above as one
                                        CloudFormation stack (cloudformation.py), with
                                        the resources the API path expects to exist

Nothing is written unless every file renders and validates; the problems of all
files are reported together.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from entrypoint.errors import ConfigError
from entrypoint.tools.ecs import (
    cloudformation,
    environment,
    healthcheck,
    settings,
    template,
    validate,
)

TEMPLATES = Path(__file__).resolve().parents[3] / "task-definitions"
TASK_ROLE_POLICY = "task-role-policy"
WORKER = "worker"  # the role whose templates are rendered once per worker set


@dataclass(frozen=True)
class Rendered:
    """The validated documents of one deployment, by path relative to the output folder."""

    settings: Mapping[str, Any]
    documents: dict[str, Any]

    def task_definitions(self) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.documents.items()
                if "/" not in k and k != cloudformation.FILE}

    @property
    def stack(self) -> dict[str, Any]:
        return dict(self.documents[cloudformation.FILE])

    def of_kind(self, folder: str) -> dict[str, Any]:
        return {k: v for k, v in self.documents.items() if k.startswith(folder + "/")}


def render(settings_file: Path | None, env: Mapping[str, str],
           templates: Path = TEMPLATES) -> Rendered:
    """Fill and validate every template, then build the CloudFormation template from the
    same templates; raise ConfigError listing every problem."""
    values = settings.load(settings_file, env)
    docs = _documents(values, templates)
    # The stack makes the webserver's target group: its template is built from a rendering
    # that names a stand-in for it, which becomes a reference to the stack's own.
    stack_docs = _documents({**values, "target_group_arn":
                             cloudformation.target_group_placeholder(values)}, templates)
    docs[cloudformation.FILE] = cloudformation.template(values, stack_docs)
    size = len(cloudformation.body(docs[cloudformation.FILE]).encode())
    if values["cloudformation_stack"] and size > cloudformation.BODY_LIMIT:
        # Each worker set adds a task definition, a service, scaling and an alarm (about
        # 5 kB): found here, not when `deploy` sends the template.
        where = f"{settings_file}: $.worker_sets" if settings_file else "worker_sets"
        raise ConfigError(f"{where}: with {len(values['worker_sets'])} worker sets the "
                          f"stack's template is {size} bytes, more than the "
                          f"{cloudformation.BODY_LIMIT} CloudFormation takes in a request; "
                          "merge sets (a set takes several queues), or unset "
                          "cloudformation_stack and deploy through the ECS API")
    return Rendered(values, docs)


def _documents(values: Mapping[str, Any], templates: Path) -> dict[str, Any]:
    base = environment.template_values(values)
    problems: list[str] = []
    docs: dict[str, Any] = {}

    def fill(relative: str, extra: Mapping[str, Any] | None = None,
             output: str | None = None) -> Any:
        path = templates / relative
        try:
            doc = template.fill(template.load_template(path), {**base, **(extra or {})},
                                display(path))
        except ConfigError as exc:
            problems.extend(exc.problems)
            return None
        docs[output or relative] = doc
        return doc

    sets: list[settings.WorkerSet] = values["worker_sets"]

    def renderings(folder: str, stem: str) -> list[tuple[str, dict[str, Any]]]:
        """The output name of each rendering of a template, and what it is filled with: the
        worker role's templates (worker*.json) once per worker set, the others once."""
        role, _, rest = stem.partition("-")
        if role != WORKER:
            return [(f"{folder}{stem}.json", {})]
        return [(f"{folder}{w.stem}{'-' if rest else ''}{rest}.json",
                 w.template_values(values["name"])) for w in sets]

    def source_of(path: Path, extra: Mapping[str, Any]) -> str:
        """A template's path in a problem, with the worker set of that rendering."""
        name = extra.get("worker_set_name")
        return f"{display(path)} (worker set {name!r})" if name else display(path)

    families: dict[str, dict[str, Any]] = {}
    unfilled = False  # a task definition failed to fill: its family is unknown
    for path in sorted(templates.glob("*.json")):
        role = path.stem
        for output, extra in renderings("", role):
            env = environment.airflow_environment({**values, **extra}, role)
            doc = fill(path.name, {**extra, "airflow_environment": env}, output)
            if doc is None:
                unfilled = True
                continue
            _stop_timeout_in_environment(doc)
            healthcheck.fill_timings(doc)
            problems.extend(validate.task_definition(doc, source_of(path, extra), values, role))
            if isinstance(doc.get("family"), str):
                families[doc["family"]] = doc
    if not families and not problems:
        problems.append(f"{templates}: no task definition templates (*.json) found")

    services: set[str] = set()
    for path in sorted(templates.glob("services/*.json")):
        for output, extra in renderings("services/", path.stem):
            doc = fill(f"services/{path.name}", extra, output)
            unfilled = unfilled or doc is None
            if doc is not None and not unfilled:
                problems.extend(validate.service(doc, source_of(path, extra), families))
                services.add(f"service/{doc.get('cluster')}/{doc.get('serviceName')}")
    for path in sorted(templates.glob("scaling/*.json")):
        for output, extra in renderings("scaling/", path.stem):
            doc = fill(f"scaling/{path.name}", extra, output)
            if doc is None or unfilled:
                continue
            if path.stem.endswith("-target"):
                problems.extend(validate.scalable_target(doc, source_of(path, extra), services))
            elif path.stem.endswith("-policy"):
                problems.extend(validate.scaling_policy(doc, source_of(path, extra), services))
            else:
                problems.append(f"{display(path)}: scaling files end in -target.json or "
                                "-policy.json")
    for path in sorted(templates.glob("iam/*.json")):
        per_role = settings.ROLES if path.stem == TASK_ROLE_POLICY else (None,)
        for task_role in per_role:
            iam_output = f"iam/{path.stem}-{task_role}.json" if task_role else None
            doc = fill(f"iam/{path.name}", {"template_role": task_role,
                                            "template_roles": settings.ROLES}, iam_output)
            source = f"{display(path)} ({task_role}'s)" if task_role else display(path)
            if doc is not None:
                problems.extend(validate.iam_policy(doc, source, values["partition"]))
    if problems:
        raise ConfigError(list(dict.fromkeys(problems)))  # a per-role template's once
    return docs


def render_all(settings_file: Path | None, env: Mapping[str, str], out_dir: Path,
               templates: Path = TEMPLATES) -> list[Path]:
    """Render, validate, then write every document; return the written paths."""
    return write(render(settings_file, env, templates), out_dir)


def write(rendered: Rendered, out_dir: Path) -> list[Path]:
    out_dir = Path(out_dir)
    for stale in out_dir.glob("**/*.json"):
        stale.unlink()
    written = []
    for relative, doc in sorted(rendered.documents.items()):
        path = out_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(cloudformation.body(doc) if relative == cloudformation.FILE
                        else json.dumps(doc, indent=2) + "\n")
        written.append(path)
    return written


def display(path: Path) -> str:
    """A template's path as a user would type it: relative to the working directory."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _stop_timeout_in_environment(doc: Any) -> None:
    """Tell the entrypoint the container's stopTimeout, from the one place it is set."""
    for c in doc.get("containerDefinitions", []) if isinstance(doc, dict) else []:
        env = c.get("environment")
        if isinstance(c.get("stopTimeout"), int) and isinstance(env, list) and \
                not any(e.get("name") == "AIRFLOW_ECS_STOP_TIMEOUT" for e in env):
            env.append({"name": "AIRFLOW_ECS_STOP_TIMEOUT", "value": str(c["stopTimeout"])})
            env.sort(key=lambda e: e.get("name", ""))
