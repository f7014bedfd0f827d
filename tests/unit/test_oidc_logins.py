"""OIDC logins (FAB's AUTH_OAUTH): the settings, the generated webserver_config.py, the
start-up checks, and the security manager's reading of the claims."""

import json
import subprocess

import pytest

from entrypoint import checks, config, defaults, logins
from entrypoint.errors import ConfigError
from tests.unit.test_checks import GOOD
from tests.unit.test_logins import config_values

OIDC = {
    "AIRFLOW_ECS_OIDC_ISSUER": "https://login.example.com/oauth2/default",
    "AIRFLOW_ECS_OIDC_CLIENT_ID": "airflow-client",
    "AIRFLOW_ECS_OIDC_ROLES_MAPPING": json.dumps({"airflow-ops": ["Op"],
                                                  "airflow-viewers": ["Viewer"]}),
}


def test_oidc_settings_render_fabs_oauth_config(monkeypatch):
    settings = config.load({**OIDC, "AIRFLOW_ECS_OIDC_GROUPS_CLAIM": "cognito:groups",
                            "AIRFLOW_ECS_OIDC_USERNAME_CLAIM": "email",
                            "AIRFLOW_ECS_OIDC_SCOPES": "openid email groups"})
    monkeypatch.setenv("AIRFLOW_ECS_OIDC_CLIENT_SECRET", "client-secret-from-env")
    text = logins.render_config(settings)
    assert "client-secret-from-env" not in text
    values = config_values(text)
    from flask_appbuilder.security.manager import AUTH_OAUTH

    from entrypoint.webserver.fab_security import OidcSecurityManager

    assert values["AUTH_TYPE"] == AUTH_OAUTH
    [provider] = values["OAUTH_PROVIDERS"]
    assert provider["name"] == "oidc"
    assert provider["remote_app"] == {
        "client_id": "airflow-client",
        # Read from the environment when FAB loads the file, never written into it.
        "client_secret": "client-secret-from-env",
        "server_metadata_url":
            "https://login.example.com/oauth2/default/.well-known/openid-configuration",
        "client_kwargs": {"scope": "openid email groups"},
    }
    assert values["OIDC_USERNAME_CLAIM"] == "email"
    assert values["OIDC_GROUPS_CLAIM"] == "cognito:groups"
    assert values["AUTH_ROLES_MAPPING"] == {"airflow-ops": ["Op"], "airflow-viewers": ["Viewer"]}
    assert values["AUTH_ROLES_SYNC_AT_LOGIN"] is True
    assert values["AUTH_USER_REGISTRATION"] is True
    assert values["AUTH_USER_REGISTRATION_ROLE"] is None
    assert values["SECURITY_MANAGER_CLASS"] is OidcSecurityManager
    assert "SECRET_KEY" not in values
    assert logins.login_roles(settings) == ["Op", "Viewer"]


def test_oidc_defaults_and_default_role():
    settings = config.load({**OIDC, "AIRFLOW_ECS_OIDC_DEFAULT_ROLE": "Public",
                            "AIRFLOW_ECS_OIDC_ROLES_MAPPING": ""})
    values = config_values(logins.render_config(settings))
    assert values["AUTH_USER_REGISTRATION_ROLE"] == "Public"
    assert values["AUTH_ROLES_MAPPING"] == {}
    assert values["OIDC_USERNAME_CLAIM"] == "preferred_username"
    assert values["OIDC_GROUPS_CLAIM"] == "groups"
    assert values["OAUTH_PROVIDERS"][0]["remote_app"]["client_kwargs"] == {
        "scope": "openid email profile"}
    assert logins.login_roles(settings) == ["Public"]


@pytest.mark.parametrize("change, named, says", [
    ({"AIRFLOW_ECS_OIDC_ISSUER": "http://login.example.com"}, "AIRFLOW_ECS_OIDC_ISSUER",
     "clear text"),
    ({"AIRFLOW_ECS_OIDC_ISSUER": "login.example.com"}, "AIRFLOW_ECS_OIDC_ISSUER",
     "must be https://"),
    ({"AIRFLOW_ECS_OIDC_ISSUER": "https://user:pw@login.example.com"}, "AIRFLOW_ECS_OIDC_ISSUER",
     "must be https://"),
    ({"AIRFLOW_ECS_OIDC_ISSUER": "https://login.example.com:port"}, "AIRFLOW_ECS_OIDC_ISSUER",
     "must be https://"),
    ({"AIRFLOW_ECS_OIDC_CLIENT_ID": ""}, "AIRFLOW_ECS_OIDC_CLIENT_ID", "required"),
    ({"AIRFLOW_ECS_OIDC_ROLES_MAPPING": "{not json"}, "AIRFLOW_ECS_OIDC_ROLES_MAPPING",
     "not JSON"),
    ({"AIRFLOW_ECS_OIDC_ROLES_MAPPING": '{"ops": "Op"}'}, "AIRFLOW_ECS_OIDC_ROLES_MAPPING",
     "from group to a list of role names"),
    ({"AIRFLOW_ECS_OIDC_ROLES_MAPPING": ""}, "AIRFLOW_ECS_OIDC_DEFAULT_ROLE", "no OIDC user"),
    ({"AIRFLOW_ECS_OIDC_SCOPES": "email profile"}, "AIRFLOW_ECS_OIDC_SCOPES", "include openid"),
    ({"AIRFLOW_ECS_OIDC_GROUPS_CLAIM": "two words"}, "AIRFLOW_ECS_OIDC_GROUPS_CLAIM",
     "one claim"),
    ({"AIRFLOW_ECS_LDAP_URI": "ldaps://ldap.example.com",
      "AIRFLOW_ECS_LDAP_BIND_USER": "cn=a", "AIRFLOW_ECS_LDAP_SEARCH_BASE": "dc=b",
      "AIRFLOW_ECS_LDAP_DEFAULT_ROLE": "Viewer"}, "AIRFLOW_ECS_OIDC_ISSUER", "both set"),
    ({"AIRFLOW_ECS_WEBSERVER_CONFIG_FILE": "/etc/wc.py"}, "AIRFLOW_ECS_WEBSERVER_CONFIG_FILE",
     "both set"),
])
def test_oidc_settings_are_refused_naming_the_variable(change, named, says):
    with pytest.raises(ConfigError) as caught:
        config.load({**OIDC, **change})
    assert any(named in p and says in p for p in caught.value.problems), caught.value.problems


@pytest.mark.parametrize("issuer", ["http://127.0.0.1:8999", "http://localhost:8999/realm/x"])
def test_plain_http_issuer_is_accepted_for_this_host_only(issuer):
    assert config.load({**OIDC, "AIRFLOW_ECS_OIDC_ISSUER": issuer}).oidc_issuer == issuer


def test_oidc_settings_without_an_issuer_are_refused():
    with pytest.raises(ConfigError, match="required setting: AIRFLOW_ECS_OIDC_ISSUER, since "
                                          "AIRFLOW_ECS_OIDC_CLIENT_ID"):
        config.load({"AIRFLOW_ECS_OIDC_CLIENT_ID": "x"})


def check_webserver(env: dict) -> list[str]:
    settings = config.load({k: v for k, v in env.items() if k.startswith("AIRFLOW_ECS_")
                            and not k.endswith(("_PASSWORD", "_SECRET"))})
    return checks.check("webserver", settings, defaults.apply("webserver", settings, env))


def test_oidc_needs_a_client_secret_and_makes_the_admin_password_optional():
    env = {k: v for k, v in GOOD.items() if k != "AIRFLOW_ECS_ADMIN_PASSWORD"}
    problems = check_webserver({**env, **OIDC})
    assert len(problems) == 1 and "required setting: AIRFLOW_ECS_OIDC_CLIENT_SECRET" in \
        problems[0], problems
    assert check_webserver({**env, **OIDC, "AIRFLOW_ECS_OIDC_CLIENT_SECRET": "s"}) == []
    settings = config.load(OIDC)
    # Only the webserver logs users in.
    assert checks.check("worker", settings, defaults.apply("worker", settings,
                                                           {**env, **OIDC})) == []


def test_oidc_needs_fab():
    problems = check_webserver({
        **GOOD, **OIDC, "AIRFLOW_ECS_OIDC_CLIENT_SECRET": "s",
        "AIRFLOW__CORE__AUTH_MANAGER":
            "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"})
    assert any("AIRFLOW_ECS_OIDC_ISSUER is set but AIRFLOW__CORE__AUTH_MANAGER" in p
               for p in problems), problems


def test_a_mapping_naming_an_unknown_role_names_the_oidc_variables(monkeypatch):
    settings = config.load({**OIDC, "AIRFLOW_ECS_OIDC_ROLES_MAPPING": '{"ops": ["Opz"]}'})
    seen = {}

    def run(argv, env, timeout):
        seen["argv"] = argv
        return subprocess.CompletedProcess(argv, logins.EXIT_UNKNOWN_ROLES,
                                           b"fab-admin: unknown roles: Opz; the roles are: Op\n",
                                           b"")

    monkeypatch.setattr(logins.procs, "run", run)
    with pytest.raises(ConfigError) as caught:
        logins.sync_admin(settings, {})
    assert seen["argv"][-1] == "Opz"  # the role is checked by the admin program
    message = str(caught.value)
    assert "AIRFLOW_ECS_OIDC_ROLES_MAPPING or AIRFLOW_ECS_OIDC_DEFAULT_ROLE" in message
    assert "unknown roles: Opz" in message


# --- the security manager's reading of the claims ---------------------------------------------
def test_claims_of_the_id_token_are_completed_by_userinfo():
    from entrypoint.webserver.fab_security import oidc_claims, userinfo_from_claims

    token = {"userinfo": {"sub": "u1", "cognito:groups": ["ops"], "email": "a@example.com"}}
    claims = oidc_claims(token, lambda: {"sub": "u1", "preferred_username": "alice"})
    assert userinfo_from_claims(claims, "preferred_username", "cognito:groups") == {
        "username": "alice", "email": "a@example.com", "first_name": "", "last_name": "",
        "role_keys": ["ops"]}
    # One group given as a string, not a list.
    assert userinfo_from_claims({"u": "bob", "g": "viewers"}, "u", "g")["role_keys"] == \
        ["viewers"]
    assert userinfo_from_claims({"u": "bob"}, "u", "g")["role_keys"] == []


def test_userinfo_about_another_subject_or_no_id_token_is_refused():
    from entrypoint.webserver.fab_security import oidc_claims

    with pytest.raises(ValueError, match="another subject"):
        oidc_claims({"userinfo": {"sub": "u1"}}, lambda: {"sub": "u2"})
    with pytest.raises(ValueError, match="AIRFLOW_ECS_OIDC_SCOPES"):
        oidc_claims({"access_token": "x"}, lambda: {"sub": "u1"})


def test_claims_without_the_username_claim_give_no_user():
    from entrypoint.webserver.fab_security import userinfo_from_claims

    assert userinfo_from_claims({"sub": "u1", "email": "a@example.com"},
                                "preferred_username", "groups") == {}


# --- the service account ------------------------------------------------------------------------
def test_a_service_account_needs_its_password_on_the_webserver():
    account = {"AIRFLOW_ECS_SERVICE_ACCOUNT_USERNAME": "ci-bot"}
    problems = check_webserver({**GOOD, **account})
    assert len(problems) == 1 and \
        "required setting: AIRFLOW_ECS_SERVICE_ACCOUNT_PASSWORD" in problems[0], problems
    assert check_webserver({**GOOD, **account,
                            "AIRFLOW_ECS_SERVICE_ACCOUNT_PASSWORD": "bot-pw"}) == []
    settings = config.load(account)
    assert settings.service_account_role == "User"
    assert checks.check("worker", settings, defaults.apply("worker", settings,
                                                           {**GOOD, **account})) == []


@pytest.mark.parametrize("env, says", [
    ({"AIRFLOW_ECS_SERVICE_ACCOUNT_ROLE": "Op"},
     "required setting: AIRFLOW_ECS_SERVICE_ACCOUNT_USERNAME, since"),
    ({"AIRFLOW_ECS_SERVICE_ACCOUNT_PASSWORD_FILE": "/run/secrets/bot"},
     "required setting: AIRFLOW_ECS_SERVICE_ACCOUNT_USERNAME, since"),
    ({"AIRFLOW_ECS_SERVICE_ACCOUNT_USERNAME": "admin"},
     "AIRFLOW_ECS_SERVICE_ACCOUNT_USERNAME='admin' is the admin account's name"),
])
def test_service_account_settings_are_refused_naming_the_variable(env, says):
    with pytest.raises(ConfigError) as caught:
        config.load(env)
    assert any(says in p for p in caught.value.problems), caught.value.problems


def test_the_service_account_is_given_to_the_admin_program_without_its_password(monkeypatch):
    settings = config.load({"AIRFLOW_ECS_SERVICE_ACCOUNT_USERNAME": "ci-bot",
                            "AIRFLOW_ECS_SERVICE_ACCOUNT_ROLE": "Op"})
    seen = {}

    def run(argv, env, timeout):
        seen["argv"], seen["env"] = argv, env
        return subprocess.CompletedProcess(argv, 0, b"fab-admin: created it\n", b"")

    monkeypatch.setattr(logins.procs, "run", run)
    env = {"AIRFLOW_ECS_SERVICE_ACCOUNT_PASSWORD": "bot-pw-123"}
    assert logins.sync_admin(settings, env) == "created it"
    assert seen["argv"][-3:] == ["--service-account", "ci-bot", "Op"]
    assert "bot-pw-123" not in " ".join(seen["argv"])
    assert seen["env"]["AIRFLOW_ECS_SERVICE_ACCOUNT_PASSWORD"] == "bot-pw-123"
