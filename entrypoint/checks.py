"""Checks of the Airflow configuration a role starts with (after secrets are resolved).

Each rule catches a misconfiguration that Airflow 3.3 measurably fails on
silently or late; each problem names the variable and the fix, never a value.
`check()` returns every problem at once; the caller decides to refuse.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import urllib.parse
from collections.abc import Callable, Mapping

from entrypoint import logins, rolenames
from entrypoint.airflow_names import (
    API_SECRET_KEY,
    AUTH_MANAGER,
    BROKER_URL,
    DAGS_FOLDER,
    DB_URL,
    EXECUTION_API_URL,
    EXECUTOR,
    FERNET_KEY,
    JWT_SECRET,
    RESULT_BACKEND,
    SIMPLE_AUTH_MANAGER_ALL_ADMINS,
    TASK_TIMEOUT,
    VISIBILITY_TIMEOUT,
)
from entrypoint.config import (
    ADMIN_PASSWORD_VAR,
    LDAP_BIND_PASSWORD_VAR,
    OIDC_CLIENT_SECRET_VAR,
    SERVICE_ACCOUNT_PASSWORD_VAR,
    Settings,
)
from entrypoint.log import mask_url
from entrypoint.urls import (
    BROKER_SCHEMES,
    DB_SCHEMES,
    RESULT_SCHEMES,
    parse,
    problems_in_url,
)

JWT_MIN_BYTES = 64

_HOW_TO_SET = {
    FERNET_KEY: "generate one with `python -c \"from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())\"` and give every role the same value",
    JWT_SECRET: f"at least {JWT_MIN_BYTES} random bytes, the same for every role, e.g. "
                "`openssl rand -base64 64`",
    API_SECRET_KEY: "a random string, the same for every role, e.g. `openssl rand -hex 32`",
    DB_URL: "e.g. postgresql+psycopg2://airflow:PASSWORD@db.example:5432/airflow",
    BROKER_URL: "e.g. rediss://:PASSWORD@redis.example:6379/0",
    RESULT_BACKEND: "e.g. rediss://:PASSWORD@redis.example:6379/1?ssl_cert_reqs=required "
                    "(the broker's Redis, another database number), or "
                    "db+postgresql://airflow:PASSWORD@db.example:5432/airflow",
    EXECUTION_API_URL: "the api-server's execution API as the workers reach it, e.g. "
                       "http://airflow-api.internal:8080/execution/",
}


def members(role: str | None) -> list[str]:
    """The roles to check: role's members, or (None) every role checked by default."""
    if role is None:
        return [r.name for r in rolenames.TABLE if r.checked_by_default]
    return role.split("+")


def _needs(member: str) -> tuple[str, ...]:
    return rolenames.row(member).needs


def check(role: str | None, settings: Settings, env: Mapping[str, str]) -> list[str]:
    """Every problem in env for role (None: for every long-running role)."""
    problems: list[str] = []
    roles = members(role)
    needed: list[str] = []
    for member in roles:
        for name in _needs(member):
            if name not in needed:
                needed.append(name)
    for name in needed:
        if not env.get(name, "").strip():
            wanted_by = ", ".join(m for m in roles if name in _needs(m))
            problems.append(f"required setting: {name} (needed by {wanted_by}); "
                            f"{_HOW_TO_SET[name]}")

    for rule in _RULES:
        problems.extend(rule(roles, settings, env))
    return problems


def _unresolved_values(roles: list[str], settings: Settings, env: Mapping[str, str]) -> list[str]:
    problems = []
    for name in sorted(env):
        if not name.startswith("AIRFLOW"):
            continue
        value = env[name].strip()
        reason = _looks_unresolved(value)
        if reason:
            problems.append(f"invalid setting: {name} {reason}; give the real value, or a "
                            "reference the entrypoint resolves (ssm:/NAME, "
                            f"secretsmanager:NAME[#key], or {name}_FILE=/path)")
    return problems


_UNRESOLVED = (
    (re.compile(r"^\[object \w+\]$"), "holds a serialised object ({value!s})"),
    (re.compile(r"^\{\{\s*resolve:"), "holds an unresolved CloudFormation dynamic reference"),
    (re.compile(r"^\$\{[^}]*\}$"), "holds an unexpanded template placeholder"),
    (re.compile(r"^arn:aws[\w-]*:(ssm|secretsmanager):"),
     "holds an ARN where a value is expected (ECS `secrets` take ARNs in valueFrom, "
     "`environment` takes values)"),
    (re.compile(r"^(ssm|secretsmanager):"), "still holds a secret reference"),
)


def _looks_unresolved(value: str) -> str | None:
    for pattern, reason in _UNRESOLVED:
        if pattern.search(value):
            # The value is shown only for the fixed marker "[object Object]",
            # which cannot be a secret.
            return reason.format(value=value) if "{value" in reason else reason
    return None


# The URL schemes each variable may use.
URL_SCHEMES = {DB_URL: DB_SCHEMES, BROKER_URL: BROKER_SCHEMES, RESULT_BACKEND: RESULT_SCHEMES}


def _url_passwords(roles: list[str], settings: Settings, env: Mapping[str, str]) -> list[str]:
    problems = []
    for name in (DB_URL, BROKER_URL, RESULT_BACKEND):
        value = env.get(name, "").strip()
        if value and not _looks_unresolved(value):
            problems.extend(problems_in_url(name, value, URL_SCHEMES[name]))
    return problems


def _fernet_key(roles: list[str], settings: Settings, env: Mapping[str, str]) -> list[str]:
    value = env.get(FERNET_KEY, "").strip()
    if not value or _looks_unresolved(value):
        return []
    for position, key in enumerate(value.split(","), start=1):
        try:
            raw = base64.urlsafe_b64decode(key.strip().encode())
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) != 32:
            which = f"key {position} of {FERNET_KEY}" if "," in value else FERNET_KEY
            return [f"invalid setting: {which} is not a Fernet key (32 url-safe base64-encoded "
                    f"bytes); {_HOW_TO_SET[FERNET_KEY]}"]
    return []


def _jwt_length(roles: list[str], settings: Settings, env: Mapping[str, str]) -> list[str]:
    value = env.get(JWT_SECRET, "")
    if value and not _looks_unresolved(value) and len(value.encode()) < JWT_MIN_BYTES:
        return [f"invalid setting: {JWT_SECRET} is {len(value.encode())} bytes long; use at least "
                f"{JWT_MIN_BYTES} (Airflow warns below that), e.g. `openssl rand -base64 64`"]
    return []


def _execution_api_url(roles: list[str], settings: Settings, env: Mapping[str, str]) -> list[str]:
    value = env.get(EXECUTION_API_URL, "").strip()
    if not value or _looks_unresolved(value):
        return []
    problems = []
    # The URL is shown with its password masked: it may carry credentials.
    shown = mask_url(value)
    if not re.match(r"^https?://[^/]+", value):
        problems.append(f"invalid setting: {EXECUTION_API_URL}={shown!r} must be an http(s) URL, "
                        f"{_HOW_TO_SET[EXECUTION_API_URL]}")
    elif not value.endswith("/execution/"):
        fixed = mask_url(re.sub(r"/+(execution)?/*$", "", value) + "/execution/")
        problems.append(f"invalid setting: {EXECUTION_API_URL}={shown!r} must end in "
                        f"'/execution/' (workers otherwise fail every task), e.g. {fixed}")
    else:
        try:
            parse(value)
        except ValueError as exc:
            problems.append(f"invalid setting: {EXECUTION_API_URL}: {exc}")
    return problems


def _executor(roles: list[str], settings: Settings, env: Mapping[str, str]) -> list[str]:
    executor = env.get(EXECUTOR, "")
    if any(rolenames.row(m).runs_executor for m in roles) and "CeleryExecutor" not in executor:
        return [f"invalid setting: {EXECUTOR}={executor!r}: these images run tasks "
                "on Celery workers; set it to CeleryExecutor (or unset it)"]
    return []


def _visibility_timeout(roles: list[str], settings: Settings, env: Mapping[str, str]) -> list[str]:
    broker = env.get(BROKER_URL, "")
    if not broker.startswith(("redis", "sentinel")):
        return []
    problems = []
    numbers: dict[str, float] = {}
    for name in (VISIBILITY_TIMEOUT, TASK_TIMEOUT):
        raw = env.get(name, "").strip()
        if not raw:
            continue
        try:
            numbers[name] = float(raw)
        except ValueError:
            problems.append(f"invalid setting: {name}={raw!r} must be a number of seconds")
    visibility = numbers.get(VISIBILITY_TIMEOUT)
    longest = numbers.get(TASK_TIMEOUT)
    if visibility is not None and longest is not None and visibility <= longest:
        problems.append(
            f"invalid setting: {VISIBILITY_TIMEOUT}={visibility:g} is not longer than the longest "
            f"task timeout configured ({TASK_TIMEOUT}={longest:g}): Redis would hand a task that "
            "is still running to a second worker; set the visibility timeout above it, e.g. "
            f"{VISIBILITY_TIMEOUT}={int(longest * 1.5)}")
    return problems


# Celery's Redis result backend refuses a rediss:// URL without these (a ValueError at the
# first task's result, in the scheduler and every worker); Celery's own accepted spellings.
SSL_CERT_REQS = ("required", "optional", "none", "CERT_REQUIRED", "CERT_OPTIONAL", "CERT_NONE")


def _result_backend_tls(roles: list[str], settings: Settings,
                        env: Mapping[str, str]) -> list[str]:
    value = env.get(RESULT_BACKEND, "").strip()
    if not value.lower().startswith("rediss://"):
        return []
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(value).query)
    given = query.get("ssl_cert_reqs", [""])[-1]
    if given in SSL_CERT_REQS:
        return []
    what = f"ssl_cert_reqs={given!r} is not one Celery accepts" if given else \
        "it has no ssl_cert_reqs"
    return [f"invalid setting: {RESULT_BACKEND} is a rediss:// URL and {what}: Celery's Redis "
            "result backend refuses it at the first task; end the URL with "
            "?ssl_cert_reqs=required, e.g. rediss://:TOKEN@HOST:6379/1?ssl_cert_reqs=required"]


def _dags_folder(roles: list[str], settings: Settings, env: Mapping[str, str]) -> list[str]:
    folder = env.get(DAGS_FOLDER, "").rstrip("/")
    if settings.dags_source != "image" and folder and folder != str(settings.dags_dir):
        return [f"invalid setting: {DAGS_FOLDER}={folder!r} differs from "
                f"AIRFLOW_ECS_DAGS_DIR={str(settings.dags_dir)!r}, where synced DAGs are "
                f"published; unset {DAGS_FOLDER}"]
    return []


def _admin_login(roles: list[str], settings: Settings, env: Mapping[str, str]) -> list[str]:
    if not any(rolenames.row(m).admin_login for m in roles):
        return []
    if logins.uses_fab(env):
        if env.get(ADMIN_PASSWORD_VAR) or settings.webserver_config_file or settings.ldap_uri \
                or settings.oidc_issuer:
            return []
        return [f"required setting: {ADMIN_PASSWORD_VAR} for the webserver (the admin account "
                "of FAB's database logins; without it nobody can log in), e.g. "
                f"{ADMIN_PASSWORD_VAR}=ssm:/airflow/prod/admin-password; or log users in "
                "from LDAP (AIRFLOW_ECS_LDAP_URI) or OIDC (AIRFLOW_ECS_OIDC_ISSUER)"]
    manager = env.get(AUTH_MANAGER, "")
    if manager and not manager.endswith("SimpleAuthManager"):
        return []
    all_admins = env.get(SIMPLE_AUTH_MANAGER_ALL_ADMINS, "").lower() == "true"
    if not env.get(ADMIN_PASSWORD_VAR) and not all_admins:
        return [f"required setting: {ADMIN_PASSWORD_VAR} for the webserver (the admin login; "
                "Airflow's generated password file needs a writable AIRFLOW_HOME and differs "
                "between webserver tasks), e.g. "
                f"{ADMIN_PASSWORD_VAR}=ssm:/airflow/prod/admin-password"]
    return []


def _webserver_config_file(roles: list[str], settings: Settings,
                           env: Mapping[str, str]) -> list[str]:
    # FAB loads the file silently ignoring a missing one: the webserver would start with
    # FAB's defaults instead of the logins the file configures.
    path = settings.webserver_config_file
    if not any(rolenames.row(m).admin_login for m in roles) or path is None \
            or not logins.uses_fab(env):
        return []
    if not path.is_file() or not os.access(path, os.R_OK):
        return [f"invalid setting: AIRFLOW_ECS_WEBSERVER_CONFIG_FILE={str(path)!r} is not a "
                "readable file in this container; mount your webserver_config.py there, or "
                "unset the variable to use the generated one"]
    return []


def _ldap_settings(roles: list[str], settings: Settings, env: Mapping[str, str]) -> list[str]:
    if not any(rolenames.row(m).admin_login for m in roles) or not settings.ldap_uri:
        return []
    problems = []
    if not logins.uses_fab(env):
        problems.append("invalid setting: AIRFLOW_ECS_LDAP_URI is set but "
                        "AIRFLOW__CORE__AUTH_MANAGER is not FAB's auth manager, which alone "
                        "logs users in from LDAP; unset AIRFLOW__CORE__AUTH_MANAGER (FAB is "
                        "the default)")
    if not env.get(LDAP_BIND_PASSWORD_VAR):
        problems.append(f"required setting: {LDAP_BIND_PASSWORD_VAR} when AIRFLOW_ECS_LDAP_URI "
                        f"is set, e.g. {LDAP_BIND_PASSWORD_VAR}=ssm:/airflow/prod/"
                        "ldap-bind-password")
    ca = settings.ldap_tls_ca_file
    if ca is not None and (not ca.is_file() or not os.access(ca, os.R_OK)):
        problems.append(f"invalid setting: AIRFLOW_ECS_LDAP_TLS_CA_FILE={str(ca)!r} is not a "
                        "readable file in this container; mount the CA certificate (PEM) there")
    return problems


def _oidc_settings(roles: list[str], settings: Settings, env: Mapping[str, str]) -> list[str]:
    if not any(rolenames.row(m).admin_login for m in roles) or not settings.oidc_issuer:
        return []
    problems = []
    if not logins.uses_fab(env):
        problems.append("invalid setting: AIRFLOW_ECS_OIDC_ISSUER is set but "
                        "AIRFLOW__CORE__AUTH_MANAGER is not FAB's auth manager, which alone "
                        "logs users in with OIDC here; unset AIRFLOW__CORE__AUTH_MANAGER (FAB is "
                        "the default)")
    if not env.get(OIDC_CLIENT_SECRET_VAR, "").strip():
        problems.append(f"required setting: {OIDC_CLIENT_SECRET_VAR} when "
                        f"AIRFLOW_ECS_OIDC_ISSUER is set, e.g. {OIDC_CLIENT_SECRET_VAR}="
                        "ssm:/airflow/prod/oidc-client-secret")
    return problems


def _service_account(roles: list[str], settings: Settings, env: Mapping[str, str]
                     ) -> list[str]:
    if not any(rolenames.row(m).admin_login for m in roles) \
            or not settings.service_account_username:
        return []
    problems = []
    if not logins.uses_fab(env):
        problems.append("invalid setting: AIRFLOW_ECS_SERVICE_ACCOUNT_USERNAME is set but "
                        "AIRFLOW__CORE__AUTH_MANAGER is not FAB's auth manager, whose users it "
                        "is one of; unset AIRFLOW__CORE__AUTH_MANAGER (FAB is the default)")
    if not env.get(SERVICE_ACCOUNT_PASSWORD_VAR, "").strip():
        problems.append(f"required setting: {SERVICE_ACCOUNT_PASSWORD_VAR} when "
                        "AIRFLOW_ECS_SERVICE_ACCOUNT_USERNAME is set, e.g. "
                        f"{SERVICE_ACCOUNT_PASSWORD_VAR}=ssm:/airflow/prod/ci-bot-password")
    return problems


def _dag_sync_settings(roles: list[str], settings: Settings,
                       env: Mapping[str, str]) -> list[str]:
    # The same checks the sync runs before each pass: `check` refuses what it would refuse.
    if settings.dags_source == "image":
        return []
    from entrypoint import dagsync

    return dagsync.problems(settings)


_RULES: tuple[Callable[[list[str], Settings, Mapping[str, str]], list[str]], ...] = (
    _unresolved_values,
    _url_passwords,
    _fernet_key,
    _jwt_length,
    _execution_api_url,
    _executor,
    _visibility_timeout,
    _result_backend_tls,
    _dags_folder,
    _admin_login,
    _webserver_config_file,
    _ldap_settings,
    _oidc_settings,
    _service_account,
    _dag_sync_settings,
)
