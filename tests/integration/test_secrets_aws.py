"""Secrets against moto's real server: pagination, batching, Secrets Manager, errors,
throttling and access denied through an error-injecting proxy, and the CLI."""

import base64
import os
import subprocess
import sys
from pathlib import Path

import boto3
import pytest

from entrypoint import config, secrets
from entrypoint.errors import ConfigError, SecretsError
from tests.support.aws_proxy import AwsProxy

BIN = str(Path(sys.executable).parent / "airflow-ecs")
REGION = "eu-west-1"
CANARIES: list[str] = []


def canary(label: str) -> str:
    value = f"CANARY-{label}-{os.urandom(6).hex()}"
    CANARIES.append(value)
    return value


def aws(moto, service):
    return boto3.client(service, endpoint_url=moto.url, region_name=REGION)


def env_for(url, **extra):
    return {"AWS_ENDPOINT_URL": url, "AWS_REGION": REGION, **extra}


def count_calls(operation):
    """Count botocore calls of operation on every client the secrets module creates."""
    calls = []
    original = secrets._Aws.client

    def client(self, service):
        c = original(self, service)
        if not getattr(c, "_counted", False):
            c.meta.events.register(f"provide-client-params.*.{operation}",
                                   lambda params, **kw: calls.append(params))
            c._counted = True
        return c

    return calls, client


def test_path_with_pagination_and_securestring(moto, monkeypatch):
    ssm = aws(moto, "ssm")
    expected = {}
    for i in range(27):
        name = f"AIRFLOW_VAR_P{i:02d}"
        value = canary(f"path{i}")
        sub = "nested/deeper/" if i % 3 == 0 else ""
        ssm.put_parameter(Name=f"/airflow/test/{sub}{name}", Value=value,
                          Type="SecureString" if i % 2 else "String")
        expected[name] = value
    ssm.put_parameter(Name="/airflow/other/AIRFLOW_VAR_OUTSIDE", Value="no", Type="String")
    calls, client = count_calls("GetParametersByPath")
    monkeypatch.setattr(secrets._Aws, "client", client)
    settings = config.load({"AIRFLOW_ECS_SSM_PATH": "/airflow/test"})
    result = secrets.resolve(env_for(moto.url), settings)
    for name, value in expected.items():
        assert result.env[name] == value
    assert "AIRFLOW_VAR_OUTSIDE" not in result.env
    assert result.sources["AIRFLOW_VAR_P00"] == "ssm:/airflow/test/nested/deeper/AIRFLOW_VAR_P00"
    assert len(calls) >= 3  # 27 parameters, at most 10 a page
    assert all(c["WithDecryption"] and c["Recursive"] for c in calls)


def test_explicit_environment_wins_over_the_path(moto):
    ssm = aws(moto, "ssm")
    ssm.put_parameter(Name="/airflow/test/AIRFLOW__CORE__PARALLELISM", Value="32", Type="String")
    ssm.put_parameter(Name="/airflow/test/AIRFLOW_VAR_ONLY_IN_SSM", Value="s", Type="String")
    settings = config.load({"AIRFLOW_ECS_SSM_PATH": "/airflow/test/"})
    result = secrets.resolve(env_for(moto.url, AIRFLOW__CORE__PARALLELISM="8"), settings)
    assert result.env["AIRFLOW__CORE__PARALLELISM"] == "8"
    assert "AIRFLOW__CORE__PARALLELISM" not in result.sources
    assert result.env["AIRFLOW_VAR_ONLY_IN_SSM"] == "s"


def test_colliding_segments_are_an_error(moto):
    ssm = aws(moto, "ssm")
    ssm.put_parameter(Name="/airflow/test/a/AIRFLOW_VAR_X", Value="1", Type="String")
    ssm.put_parameter(Name="/airflow/test/b/AIRFLOW_VAR_X", Value="2", Type="String")
    with pytest.raises(SecretsError) as err:
        secrets.resolve(env_for(moto.url), config.load({"AIRFLOW_ECS_SSM_PATH": "/airflow/test/"}))
    assert "/airflow/test/a/AIRFLOW_VAR_X and /airflow/test/b/AIRFLOW_VAR_X" in str(err.value)


def test_the_role_path_adds_its_parameters_and_refuses_a_name_both_define(moto):
    ssm = aws(moto, "ssm")
    ssm.put_parameter(Name="/airflow/test/AIRFLOW_VAR_SHARED", Value="s", Type="String")
    login = canary("role-path")
    ssm.put_parameter(Name="/airflow/test-webserver/AIRFLOW_ECS_LDAP_BIND_PASSWORD",
                      Value=login, Type="SecureString")
    both = {"AIRFLOW_ECS_SSM_PATH": "/airflow/test/",
            "AIRFLOW_ECS_SSM_ROLE_PATH": "/airflow/test-webserver"}
    result = secrets.resolve(env_for(moto.url), config.load(both))
    assert result.env["AIRFLOW_VAR_SHARED"] == "s"
    assert result.env["AIRFLOW_ECS_LDAP_BIND_PASSWORD"] == login
    assert result.sources["AIRFLOW_ECS_LDAP_BIND_PASSWORD"] == (
        "ssm:/airflow/test-webserver/AIRFLOW_ECS_LDAP_BIND_PASSWORD")
    # The shared path alone, as the other roles load it: not there.
    shared = secrets.resolve(env_for(moto.url),
                             config.load({"AIRFLOW_ECS_SSM_PATH": "/airflow/test/"}))
    assert "AIRFLOW_ECS_LDAP_BIND_PASSWORD" not in shared.env

    ssm.put_parameter(Name="/airflow/test-webserver/AIRFLOW_VAR_SHARED", Value="w",
                      Type="String")
    with pytest.raises(SecretsError) as err:
        secrets.resolve(env_for(moto.url), config.load(both))
    assert ("/airflow/test-webserver/AIRFLOW_VAR_SHARED and /airflow/test/AIRFLOW_VAR_SHARED"
            in str(err.value) or "/airflow/test/AIRFLOW_VAR_SHARED and "
            "/airflow/test-webserver/AIRFLOW_VAR_SHARED" in str(err.value)), str(err.value)


def test_overlapping_paths_are_a_configuration_error():
    with pytest.raises(ConfigError) as err:
        secrets.resolve({}, config.load({"AIRFLOW_ECS_SSM_PATH": "/airflow/",
                                         "AIRFLOW_ECS_SSM_ROLE_PATH": "/airflow/webserver/"}))
    assert "AIRFLOW_ECS_SSM_ROLE_PATH=/airflow/webserver/" in str(err.value)
    assert "overlap" in str(err.value)


def test_references_are_batched_by_ten_and_missing_ones_all_named(moto, monkeypatch):
    ssm = aws(moto, "ssm")
    env = env_for(moto.url)
    for i in range(23):
        ssm.put_parameter(Name=f"/refs/p{i}", Value=canary(f"ref{i}"), Type="SecureString")
        env[f"AIRFLOW_VAR_R{i}"] = f"ssm:/refs/p{i}"
    calls, client = count_calls("GetParameters")
    monkeypatch.setattr(secrets._Aws, "client", client)
    result = secrets.resolve(env, config.load({}))
    assert len(calls) == 3 and max(len(c["Names"]) for c in calls) == 10
    assert result.sources["AIRFLOW_VAR_R5"] == "ssm:/refs/p5"

    env["AIRFLOW_VAR_GONE1"] = "ssm:/refs/missing-one"
    env["AIRFLOW_VAR_GONE2"] = "ssm:/refs/missing-two"
    with pytest.raises(SecretsError) as err:
        secrets.resolve(env, config.load({}))
    message = str(err.value)
    assert "AIRFLOW_VAR_GONE1: parameter /refs/missing-one does not exist" in message
    assert "AIRFLOW_VAR_GONE2: parameter /refs/missing-two does not exist" in message


def test_secrets_manager_plain_json_key_and_arn(moto):
    sm = aws(moto, "secretsmanager")
    plain = canary("sm-plain")
    password = canary("sm-json")
    sm.create_secret(Name="prod/plain", SecretString=plain)
    arn = sm.create_secret(Name="prod/db", SecretString=f'{{"username": "u", "password": '
                                                       f'"{password}", "port": 5432}}')["ARN"]
    env = env_for(moto.url, AIRFLOW_VAR_A="secretsmanager:prod/plain",
                  AIRFLOW_VAR_B=f"secretsmanager:{arn}#password",
                  AIRFLOW_VAR_C="secretsmanager:prod/db#port")
    result = secrets.resolve(env, config.load({}))
    assert result.env["AIRFLOW_VAR_A"] == plain
    assert result.env["AIRFLOW_VAR_B"] == password
    assert result.env["AIRFLOW_VAR_C"] == "5432"
    assert result.sources["AIRFLOW_VAR_B"] == f"secretsmanager:{arn}#password"
    for bad, message in (("secretsmanager:prod/db#nokey", "has no key 'nokey'"),
                         ("secretsmanager:prod/plain#k", "is not JSON"),
                         ("secretsmanager:prod/none", "does not exist")):
        with pytest.raises(SecretsError, match=message) as err:
            secrets.resolve(env_for(moto.url, AIRFLOW_VAR_X=bad), config.load({}))
        assert password not in str(err.value) and plain not in str(err.value)


def test_path_parameter_holding_a_secrets_manager_reference(moto):
    sm = aws(moto, "secretsmanager")
    value = canary("pointer")
    sm.create_secret(Name="prod/token", SecretString=value)
    aws(moto, "ssm").put_parameter(Name="/airflow/test/AIRFLOW_ECS_DAGS_GIT_TOKEN",
                                   Value="secretsmanager:prod/token", Type="String")
    result = secrets.resolve(env_for(moto.url),
                             config.load({"AIRFLOW_ECS_SSM_PATH": "/airflow/test/"}))
    assert result.env["AIRFLOW_ECS_DAGS_GIT_TOKEN"] == value
    assert result.sources["AIRFLOW_ECS_DAGS_GIT_TOKEN"] == \
        "ssm:/airflow/test/AIRFLOW_ECS_DAGS_GIT_TOKEN -> secretsmanager:prod/token"


def test_throttling_is_retried_then_reported(moto):
    aws(moto, "ssm").put_parameter(Name="/airflow/test/AIRFLOW_VAR_T", Value="v", Type="String")
    proxy = AwsProxy(moto.url)
    try:
        settings = config.load({"AIRFLOW_ECS_SSM_PATH": "/airflow/test/"})
        proxy.fail_next(3, "ThrottlingException")
        result = secrets.resolve(env_for(proxy.url, AWS_MAX_ATTEMPTS="5"), settings)
        assert result.env["AIRFLOW_VAR_T"] == "v"
        assert sum(1 for t, _ in proxy.requests if "GetParametersByPath" in t) == 4
        proxy.fail_next(10, "ThrottlingException")
        with pytest.raises(SecretsError, match="throttled reading the parameters under "
                                               "/airflow/test/ after retries"):
            secrets.resolve(env_for(proxy.url, AWS_MAX_ATTEMPTS="3"), settings)
    finally:
        proxy.close()


def test_access_denied_names_the_parameters(moto):
    ssm = aws(moto, "ssm")
    ssm.put_parameter(Name="/locked/key", Value=canary("locked"), Type="SecureString")
    proxy = AwsProxy(moto.url)
    proxy.deny("/locked/")
    try:
        with pytest.raises(SecretsError) as err:
            secrets.resolve(env_for(proxy.url, AIRFLOW_VAR_L="ssm:/locked/key"),
                            config.load({}))
        assert "access denied to parameter(s) /locked/key" in str(err.value)
        with pytest.raises(SecretsError, match="access denied to the parameters under /locked/"):
            secrets.resolve(env_for(proxy.url), config.load({"AIRFLOW_ECS_SSM_PATH": "/locked"}))
    finally:
        proxy.close()


def test_values_arrive_byte_exact(moto):
    tricky = "it's \"q\" $(rm -rf /) `id` ${HOME}\nline2 ünïcödé \\ %s"
    aws(moto, "ssm").put_parameter(Name="/airflow/test/AIRFLOW_VAR_TRICKY", Value=tricky,
                                   Type="SecureString")
    result = secrets.resolve(env_for(moto.url),
                             config.load({"AIRFLOW_ECS_SSM_PATH": "/airflow/test/"}))
    assert result.env["AIRFLOW_VAR_TRICKY"] == tricky


# --- through the CLI -------------------------------------------------------------------------
OUTPUT: list[bytes] = []


def cli(*args, env):
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "AWS_ENDPOINT"))}
    result = subprocess.run([BIN, *args], env={**clean, **env}, capture_output=True, timeout=120)
    OUTPUT.append(result.stdout + result.stderr)
    return result


def test_cli_secrets_prints_names_and_sources_never_values(moto, tmp_path):
    ssm = aws(moto, "ssm")
    fernet = canary("fernet")
    ssm.put_parameter(Name="/airflow/cli/AIRFLOW__CORE__FERNET_KEY", Value=fernet,
                      Type="SecureString")
    ssm.put_parameter(Name="/refs/jwt", Value=canary("jwt"), Type="SecureString")
    aws(moto, "secretsmanager").create_secret(Name="cli/db", SecretString=canary("db"))
    pw_file = tmp_path / "pw"
    pw_file.write_text(canary("file") + "\n")
    result = cli("secrets", env=env_for(
        moto.url, AIRFLOW_ECS_SSM_PATH="/airflow/cli/",
        AIRFLOW__API_AUTH__JWT_SECRET="ssm:/refs/jwt",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN="secretsmanager:cli/db",
        AIRFLOW_ECS_ADMIN_PASSWORD_FILE=str(pw_file)))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.decode().splitlines()
    assert lines == [
        "AIRFLOW_ECS_ADMIN_PASSWORD\tfile:" + str(pw_file),
        "AIRFLOW__API_AUTH__JWT_SECRET\tssm:/refs/jwt",
        "AIRFLOW__CORE__FERNET_KEY\tssm:/airflow/cli/AIRFLOW__CORE__FERNET_KEY",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN\tsecretsmanager:cli/db",
    ]


def test_cli_missing_parameter_exits_79_naming_it(moto):
    result = cli("secrets", env=env_for(moto.url, AIRFLOW_VAR_X="ssm:/nowhere/to/be/found"))
    assert result.returncode == 79
    assert b"AIRFLOW_VAR_X: parameter /nowhere/to/be/found does not exist" in result.stderr


def test_cli_exec_with_secrets_then_failure_modes(moto):
    value = canary("exec")
    aws(moto, "ssm").put_parameter(Name="/airflow/exec/AIRFLOW_VAR_E", Value=value,
                                   Type="SecureString")
    result = cli("exec", "--", sys.executable, "-c",
                 "import os,sys; sys.exit(0 if os.environ['AIRFLOW_VAR_E'].startswith('CANARY')"
                 " else 3)", env=env_for(moto.url, AIRFLOW_ECS_SSM_PATH="/airflow/exec/"))
    assert result.returncode == 0, result.stderr
    bad = cli("exec", "--", "true", env=env_for(moto.url, AIRFLOW_ECS_WAIT_TIMEOUT="soon"))
    assert bad.returncode == 78 and b"AIRFLOW_ECS_WAIT_TIMEOUT" in bad.stderr
    leaky = cli("secrets", env=env_for(moto.url, AIRFLOW_VAR_X="secretsmanager:none#k",
                                       AIRFLOW__CELERY__BROKER_URL=f"redis://:{value}@r:1/0"))
    assert leaky.returncode == 79


def test_our_settings_from_parameter_store_are_applied_and_checked(moto):
    """An AIRFLOW_ECS_ setting under the path counts as if the task definition set it."""
    ssm = aws(moto, "ssm")
    env = env_for(moto.url, AIRFLOW_ECS_SSM_PATH="/airflow/settings/")
    ssm.put_parameter(Name="/airflow/settings/AIRFLOW_VAR_ANY", Value="x", Type="String")
    chatty = cli("exec", "--", "true", env=env)
    assert chatty.returncode == 0 and b"INFO starting true" in chatty.stderr, chatty.stderr
    ssm.put_parameter(Name="/airflow/settings/AIRFLOW_ECS_LOG_LEVEL", Value="WARNING",
                      Type="String")
    quiet = cli("exec", "--", "true", env=env)
    assert quiet.returncode == 0, quiet.stderr
    assert b"starting true" not in quiet.stderr, quiet.stderr
    ssm.put_parameter(Name="/airflow/settings/AIRFLOW_ECS_WAIT_TIMEOUT", Value="soon",
                      Type="String")
    bad = cli("exec", "--", "true", env=env)
    assert bad.returncode == 78, bad.stderr
    assert b"AIRFLOW_ECS_WAIT_TIMEOUT" in bad.stderr


def test_no_canary_in_anything_printed():
    """Runs last in this module: every byte the CLI printed above holds no secret value."""
    assert OUTPUT, "the CLI scenarios above did not run"
    everything = b"\n".join(OUTPUT)
    assert CANARIES
    for value in CANARIES:
        for form in (value.encode(), base64.b64encode(value.encode())):
            assert form not in everything, f"a secret value was printed: {value[:12]}..."
