"""Each role's task role policy covers every AWS action that role's code performs, and
nothing more.

The actions are derived from the code, not listed by hand: boto3 client calls
(and paginators) found in the syntax tree of every runtime module, mapped to IAM
actions through botocore's service models; the s3fs calls of the S3 DAG source
mapped to the S3 actions they issue; the ECS agent's task-protection endpoint;
and Airflow's S3 task-log handler, which the task definitions switch on. Each
action is then checked against the rendered policy with the resource the runtime
touches, and "*" is allowed only for actions without resource-level permissions.
Which role runs which code is the table ROLES_OF below; a module that starts calling
AWS must be added to it.
"""

import ast
import fnmatch
import json
from pathlib import Path

import botocore.session
import pytest
from botocore import xform_name

from entrypoint.tools.ecs import render, validate

ROOT = Path(__file__).resolve().parents[2]
RUNTIME = ROOT / "entrypoint"
EXAMPLE = ROOT / "task-definitions" / "settings" / "example.json"
# Runs on an operator's machine with the operator's credentials, not in a task.
NOT_IN_TASKS = {RUNTIME / "tools"}
# What each s3fs call issues (s3fs's own code: find -> ListObjectsV2, get -> GetObject).
S3FS_ACTIONS = {"find": ["s3:ListBucket"], "_find": ["s3:ListBucket"],
                "ls": ["s3:ListBucket"], "get": ["s3:GetObject"],
                "cat_file": ["s3:GetObject"], "info": ["s3:GetObject"],
                # A URL presigned for get_object (s3fs's default client method), then fetched.
                "_url": ["s3:GetObject"],
                # The client that presigns when _url is gone: made, no request sent.
                "set_session": [],
                # A DAG version's manifest (entrypoint.bundles.s3), under its own prefix
                # (AIRFLOW_ECS_DAGS_S3_MANIFEST_URI, not a deployment setting: docs/dags.md
                # lists the grants it needs).
                "_pipe_file": ["s3:PutObject"], "pipe_file": ["s3:PutObject"],
                "_cat_file": ["s3:GetObject"]}
# Actions the ECS agent checks against the task role for its task-protection endpoint.
AGENT_ACTIONS = {"PUT": "ecs:UpdateTaskProtection", "GET": "ecs:GetTaskProtection"}
ROLES = ("scheduler", "webserver", "worker", "migrate")
# The task (and so the task role) each runtime module that calls AWS runs in.
ROLES_OF = {
    "secrets.py": ROLES,  # every entrypoint resolves its secrets at start
    "programs/metrics.py": ("scheduler",),  # the metrics sidecar of the scheduler task
    "dagsync": ("scheduler", "worker"),  # the roles that read DAG files
    "bundles": ("scheduler", "worker"),  # versioned DAGs: the dag-processor and tasks
    "worker/protection.py": ("worker",),
}
# Airflow's S3 task-log handler: workers write task logs, the scheduler task's triggerer
# and DAG-processor callbacks theirs (writing appends: it reads the object first), and
# the webserver reads them all.
LOG_WRITERS = ("scheduler", "worker")
LOG_READERS = ("scheduler", "webserver", "worker")


def roles_of(path: Path) -> tuple[str, ...]:
    relative = path.relative_to(RUNTIME)
    key = (relative.parts[0] if relative.parts[0] in ("dagsync", "bundles")
           else relative.as_posix())
    assert key in ROLES_OF, f"{path} calls AWS: add the roles that run it to ROLES_OF"
    return ROLES_OF[key]


def runtime_modules():
    for path in sorted(RUNTIME.rglob("*.py")):
        if not any(parent in NOT_IN_TASKS for parent in path.parents):
            yield path


def _client_services(tree: ast.AST) -> dict[str, str]:
    """Names (variables or attributes) bound to `<...>.client("service")` (or to a
    conditional expression choosing one)."""
    bound = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign):
            value = node.value
            options = [value.body, value.orelse] if isinstance(value, ast.IfExp) else [value]
            for option in options:
                service = _client_call(option)
                if service:
                    for target in node.targets:
                        name = target.attr if isinstance(target, ast.Attribute) else \
                            getattr(target, "id", None)
                        if name:
                            bound[name] = service
    return bound


def _client_call(node: ast.AST) -> str | None:
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
            node.func.attr == "client" and node.args and \
            isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
        return node.args[0].value
    return None


def _operations(service: str) -> dict[str, str]:
    model = botocore.session.get_session().get_service_model(service)
    return {xform_name(op): op for op in model.operation_names}


def boto3_actions(role: str | None = None) -> set[str]:
    actions = set()
    for path in runtime_modules():
        tree = ast.parse(path.read_text())
        bound = _client_services(tree)
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            receiver = node.func.value
            service = _client_call(receiver) or bound.get(
                receiver.attr if isinstance(receiver, ast.Attribute) else
                getattr(receiver, "id", None))
            if not service:
                continue
            method = node.func.attr
            if method in ("get_paginator", "get_waiter"):
                method = node.args[0].value
            operations = _operations(service)
            assert method in operations, f"{path}: {service}.{method} is not a {service} call"
            if role is None or role in roles_of(path):
                actions.add(f"{service}:{operations[method]}")
    return actions


def _names_fs(node: ast.expr) -> bool:
    """`fs` or `<anything>.fs`: the S3FileSystem."""
    return (isinstance(node, ast.Name) and node.id == "fs") or \
        (isinstance(node, ast.Attribute) and node.attr == "fs")


def s3fs_actions(role: str | None = None) -> set[str]:
    actions = set()
    for path in runtime_modules():
        text = path.read_text()
        if "s3fs" not in text:  # the modules that use an S3FileSystem, named `fs`
            continue
        calls = [node.func.attr for node in ast.walk(ast.parse(text))
                 if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                 and _names_fs(node.func.value)]
        if not calls or (role is not None and role not in roles_of(path)):
            continue  # naming s3fs without calling it (entrypoint.private_apis) is no call
        for call in calls:
            assert call in S3FS_ACTIONS, \
                f"{path}: fs.{call}: add the S3 actions it issues to the table"
            actions.update(S3FS_ACTIONS[call])
    assert actions or role is not None, \
        "the S3 DAG source makes no s3fs call any more: update this test"
    return actions


def agent_actions(role: str | None = None) -> set[str]:
    path = RUNTIME / "worker" / "protection.py"
    source = path.read_text()
    assert '"/task-protection/v1/state"' in source
    if role is not None and role not in roles_of(path):
        return set()
    return {action for method, action in AGENT_ACTIONS.items() if f'"{method}"' in source}


def log_actions(role: str | None = None) -> set[str]:
    actions = set()
    if role is None or role in LOG_READERS:
        actions |= {"s3:ListBucket", "s3:GetObject"}
    if role is None or role in LOG_WRITERS:
        actions.add("s3:PutObject")
    return actions


def derived_actions(role: str | None = None) -> set[str]:
    return boto3_actions(role) | s3fs_actions(role) | agent_actions(role) | log_actions(role)


def test_the_derivation_finds_the_calls_the_runtime_makes():
    """A guard on the derivation itself: these calls are known to exist."""
    assert boto3_actions() == {"ssm:GetParametersByPath", "ssm:GetParameters",
                               "secretsmanager:GetSecretValue", "cloudwatch:PutMetricData",
                               "ecs:DescribeServices"}
    # PutObject: the versioned S3 bundle's manifests (entrypoint.bundles.s3).
    assert s3fs_actions() == {"s3:ListBucket", "s3:GetObject", "s3:PutObject"}
    assert agent_actions() == {"ecs:UpdateTaskProtection", "ecs:GetTaskProtection"}


def required(values, role: str | None = None) -> dict[str, list[str]]:
    """Each action the runtime (or one role's code) performs, with the resources it
    performs it on."""
    region, account, partition = values["region"], values["account_id"], values["partition"]
    ssm = f"arn:{partition}:ssm:{region}:{account}:parameter"
    resources = {
        "ssm:GetParametersByPath": [f"{ssm}{values['ssm_path_trimmed']}"],
        "ssm:GetParameters": [f"{ssm}{values['ssm_path']}AIRFLOW__CORE__FERNET_KEY",
                              f"{ssm}{values['ssm_path']}nested/NAME"],
        "secretsmanager:GetSecretValue": [
            f"arn:{partition}:secretsmanager:{region}:{account}:secret:{name}-AbCdEf"
            for name in values["secrets_manager_secrets"]],
        "cloudwatch:PutMetricData": ["*"],
        "ecs:DescribeServices": [
            f"arn:{partition}:ecs:{region}:{account}:service/{values['cluster']}/"
            f"{values['worker_service']}"],
        "ecs:UpdateTaskProtection": [f"arn:{partition}:ecs:{region}:{account}:task/"
                                     f"{values['cluster']}/0123456789abcdef"],
        "s3:ListBucket": [],
        "s3:GetObject": [],
        # Airflow's S3 task-log handler writes each task's log (remote logging is on).
        "s3:PutObject": [f"arn:{partition}:s3:::{values['logs_bucket']}/{values['logs_prefix']}"
                         "dag_id=x/run_id=y/task_id=z/attempt=1.log"],
    }
    resources["ecs:GetTaskProtection"] = resources["ecs:UpdateTaskProtection"]
    if role is None or role in LOG_READERS:
        resources["s3:ListBucket"].append(f"arn:{partition}:s3:::{values['logs_bucket']}")
        resources["s3:GetObject"].append(
            f"arn:{partition}:s3:::{values['logs_bucket']}/{values['logs_prefix']}"
            "dag_id=x/run_id=y/task_id=z/attempt=1.log")
    if values["dags_s3_uri"] and s3fs_actions(role):
        resources["s3:GetObject"].append(
            f"arn:{partition}:s3:::{values['dags_bucket']}/{values['dags_prefix']}team/a dag.py")
        resources["s3:ListBucket"].append(f"arn:{partition}:s3:::{values['dags_bucket']}")
    actions = derived_actions(role)
    return {action: where for action, where in resources.items() if action in actions}


def allows(policy, action: str, resource: str) -> bool:
    for st in policy["Statement"]:
        actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
        patterns = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
        if st["Effect"] == "Allow" and action in actions and \
                any(fnmatch.fnmatchcase(resource, p.replace("?", "[!/]")) for p in patterns):
            return True
    return False


SETTINGS = {
    "s3": {},
    "git+secrets": {"dags_source": "git", "dags_git_url": "https://git.example.com/dags.git",
                    "secrets_manager_secrets": ["airflow/prod/dags-token", "other"]},
    "s3+kms+china": {"region": "cn-north-1", "target_group_arn": "",
                     "kms_key_arn": "arn:aws-cn:kms:cn-north-1:123456789012:key/1234abcd"},
    "govcloud": {"region": "us-gov-west-1", "target_group_arn": ""},
}


def granted_actions(policy) -> set[str]:
    return {a for st in policy["Statement"]
            for a in (st["Action"] if isinstance(st["Action"], list) else [st["Action"]])}


def test_every_action_the_runtime_performs_belongs_to_a_role():
    assert set().union(*(derived_actions(role) for role in ROLES)) == derived_actions()
    assert derived_actions("migrate") == {"ssm:GetParametersByPath", "ssm:GetParameters",
                                          "secretsmanager:GetSecretValue"}


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("overrides", SETTINGS.values(), ids=SETTINGS.keys())
def test_task_role_policy_covers_every_action_the_role_performs(tmp_path, overrides, role):
    settings_file = tmp_path / "settings.json"
    settings_file.write_text(json.dumps({**json.loads(EXAMPLE.read_text()), **overrides}))
    rendered = render.render(settings_file, {})
    policy = rendered.documents[f"iam/task-role-policy-{role}.json"]
    assert rendered.documents[f"{role}.json"]["taskRoleArn"] == (
        f"arn:{rendered.settings['partition']}:iam::123456789012:role/airflow-ecs-task-{role}")
    needed = required(rendered.settings, role)
    derived = derived_actions(role)
    assert set(needed) == derived, "the runtime's actions changed: update required()"
    for action, resources in needed.items():
        for resource in resources:
            assert allows(policy, action, resource), \
                f"{role}: {action} on {resource} is not granted"
    granted = granted_actions(policy)
    assert granted <= derived | {"kms:Decrypt"}, \
        f"{role}: granted but never used by it: {granted - derived}"


def test_least_privilege_per_role():
    """What the review asked of each role, spelled out."""
    documents = render.render(EXAMPLE, {}).documents
    granted = {role: granted_actions(documents[f"iam/task-role-policy-{role}.json"])
               for role in ROLES}
    start = {"ssm:GetParametersByPath", "ssm:GetParameters"}
    assert granted["migrate"] == start
    assert granted["webserver"] == start | {"s3:ListBucket", "s3:GetObject"}
    assert granted["worker"] == start | {"s3:ListBucket", "s3:GetObject", "s3:PutObject",
                                         "ecs:GetTaskProtection", "ecs:UpdateTaskProtection"}
    assert granted["scheduler"] == start | {"s3:ListBucket", "s3:GetObject", "s3:PutObject",
                                            "cloudwatch:PutMetricData",
                                            "ecs:DescribeServices"}


@pytest.mark.parametrize("role", ROLES)
def test_nothing_is_granted_beyond_its_prefix(role):
    rendered = render.render(EXAMPLE, {})
    policy = rendered.documents[f"iam/task-role-policy-{role}.json"]
    s = rendered.settings
    assert not allows(policy, "s3:GetObject", f"arn:aws:s3:::{s['dags_bucket']}/elsewhere/x.py")
    assert not allows(policy, "s3:PutObject", f"arn:aws:s3:::{s['dags_bucket']}/"
                      f"{s['dags_prefix']}evil.py")
    assert not allows(policy, "ssm:GetParameters", f"arn:aws:ssm:{s['region']}:"
                      f"{s['account_id']}:parameter/airflow/staging/X")
    assert not allows(policy, "secretsmanager:GetSecretValue",
                      f"arn:aws:secretsmanager:{s['region']}:{s['account_id']}:secret:any-AbCdEf")
    for name in (f"iam/task-role-policy-{role}.json", "iam/execution-role-policy.json"):
        doc = rendered.documents[name]
        assert validate.iam_policy(doc, name, "aws") == []
        for st in doc["Statement"]:
            resources = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
            actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
            if "*" in resources:
                assert set(actions) <= validate.WILDCARD_ACTIONS, st
