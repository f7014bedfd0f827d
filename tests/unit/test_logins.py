"""The FAB login settings: the generated webserver_config.py and the path settings."""

import ast
import json
import os
import stat

import pytest

from entrypoint import config, logins, secrets
from entrypoint.errors import ConfigError


def config_values(text: str) -> dict:
    """The names the generated file assigns, evaluated as Flask's from_pyfile does."""
    namespace: dict = {}
    exec(compile(text, "webserver_config.py", "exec"), namespace)
    return {k: v for k, v in namespace.items() if k.isupper()}


def test_generated_config_uses_the_database_and_sets_no_secret_key():
    text = logins.render_config(config.load({}))
    values = config_values(text)
    from flask_appbuilder.security.manager import AUTH_DB

    assert values["AUTH_TYPE"] == AUTH_DB
    # The Flask secret key must be the shared AIRFLOW__API__SECRET_KEY FAB already uses:
    # a key set here would differ from one webserver task to the next.
    assert "SECRET_KEY" not in values
    assigned = {t.id for node in ast.walk(ast.parse(text)) if isinstance(node, ast.Assign)
                for t in node.targets if isinstance(t, ast.Name)}
    assert "SECRET_KEY" not in assigned


def test_generated_config_is_written_0600_into_the_scratch_dir(tmp_path, monkeypatch):
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    path = logins.write_config(config.load({}))
    assert path == tmp_path / "airflow-ecs" / "webserver_config.py"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    assert config_values(path.read_text())["AUTH_TYPE"] is not None
    assert [p.name for p in path.parent.iterdir()] == ["webserver_config.py"]


def test_a_users_config_file_is_not_overwritten(tmp_path, monkeypatch):
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    own = tmp_path / "mine.py"
    own.write_text("AUTH_TYPE = 1\n")
    settings = config.load({"AIRFLOW_ECS_WEBSERVER_CONFIG_FILE": str(own)})
    assert logins.write_config(settings) is None
    assert own.read_text() == "AUTH_TYPE = 1\n"
    assert logins.config_path(settings) == own


def test_webserver_config_file_must_be_absolute():
    with pytest.raises(ConfigError, match=r"AIRFLOW_ECS_WEBSERVER_CONFIG_FILE=.wc\.py. must be "
                                          "an absolute path"):
        config.load({"AIRFLOW_ECS_WEBSERVER_CONFIG_FILE": "wc.py"})


def test_path_settings_ending_in_file_are_paths_not_secret_files(tmp_path):
    own = tmp_path / "wc.py"
    own.write_text("AUTH_TYPE = 1\n")
    env = {"AIRFLOW_ECS_WEBSERVER_CONFIG_FILE": str(own),
           "AIRFLOW__FAB__CONFIG_FILE": str(own)}
    settings = config.load(env)  # a known setting, not "unknown: a typo?"
    resolved = secrets.resolve(env, settings).env
    assert resolved == env
    documented = {s.name for s in config.table()}
    assert config.PATH_SETTINGS == {"AIRFLOW_ECS_WEBSERVER_CONFIG_FILE",
                                    "AIRFLOW_ECS_LDAP_TLS_CA_FILE"}
    assert config.PATH_SETTINGS <= documented


LDAP = {
    "AIRFLOW_ECS_LDAP_URI": "ldaps://ldap.example.com:636",
    "AIRFLOW_ECS_LDAP_BIND_USER": "cn=airflow,ou=services,dc=example,dc=com",
    "AIRFLOW_ECS_LDAP_SEARCH_BASE": "ou=people,dc=example,dc=com",
    "AIRFLOW_ECS_LDAP_ROLES_MAPPING": json.dumps({
        "cn=ops,ou=groups,dc=example,dc=com": ["Op"],
        "cn=viewers,ou=groups,dc=example,dc=com": ["Viewer", "Custom 'x\""]}),
}


def test_ldap_settings_render_fabs_ldap_config(monkeypatch):
    settings = config.load({**LDAP, "AIRFLOW_ECS_LDAP_USER_FILTER": "(objectClass=person)",
                            "AIRFLOW_ECS_LDAP_UID_FIELD": "sAMAccountName",
                            "AIRFLOW_ECS_LDAP_TLS_CA_FILE": "/etc/ca.pem"})
    monkeypatch.setenv("AIRFLOW_ECS_LDAP_BIND_PASSWORD", "bind-pw-from-env")
    text = logins.render_config(settings)
    assert "bind-pw-from-env" not in text
    values = config_values(text)
    from flask_appbuilder.security.manager import AUTH_LDAP

    from entrypoint.webserver.fab_security import LdapSecurityManager

    assert values["AUTH_TYPE"] == AUTH_LDAP
    assert values["AUTH_LDAP_SERVER"] == "ldaps://ldap.example.com:636"
    assert values["AUTH_LDAP_BIND_USER"] == "cn=airflow,ou=services,dc=example,dc=com"
    # Read from the environment when FAB loads the file, never written into it.
    assert values["AUTH_LDAP_BIND_PASSWORD"] == "bind-pw-from-env"
    assert values["AUTH_LDAP_SEARCH"] == "ou=people,dc=example,dc=com"
    assert values["AUTH_LDAP_SEARCH_FILTER"] == "(objectClass=person)"
    assert values["AUTH_LDAP_UID_FIELD"] == "sAMAccountName"
    assert values["AUTH_LDAP_GROUP_FIELD"] == "memberOf"
    assert values["AUTH_LDAP_TLS_CACERTFILE"] == "/etc/ca.pem"
    assert values["AUTH_LDAP_TLS_DEMAND"] is True
    assert values["AUTH_ROLES_MAPPING"] == json.loads(LDAP["AIRFLOW_ECS_LDAP_ROLES_MAPPING"])
    assert values["AUTH_ROLES_SYNC_AT_LOGIN"] is True
    assert values["AUTH_USER_REGISTRATION"] is True
    assert values["AUTH_USER_REGISTRATION_ROLE"] is None
    assert values["SECURITY_MANAGER_CLASS"] is LdapSecurityManager
    assert "SECRET_KEY" not in values
    assert logins.login_roles(settings) == ["Custom 'x\"", "Op", "Viewer"]


def test_a_default_role_is_the_registration_role():
    settings = config.load({**LDAP, "AIRFLOW_ECS_LDAP_DEFAULT_ROLE": "Public"})
    assert config_values(logins.render_config(settings))["AUTH_USER_REGISTRATION_ROLE"] == \
        "Public"
    assert "Public" in logins.login_roles(settings)


@pytest.mark.parametrize("change, named, says", [
    ({"AIRFLOW_ECS_LDAP_URI": "ldap://ldap.example.com"}, "AIRFLOW_ECS_LDAP_URI",
     "clear text"),
    ({"AIRFLOW_ECS_LDAP_URI": "https://ldap.example.com"}, "AIRFLOW_ECS_LDAP_URI",
     "must be ldaps://"),
    ({"AIRFLOW_ECS_LDAP_BIND_USER": ""}, "AIRFLOW_ECS_LDAP_BIND_USER", "required"),
    ({"AIRFLOW_ECS_LDAP_SEARCH_BASE": ""}, "AIRFLOW_ECS_LDAP_SEARCH_BASE", "required"),
    ({"AIRFLOW_ECS_LDAP_ROLES_MAPPING": "{not json"}, "AIRFLOW_ECS_LDAP_ROLES_MAPPING",
     "not JSON"),
    ({"AIRFLOW_ECS_LDAP_ROLES_MAPPING": '{"cn=g": "Op"}'}, "AIRFLOW_ECS_LDAP_ROLES_MAPPING",
     "list of role names"),
    ({"AIRFLOW_ECS_LDAP_ROLES_MAPPING": '{"cn=g": []}'}, "AIRFLOW_ECS_LDAP_ROLES_MAPPING",
     "list of role names"),
    ({"AIRFLOW_ECS_LDAP_ROLES_MAPPING": ""}, "AIRFLOW_ECS_LDAP_DEFAULT_ROLE", "no LDAP user"),
    ({"AIRFLOW_ECS_LDAP_USER_FILTER": "objectClass=person"}, "AIRFLOW_ECS_LDAP_USER_FILTER",
     "in parentheses"),
    ({"AIRFLOW_ECS_LDAP_TLS_CA_FILE": "ca.pem"}, "AIRFLOW_ECS_LDAP_TLS_CA_FILE",
     "absolute path"),
    ({"AIRFLOW_ECS_WEBSERVER_CONFIG_FILE": "/etc/wc.py"}, "AIRFLOW_ECS_WEBSERVER_CONFIG_FILE",
     "both set"),
])
def test_ldap_settings_are_refused_naming_the_variable(change, named, says):
    with pytest.raises(ConfigError) as caught:
        config.load({**LDAP, **change})
    problems = [p for p in caught.value.problems if named in p]
    assert problems and says in problems[0], caught.value.problems


def test_plain_ldap_is_accepted_for_this_host_only():
    for uri in ("ldap://127.0.0.1:3890", "ldap://localhost", "ldap://[::1]:389"):
        assert config.load({**LDAP, "AIRFLOW_ECS_LDAP_URI": uri}).ldap_uri == uri
    for uri in ("ldap://127.0.0.2", "ldap://localhost.example.com", "ldap://10.0.0.1"):
        with pytest.raises(ConfigError, match="clear text"):
            config.load({**LDAP, "AIRFLOW_ECS_LDAP_URI": uri})


def test_ldap_settings_without_a_uri_are_refused():
    with pytest.raises(ConfigError, match="AIRFLOW_ECS_LDAP_URI, since "
                                          "AIRFLOW_ECS_LDAP_SEARCH_BASE is set"):
        config.load({"AIRFLOW_ECS_LDAP_SEARCH_BASE": "ou=people,dc=example,dc=com"})


def test_a_uri_with_credentials_is_refused_without_showing_them():
    with pytest.raises(ConfigError) as caught:
        config.load({**LDAP, "AIRFLOW_ECS_LDAP_URI": "ldaps://reader:s3cret-pw@ldap.example.com"})
    assert "s3cret-pw" not in str(caught.value)
    assert "AIRFLOW_ECS_LDAP_URI" in str(caught.value)


def test_the_ca_file_setting_is_a_path_not_a_secret_file(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    env = {**LDAP, "AIRFLOW_ECS_LDAP_TLS_CA_FILE": str(ca)}
    assert secrets.resolve(env, config.load(env)).env == env
