"""parliament (duo-labs' IAM linter) on every IAM policy document the deployment renders:
task-definitions/iam/* as rendered for each settings file, and the policies inside the
CloudFormation template (each role's trust policy and inline policies), for every
settings file in task-definitions/settings/. Any finding not in ALLOWED fails."""

import copy
import importlib.resources
import json
import re
import sys
import types
from pathlib import Path

import pytest

from entrypoint.tools.ecs.render import render

# parliament's own regular expressions are written with invalid escapes (a bare \d); Python
# warns as it compiles them, on the first import.
pytestmark = pytest.mark.filterwarnings("ignore:invalid escape sequence:DeprecationWarning")

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = sorted((ROOT / "task-definitions" / "settings").glob("*.json"))
TRUST = "trust"
EXECUTION = "execution role"
PERMISSIONS = "permissions"

# (kind of document, parliament's issue, its detail): why the finding is accepted.
ALLOWED = {
    # A role's trust policy names a Principal and no Resource: IAM's grammar for trust
    # policies forbids one. parliament reads every document as an identity policy.
    (TRUST, "MALFORMED", "Statement contains neither Resource nor NotResource"):
        "a trust policy has a Principal instead of a Resource",
    # The community auditor flags ecr:GetAuthorizationToken, which returns a registry
    # password. ECS calls it with the execution role to pull the images from ECR (AWS's
    # AmazonECSTaskExecutionRolePolicy grants the same); it takes no resource but "*".
    # The task roles, which the containers' code uses, must not have it.
    (EXECUTION, "CREDENTIALS_EXPOSURE", ""):
        "ECS pulls the images from ECR with the execution role",
}


def _parliament():
    """parliament 1.6.4, the newest, looks its data files up with pkg_resources, which
    setuptools no longer ships; importlib.resources answers the one call it makes, at
    import time, and the stand-in is gone again before any other code can see it."""
    if "parliament" in sys.modules:
        return sys.modules["parliament"]
    shim = types.ModuleType("pkg_resources")
    shim.resource_filename = lambda package, name: str(importlib.resources.files(package) / name)
    had = sys.modules.get("pkg_resources")
    sys.modules["pkg_resources"] = had or shim
    try:
        import parliament
    finally:
        if had is None:
            del sys.modules["pkg_resources"]
    return parliament


def _arn_of(stack, logical_id, values):
    """The ARN CloudFormation gives a resource of the template (Fn::GetAtt X.Arn)."""
    resource = stack["Resources"][logical_id]
    props = resource.get("Properties", {})
    at = f"arn:{values['partition']}:{{}}:{values['region']}:{values['account_id']}:"
    if resource["Type"] == "AWS::Logs::LogGroup":
        return at.format("logs") + f"log-group:{props['LogGroupName']}:*"
    raise AssertionError(f"Fn::GetAtt {logical_id}.Arn of a {resource['Type']}: teach "
                         "_arn_of this type's ARN so parliament sees a real one")


def _resolve(node, stack, values):
    """The document with CloudFormation's intrinsic functions replaced by the values
    they stand for: parliament reads plain policy JSON."""
    if isinstance(node, list):
        return [_resolve(v, stack, values) for v in node]
    if not isinstance(node, dict):
        return node
    if "Fn::Sub" in node:
        pseudo = {"AWS::Partition": values["partition"], "AWS::Region": values["region"],
                  "AWS::AccountId": values["account_id"], "Cluster": values["cluster"]}
        return re.sub(r"\$\{([^}]+)\}", lambda m: pseudo.get(m[1], m[1]), node["Fn::Sub"])
    if "Fn::GetAtt" in node:
        logical_id, attribute = node["Fn::GetAtt"]
        assert attribute == "Arn", node
        return _arn_of(stack, logical_id, values)
    if "Ref" in node:
        return node["Ref"]
    return {k: _resolve(v, stack, values) for k, v in node.items()}


def documents(rendered):
    """(name, kind, policy) for every policy document of one rendering."""
    for name, doc in sorted(rendered.of_kind("iam").items()):
        kind = TRUST if "trust" in name else EXECUTION if "execution" in name else PERMISSIONS
        yield name, kind, doc
    stack = rendered.stack
    for logical_id, resource in sorted(stack["Resources"].items()):
        if not resource["Type"].startswith("AWS::IAM::"):
            continue
        props = _resolve(resource.get("Properties", {}), stack, rendered.settings)
        if "AssumeRolePolicyDocument" in props:
            yield (f"cloudformation.json {logical_id} trust policy", TRUST,
                   props["AssumeRolePolicyDocument"])
        for policy in props.get("Policies", []):
            yield (f"cloudformation.json {logical_id} policy {policy['PolicyName']}",
                   EXECUTION if logical_id == "ExecutionRole" else PERMISSIONS,
                   policy["PolicyDocument"])
        if "PolicyDocument" in props:
            yield f"cloudformation.json {logical_id}", PERMISSIONS, props["PolicyDocument"]


def unexpected(kind, policy):
    """parliament's findings on one document that ALLOWED does not list."""
    analysed = _parliament().analyze_policy_string(json.dumps(policy),
                                                   include_community_auditors=True)
    return [f"{f.issue} ({f.severity or 'no severity'}): {f.detail}"
            for f in analysed.findings if (kind, f.issue, str(f.detail)) not in ALLOWED]


@pytest.fixture(scope="module", params=SETTINGS, ids=lambda p: p.name)
def rendered(request):
    return render(request.param, {})


def test_every_rendered_policy_passes_parliament(rendered):
    docs = list(documents(rendered))
    # Both sources are read: the IAM files and the template's roles, trust and permissions.
    kinds = {(name.startswith("cloudformation.json"), kind) for name, kind, _ in docs}
    assert kinds == {(cfn, kind) for cfn in (False, True)
                     for kind in (TRUST, EXECUTION, PERMISSIONS)}
    problems = [f"{name}: {finding}" for name, kind, doc in docs
                for finding in unexpected(kind, doc)]
    assert not problems, "parliament's findings (fix the policy, or add to ALLOWED with " \
        "the reason):\n" + "\n".join(problems)


@pytest.mark.parametrize("statement,issue", [
    ({"Effect": "Allow", "Action": "s3:GetObjekt", "Resource": "arn:aws:s3:::b/*"},
     "UNKNOWN_ACTION"),
    ({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}, "RESOURCE_STAR"),
])
def test_a_bad_statement_in_a_rendered_policy_is_found(statement, issue):
    rendered = render(SETTINGS[0], {})
    docs = {name: (kind, doc) for name, kind, doc in documents(rendered)}
    planted = [name for name in docs if "task-role-policy-worker" in name
               or name.endswith("WorkerTaskRole policy airflow-ecs")]
    assert len(planted) == 2, sorted(docs)
    for name in planted:
        kind, doc = docs[name]
        assert unexpected(kind, doc) == []
        bad = copy.deepcopy(doc)
        bad["Statement"].append(statement)
        assert [f for f in unexpected(kind, bad) if f.startswith(issue)], name


@pytest.mark.parametrize("kind,issue", [(TRUST, "MALFORMED"),
                                        (EXECUTION, "CREDENTIALS_EXPOSURE")])
def test_an_allowed_finding_is_allowed_only_in_its_kind_of_policy(kind, issue):
    rendered = render(SETTINGS[0], {})
    doc = next(doc for _, k, doc in documents(rendered) if k == kind)
    assert unexpected(kind, doc) == []
    assert [f for f in unexpected(PERMISSIONS, doc) if f.startswith(issue)]
