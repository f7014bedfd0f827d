"""Secrets without AWS: references, _FILE rules, precedence, and the zero-cost path."""

import os
import stat
import subprocess
import sys

import pytest

from entrypoint import config, secrets
from entrypoint.errors import ConfigError


def resolve(env):
    return secrets.resolve(env, config.load({}))


@pytest.mark.parametrize("value,expected", [
    ("ssm:/airflow/prod/key", ("ssm", "/airflow/prod/key", None)),
    ("ssm:arn:aws:ssm:eu-west-1:123456789012:parameter/airflow/x",
     ("ssm", "arn:aws:ssm:eu-west-1:123456789012:parameter/airflow/x", None)),
    ("secretsmanager:prod/db", ("secretsmanager", "prod/db", None)),
    ("secretsmanager:prod/db#password", ("secretsmanager", "prod/db", "password")),
    ("secretsmanager:arn:aws:secretsmanager:eu-west-1:123456789012:secret:prod/db-AbCdEf#pw",
     ("secretsmanager", "arn:aws:secretsmanager:eu-west-1:123456789012:secret:prod/db-AbCdEf",
      "pw")),
])
def test_references(value, expected):
    ref = secrets.parse_reference("X", value)
    assert (ref.service, ref.target, ref.key) == expected


@pytest.mark.parametrize("value", ["ssm:", "ssm:relative/name", "ssm:/bad name",
                                   "secretsmanager:", "secretsmanager:x#", "secretsmanager:a b"])
def test_malformed_references_name_the_variable(value):
    with pytest.raises(ConfigError) as err:
        resolve({"AIRFLOW__CORE__FERNET_KEY": value})
    assert "AIRFLOW__CORE__FERNET_KEY holds a malformed" in str(err.value)


def test_plain_values_untouched_and_nothing_resolved():
    result = resolve({"A": "ssm-like but not", "AIRFLOW__X": "plain"})
    assert result.env == {"A": "ssm-like but not", "AIRFLOW__X": "plain"}
    assert result.sources == {}


def test_file_sets_the_variable_and_is_removed(tmp_path):
    secret = tmp_path / "fernet"
    secret.write_text("value-from-file\n")
    result = resolve({"AIRFLOW__CORE__FERNET_KEY_FILE": str(secret)})
    assert result.env == {"AIRFLOW__CORE__FERNET_KEY": "value-from-file"}
    assert result.sources == {"AIRFLOW__CORE__FERNET_KEY": f"file:{secret}"}


def test_file_and_value_both_set_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="both AIRFLOW__X and AIRFLOW__X_FILE are set"):
        resolve({"AIRFLOW__X": "a", "AIRFLOW__X_FILE": str(tmp_path)})


def test_unreadable_file_is_named(tmp_path):
    from entrypoint.errors import SecretsError

    with pytest.raises(SecretsError, match=r"AIRFLOW__X_FILE=.*cannot read the file"):
        resolve({"AIRFLOW__X_FILE": str(tmp_path / "missing")})


def test_file_convention_leaves_other_and_airflow_file_options_alone(tmp_path):
    env = {"AWS_CONFIG_FILE": "/x", "SSL_CERT_FILE": "/y",
           "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": "/tmp/p.json"}
    assert resolve(env).env == env


def test_airflow_file_options_list_is_complete():
    """Every Airflow option whose name ends in _file is excluded from the _FILE convention."""
    from importlib.metadata import entry_points
    from pathlib import Path

    import airflow
    import yaml

    cfg = yaml.safe_load((Path(airflow.__file__).parent / "config_templates" /
                          "config.yml").read_text())
    sections = [cfg]
    for ep in entry_points(group="apache_airflow_provider"):
        sections.append(ep.load()().get("config") or {})
    names = {f"AIRFLOW__{sec.upper()}__{opt.upper()}"
             for group in sections for sec, body in group.items()
             for opt in (body.get("options") or {}) if opt.endswith("_file")}
    assert names <= secrets.AIRFLOW_FILE_OPTIONS, names - secrets.AIRFLOW_FILE_OPTIONS


def test_nothing_to_resolve_imports_no_aws_library():
    code = ("import sys; from entrypoint import config, secrets; "
            "secrets.resolve({'AIRFLOW__X': 'y'}, config.load({})); "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('boto3', 'botocore')]; "
            "print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_missing_region_is_named(monkeypatch):
    for var in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(var, raising=False)
    from entrypoint.errors import SecretsError

    with pytest.raises(SecretsError, match="set AWS_REGION"):
        resolve({"AIRFLOW__X": "ssm:/a/b"})


def test_admin_password_file_mode_is_0600(tmp_path):
    from entrypoint import defaults

    settings = config.load({})
    env = {"AIRFLOW_ECS_ADMIN_PASSWORD": "pw",
           "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(tmp_path / "p.json"),
           "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin"}
    path = defaults.write_admin_password_file(settings, env)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
