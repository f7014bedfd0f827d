"""Our own settings: every `AIRFLOW_ECS_*` variable, read once into a frozen object.

Nothing else in the runtime reads `os.environ` for these settings. `load()`
validates everything and reports every problem at once, each naming the
variable, the value seen (settings here are never secret) and the fix.

Secret-valued inputs (the admin password, git credentials) are not held here:
they are resolved by `entrypoint.secrets` and read from the resolved
environment by the code that needs them, by the variable names given below.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from entrypoint.errors import ConfigError
from entrypoint.log import mask_url

# Set by the entrypoint itself on the role's environment, never by users: the
# mark by which `airflow-ecs health` finds the resolved values (running_env).
from entrypoint.running_env import MARKER as ROLE_ENV_MARKER

PREFIX = "AIRFLOW_ECS_"

DAG_SOURCES = ("image", "git", "s3")

# Names of secret-valued variables, read from the resolved environment.
ADMIN_PASSWORD_VAR = "AIRFLOW_ECS_ADMIN_PASSWORD"
GIT_TOKEN_VAR = "AIRFLOW_ECS_DAGS_GIT_TOKEN"
GIT_SSH_KEY_VAR = "AIRFLOW_ECS_DAGS_GIT_SSH_KEY"

# Settings whose value is a path and whose name happens to end in _FILE: not the file
# form of another variable (see entrypoint.secrets).
PATH_SETTINGS = frozenset({"AIRFLOW_ECS_WEBSERVER_CONFIG_FILE", "AIRFLOW_ECS_LDAP_TLS_CA_FILE"})
LDAP_BIND_PASSWORD_VAR = "AIRFLOW_ECS_LDAP_BIND_PASSWORD"

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


@dataclasses.dataclass(frozen=True)
class Setting:
    """One documented setting: the README's configuration table is built from these."""

    name: str
    default: str
    meaning: str
    example: str


SETTINGS: tuple[Setting, ...] = (
    Setting("AIRFLOW_ECS_SSM_PATH", "(unset)",
            "Parameter Store path whose parameters (recursive, SecureString decrypted) "
            "become environment variables named after their last path segment.",
            "/airflow/prod/"),
    Setting("AIRFLOW_ECS_WAIT_TIMEOUT", "300",
            "Overall deadline in seconds for the dependency waits (Redis, metadata DB, "
            "migrations, execution API).", "120"),
    Setting("AIRFLOW_ECS_DB_MIGRATE", "false",
            "Run `airflow db migrate` at start instead of waiting for another task to do it.",
            "true"),
    Setting("AIRFLOW_ECS_STOP_TIMEOUT", "120",
            "Seconds ECS gives a container between SIGTERM and SIGKILL (the task "
            "definition's stopTimeout). A worker still running tasks 10 s before it ends "
            "restores their messages to the queue, so another worker runs them.", "120"),
    Setting("AIRFLOW_ECS_ADMIN_USERNAME", "admin",
            "User name of the admin account created from AIRFLOW_ECS_ADMIN_PASSWORD.", "admin"),
    Setting(ADMIN_PASSWORD_VAR, "(unset)",
            "Admin password (secret: give it as a reference or through ECS `secrets`). "
            "Unset: no admin user is configured.", "ssm:/airflow/prod/admin-password"),
    Setting("AIRFLOW_ECS_API_PORT", "8080", "Port the webserver role's api-server listens on.",
            "8080"),
    # Logins (FAB auth manager): the webserver's webserver_config.py.
    Setting("AIRFLOW_ECS_WEBSERVER_CONFIG_FILE", "(generated from these settings)",
            "Path of your own FAB webserver_config.py for the webserver; it replaces the one "
            "the entrypoint generates (the login settings below are then not used).",
            "/opt/airflow/config/webserver_config.py"),
    Setting("AIRFLOW_ECS_LDAP_URI", "(unset)",
            "LDAP server the webserver logs users in from (FAB's AUTH_LDAP); ldaps:// "
            "(ldap:// only to 127.0.0.1 or localhost). Unset: users are FAB's database "
            "users. The admin account still logs in from the database.",
            "ldaps://ldap.example.com:636"),
    Setting("AIRFLOW_ECS_LDAP_BIND_USER", "(unset)",
            "DN the webserver binds as to search for users; required with "
            "AIRFLOW_ECS_LDAP_URI.", "cn=airflow,ou=services,dc=example,dc=com"),
    Setting(LDAP_BIND_PASSWORD_VAR, "(unset)",
            "Password of AIRFLOW_ECS_LDAP_BIND_USER (secret: give it as a reference or through "
            "ECS `secrets`).", "ssm:/airflow/prod/ldap-bind-password"),
    Setting("AIRFLOW_ECS_LDAP_SEARCH_BASE", "(unset)",
            "Where users are searched; required with AIRFLOW_ECS_LDAP_URI.",
            "ou=people,dc=example,dc=com"),
    Setting("AIRFLOW_ECS_LDAP_USER_FILTER", "(every user under the search base)",
            "LDAP filter a user must also match to log in.",
            "(objectClass=inetOrgPerson)"),
    Setting("AIRFLOW_ECS_LDAP_UID_FIELD", "uid",
            "Attribute holding the name users log in with.", "sAMAccountName"),
    Setting("AIRFLOW_ECS_LDAP_GROUP_FIELD", "memberOf",
            "Attribute of a user listing the DNs of their groups.", "memberOf"),
    Setting("AIRFLOW_ECS_LDAP_ROLES_MAPPING", "(unset)",
            "JSON object: group DN to the list of Airflow roles its members get, synced at "
            "every login. Each role must exist (Admin, Op, User, Viewer, Public, or one of "
            "[fab] custom_roles / made in the UI): the webserver refuses to start otherwise.",
            '{"cn=airflow-ops,ou=groups,dc=example,dc=com": ["Op"]}'),
    Setting("AIRFLOW_ECS_LDAP_DEFAULT_ROLE", "(unset: refuse users in no mapped group)",
            "Role of an LDAP user in none of the mapped groups.", "Viewer"),
    Setting("AIRFLOW_ECS_LDAP_TLS_CA_FILE", "(the system's CA certificates)",
            "PEM file of the CA that signed the LDAP server's certificate.",
            "/opt/airflow/config/ldap-ca.pem"),
    Setting("AIRFLOW_ECS_CHECK_FINGERPRINTS", "true",
            "Publish and compare fingerprints of the shared keys in Redis; a role whose keys "
            "differ from the deployment's refuses to start.", "false"),
    Setting("AIRFLOW_ECS_LOG_LEVEL", "INFO", "Log level of the entrypoint's own messages.",
            "DEBUG"),
    Setting("AIRFLOW_ECS_PROTECTION", "true",
            "Workers on ECS protect their task from scale-in and deployments while they run "
            "tasks (through ECS_AGENT_URI, which ECS sets).", "false"),
    Setting("AIRFLOW_ECS_PROTECTION_MINUTES", "60",
            "Expiry of each protection (1 to 2880); renewed while tasks run.", "120"),
    Setting("AIRFLOW_ECS_PROTECTION_IDLE_SECONDS", "60",
            "Idle time after the last task before a worker clears its protection.", "300"),
    Setting("AIRFLOW_ECS_METRICS_INTERVAL", "60",
            "Seconds between two publications of the metrics role.", "30"),
    Setting("AIRFLOW_ECS_METRICS_NAMESPACE", "AirflowEcs",
            "CloudWatch namespace the metrics role publishes to.", "Airflow/prod"),
    Setting("AIRFLOW_ECS_METRICS_CLUSTER", "default",
            "ECS cluster of the worker service (a metric dimension, and where running workers "
            "are counted).", "airflow"),
    Setting("AIRFLOW_ECS_METRICS_WORKER_SERVICE", "(unset)",
            "ECS service of the workers; its running count divides the backlog. Unset: the "
            "whole backlog is published as the backlog per worker.", "airflow-worker"),
    Setting("AIRFLOW_ECS_METRICS_QUEUES", "(the default queue and every bound queue)",
            "Comma-separated Celery queues to report even when empty.", "default,heavy"),
    Setting("AIRFLOW_ECS_DAGS_SOURCE", "image", "Where DAGs come from: image, git or s3.", "git"),
    Setting("AIRFLOW_ECS_DAGS_DIR", "/opt/airflow/dags",
            "Folder Airflow reads DAGs from (the roles' dags_folder is pointed there).",
            "/opt/airflow/dags"),
    Setting("AIRFLOW_ECS_DAGS_STATE_DIR", "(dags dir's parent)/.dags-sync",
            "Where synced trees and the sync status are kept (must be writable).",
            "/opt/airflow/.dags-sync"),
    Setting("AIRFLOW_ECS_DAGS_REFRESH_SECONDS", "0",
            "Seconds between DAG syncs after start-up; 0 syncs at start-up only.", "60"),
    Setting("AIRFLOW_ECS_DAGS_ALLOW_SHRINK", "false",
            "Publish a sync that empties the tree or loses more than half of its files.",
            "true"),
    Setting("AIRFLOW_ECS_DAGS_KEEP_SECONDS", "300",
            "Grace period before a replaced DAG tree is deleted.", "600"),
    Setting("AIRFLOW_ECS_DAGS_SYNC_TIMEOUT", "120", "Deadline in seconds of one sync.", "300"),
    Setting("AIRFLOW_ECS_DAGS_GIT_URL", "(unset)",
            "Git repository of the DAGs (https, ssh, git or file URL).",
            "https://github.com/acme/dags.git"),
    Setting("AIRFLOW_ECS_DAGS_GIT_REF", "main", "Branch, tag or full commit sha to sync.",
            "release"),
    Setting("AIRFLOW_ECS_DAGS_GIT_SUBDIR", "(repository root)",
            "Folder inside the repository that holds the DAGs.", "dags"),
    Setting("AIRFLOW_ECS_DAGS_GIT_DEPTH", "1", "Clone depth; 0 fetches full history.", "1"),
    Setting("AIRFLOW_ECS_DAGS_GIT_SUBMODULES", "false", "Also sync submodules (recursively).",
            "true"),
    Setting("AIRFLOW_ECS_DAGS_GIT_USERNAME", "x-access-token",
            "User name sent with the HTTPS token.", "oauth2"),
    Setting(GIT_TOKEN_VAR, "(unset)",
            "HTTPS token for the git URL (secret; re-read on every sync).",
            "secretsmanager:airflow/dags-token"),
    Setting(GIT_SSH_KEY_VAR, "(unset)",
            "SSH private key for an ssh git URL (secret; re-read on every sync).",
            "ssm:/airflow/prod/dags-deploy-key"),
    Setting("AIRFLOW_ECS_DAGS_GIT_KNOWN_HOSTS", "(unset)",
            "known_hosts lines for the SSH host; required with an SSH key.",
            "github.com ssh-ed25519 AAAA..."),
    Setting("AIRFLOW_ECS_DAGS_S3_URI", "(unset)", "S3 prefix holding the DAGs.",
            "s3://acme-airflow/dags/"),
    Setting("AIRFLOW_ECS_DAGS_S3_CONCURRENCY", "64",
            "Parallel S3 downloads (open connections) per sync, at most half the "
            "open-file limit.", "128"),
)
DOCUMENTED = {s.name for s in SETTINGS}


@dataclasses.dataclass(frozen=True)
class Settings:
    ssm_path: str | None = None
    wait_timeout: float = 300.0
    db_migrate: bool = False
    stop_timeout: int = 120
    admin_username: str = "admin"
    api_port: int = 8080
    # Logins (FAB auth manager).
    webserver_config_file: Path | None = None
    ldap_uri: str | None = None
    ldap_bind_user: str | None = None
    ldap_search_base: str | None = None
    ldap_user_filter: str = ""
    ldap_uid_field: str = "uid"
    ldap_group_field: str = "memberOf"
    ldap_roles_mapping: tuple[tuple[str, tuple[str, ...]], ...] = ()
    ldap_default_role: str | None = None
    ldap_tls_ca_file: Path | None = None
    check_fingerprints: bool = True
    log_level: str = "INFO"
    protection: bool = True
    protection_minutes: int = 60
    protection_idle_seconds: int = 60
    metrics_interval: float = 60.0
    metrics_namespace: str = "AirflowEcs"
    metrics_cluster: str = "default"
    metrics_worker_service: str = ""
    metrics_queues: tuple[str, ...] = ()
    dags_source: str = "image"
    dags_dir: Path = Path("/opt/airflow/dags")
    dags_state_dir: Path = Path("/opt/airflow/.dags-sync")
    dags_refresh_seconds: int = 0
    dags_allow_shrink: bool = False
    dags_keep_seconds: int = 300
    dags_sync_timeout: int = 120
    dags_git_url: str | None = None
    dags_git_ref: str = "main"
    dags_git_subdir: str = ""
    dags_git_depth: int = 1
    dags_git_submodules: bool = False
    dags_git_username: str = "x-access-token"
    dags_git_known_hosts: str | None = None
    dags_s3_uri: str | None = None
    dags_s3_concurrency: int = 64


class _Reader:
    """Reads and converts settings, collecting every problem instead of stopping at one."""

    def __init__(self, env: Mapping[str, str]):
        self.env = env
        self.problems: list[str] = []

    def raw(self, name: str) -> str | None:
        value = self.env.get(name)
        return None if value is None or value.strip() == "" else value.strip()

    def text(self, name: str, default: str | None) -> str | None:
        value = self.raw(name)
        return default if value is None else value

    def _convert(self, name: str, default: Any, kind: str, convert: Callable[[str], Any],
                 fix: str) -> Any:
        value = self.raw(name)
        if value is None:
            return default
        try:
            return convert(value)
        except (TypeError, ValueError):
            self.problems.append(f"invalid setting: {name}={value!r} must be {kind}; {fix}")
            return default

    def number(self, name: str, default: float, minimum: float, maximum: float) -> float:
        value: float | None = self._convert(
            name, None, f"a number from {minimum:g} to {maximum:g}", float,
            f"e.g. {name}={default:g}")
        if value is None:
            return default
        if not minimum <= value <= maximum:
            self.problems.append(f"invalid setting: {name}={value:g} must be from {minimum:g} "
                                 f"to {maximum:g}")
            return default
        return value

    def integer(self, name: str, default: int, minimum: int, maximum: int) -> int:
        value: int | None = self._convert(
            name, None, f"a whole number from {minimum} to {maximum}", int,
            f"e.g. {name}={default}")
        if value is None:
            return default
        if not minimum <= value <= maximum:
            self.problems.append(f"invalid setting: {name}={value} must be from {minimum} "
                                 f"to {maximum}")
            return default
        return value

    def boolean(self, name: str, default: bool) -> bool:
        value = self.raw(name)
        if value is None:
            return default
        lowered = value.lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        self.problems.append(f"invalid setting: {name}={value!r} must be true or false")
        return default

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.raw(name)
        if value is None:
            return default
        if value.lower() not in choices:
            self.problems.append(f"invalid setting: {name}={value!r} must be one of "
                                 f"{', '.join(choices)}")
            return default
        return value.lower()


_SSM_PATH = re.compile(r"^/[A-Za-z0-9_.\-/]*$")
_LOG_LEVELS = ("debug", "info", "warning", "error")


def load(env: Mapping[str, str]) -> Settings:
    """Read and validate every AIRFLOW_ECS_* setting; raise ConfigError listing all problems."""
    r = _Reader(env)
    ssm_path = r.text("AIRFLOW_ECS_SSM_PATH", None)
    if ssm_path is not None:
        if not _SSM_PATH.match(ssm_path):
            r.problems.append(
                f"invalid setting: AIRFLOW_ECS_SSM_PATH={ssm_path!r} must be a Parameter Store "
                "path: start with '/', then letters, digits and _.-/ only, "
                "e.g. AIRFLOW_ECS_SSM_PATH=/airflow/prod/")
        elif not ssm_path.endswith("/"):
            ssm_path += "/"

    dags_dir = Path(r.text("AIRFLOW_ECS_DAGS_DIR", "/opt/airflow/dags") or "/opt/airflow/dags")
    if not dags_dir.is_absolute():
        r.problems.append(f"invalid setting: AIRFLOW_ECS_DAGS_DIR={str(dags_dir)!r} must be an "
                          "absolute path, e.g. /opt/airflow/dags")
    state_default = str(dags_dir.parent / ".dags-sync")
    dags_state_dir = Path(r.text("AIRFLOW_ECS_DAGS_STATE_DIR", state_default) or state_default)

    settings = Settings(
        ssm_path=ssm_path,
        wait_timeout=r.number("AIRFLOW_ECS_WAIT_TIMEOUT", 300.0, 1, 86400),
        db_migrate=r.boolean("AIRFLOW_ECS_DB_MIGRATE", False),
        stop_timeout=r.integer("AIRFLOW_ECS_STOP_TIMEOUT", 120, 2, 86400),
        admin_username=r.text("AIRFLOW_ECS_ADMIN_USERNAME", "admin") or "admin",
        api_port=r.integer("AIRFLOW_ECS_API_PORT", 8080, 1, 65535),
        # Logins (FAB auth manager).
        webserver_config_file=_absolute_path(r, "AIRFLOW_ECS_WEBSERVER_CONFIG_FILE",
                                             "/opt/airflow/config/webserver_config.py"),
        ldap_uri=_ldap_uri(r),
        ldap_bind_user=r.text("AIRFLOW_ECS_LDAP_BIND_USER", None),
        ldap_search_base=r.text("AIRFLOW_ECS_LDAP_SEARCH_BASE", None),
        ldap_user_filter=_ldap_filter(r),
        ldap_uid_field=r.text("AIRFLOW_ECS_LDAP_UID_FIELD", "uid") or "uid",
        ldap_group_field=r.text("AIRFLOW_ECS_LDAP_GROUP_FIELD", "memberOf") or "memberOf",
        ldap_roles_mapping=_ldap_roles_mapping(r),
        ldap_default_role=r.text("AIRFLOW_ECS_LDAP_DEFAULT_ROLE", None),
        ldap_tls_ca_file=_absolute_path(r, "AIRFLOW_ECS_LDAP_TLS_CA_FILE",
                                        "/opt/airflow/config/ldap-ca.pem"),
        check_fingerprints=r.boolean("AIRFLOW_ECS_CHECK_FINGERPRINTS", True),
        log_level=r.choice("AIRFLOW_ECS_LOG_LEVEL", "info", _LOG_LEVELS).upper(),
        protection=r.boolean("AIRFLOW_ECS_PROTECTION", True),
        protection_minutes=r.integer("AIRFLOW_ECS_PROTECTION_MINUTES", 60, 1, 2880),
        protection_idle_seconds=r.integer("AIRFLOW_ECS_PROTECTION_IDLE_SECONDS", 60, 0, 86400),
        metrics_interval=r.number("AIRFLOW_ECS_METRICS_INTERVAL", 60.0, 1, 3600),
        metrics_namespace=r.text("AIRFLOW_ECS_METRICS_NAMESPACE", "AirflowEcs") or "AirflowEcs",
        metrics_cluster=r.text("AIRFLOW_ECS_METRICS_CLUSTER", "default") or "default",
        metrics_worker_service=r.text("AIRFLOW_ECS_METRICS_WORKER_SERVICE", "") or "",
        metrics_queues=tuple(q.strip() for q in
                             (r.text("AIRFLOW_ECS_METRICS_QUEUES", "") or "").split(",")
                             if q.strip()),
        dags_source=r.choice("AIRFLOW_ECS_DAGS_SOURCE", "image", DAG_SOURCES),
        dags_dir=dags_dir,
        dags_state_dir=dags_state_dir,
        dags_refresh_seconds=r.integer("AIRFLOW_ECS_DAGS_REFRESH_SECONDS", 0, 0, 86400),
        dags_allow_shrink=r.boolean("AIRFLOW_ECS_DAGS_ALLOW_SHRINK", False),
        dags_keep_seconds=r.integer("AIRFLOW_ECS_DAGS_KEEP_SECONDS", 300, 0, 86400),
        dags_sync_timeout=r.integer("AIRFLOW_ECS_DAGS_SYNC_TIMEOUT", 120, 1, 86400),
        dags_git_url=r.text("AIRFLOW_ECS_DAGS_GIT_URL", None),
        dags_git_ref=r.text("AIRFLOW_ECS_DAGS_GIT_REF", "main") or "main",
        dags_git_subdir=(r.text("AIRFLOW_ECS_DAGS_GIT_SUBDIR", "") or "").strip("/"),
        dags_git_depth=r.integer("AIRFLOW_ECS_DAGS_GIT_DEPTH", 1, 0, 1_000_000),
        dags_git_submodules=r.boolean("AIRFLOW_ECS_DAGS_GIT_SUBMODULES", False),
        dags_git_username=r.text("AIRFLOW_ECS_DAGS_GIT_USERNAME", "x-access-token")
        or "x-access-token",
        dags_git_known_hosts=r.text("AIRFLOW_ECS_DAGS_GIT_KNOWN_HOSTS", None),
        dags_s3_uri=r.text("AIRFLOW_ECS_DAGS_S3_URI", None),
        dags_s3_concurrency=r.integer("AIRFLOW_ECS_DAGS_S3_CONCURRENCY", 64, 1, 1024),
    )

    if settings.dags_source == "git" and not settings.dags_git_url:
        r.problems.append("required setting: AIRFLOW_ECS_DAGS_GIT_URL when "
                          "AIRFLOW_ECS_DAGS_SOURCE=git, e.g. https://github.com/acme/dags.git")
    if settings.dags_source == "s3":
        uri = settings.dags_s3_uri
        if not uri:
            r.problems.append("required setting: AIRFLOW_ECS_DAGS_S3_URI when "
                              "AIRFLOW_ECS_DAGS_SOURCE=s3, e.g. s3://acme-airflow/dags/")
        elif not re.match(r"^s3://[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9](/.*)?$", uri):
            r.problems.append(f"invalid setting: AIRFLOW_ECS_DAGS_S3_URI={uri!r} must be "
                              "s3://BUCKET/PREFIX/ with a valid bucket name")
    if settings.ldap_uri and settings.webserver_config_file:
        r.problems.append("invalid setting: AIRFLOW_ECS_LDAP_URI and "
                          "AIRFLOW_ECS_WEBSERVER_CONFIG_FILE are both set, but your own "
                          "webserver_config.py replaces the one the LDAP settings go into; "
                          "set one of them (put AUTH_LDAP_* in your file)")
    if settings.ldap_uri:
        for name, value in (("AIRFLOW_ECS_LDAP_BIND_USER", settings.ldap_bind_user),
                            ("AIRFLOW_ECS_LDAP_SEARCH_BASE", settings.ldap_search_base)):
            if not value:
                r.problems.append(f"required setting: {name} when AIRFLOW_ECS_LDAP_URI is set, "
                                  f"e.g. {name}={_LDAP_EXAMPLES[name]}")
        if not settings.ldap_roles_mapping and not settings.ldap_default_role:
            r.problems.append("required setting: AIRFLOW_ECS_LDAP_ROLES_MAPPING or "
                              "AIRFLOW_ECS_LDAP_DEFAULT_ROLE when AIRFLOW_ECS_LDAP_URI is set: "
                              "without either no LDAP user gets a role, e.g. "
                              "AIRFLOW_ECS_LDAP_ROLES_MAPPING="
                              "'{\"cn=airflow-ops,ou=groups,dc=example,dc=com\": [\"Op\"]}'")
    elif r.raw("AIRFLOW_ECS_LDAP_URI") is None:
        given = sorted(n for n in env if n.startswith("AIRFLOW_ECS_LDAP_") and env[n].strip())
        if given:
            r.problems.append(f"required setting: AIRFLOW_ECS_LDAP_URI, since {', '.join(given)} "
                              "is set; e.g. AIRFLOW_ECS_LDAP_URI=ldaps://ldap.example.com:636 "
                              "(or unset the LDAP settings)")
    if ".." in Path(settings.dags_git_subdir).parts:
        r.problems.append(f"invalid setting: AIRFLOW_ECS_DAGS_GIT_SUBDIR="
                          f"{settings.dags_git_subdir!r} must stay inside the repository "
                          "(no '..')")

    unknown = sorted(n for n in env if n.startswith(PREFIX) and n != ROLE_ENV_MARKER
                     and n not in DOCUMENTED and _base_name(n) not in DOCUMENTED)
    for name in unknown:
        r.problems.append(f"unknown setting: {name}; see the README's configuration reference "
                          "(a typo?)")

    if r.problems:
        raise ConfigError(r.problems)
    return settings


_LDAP_EXAMPLES = {"AIRFLOW_ECS_LDAP_BIND_USER": "cn=airflow,ou=services,dc=example,dc=com",
                  "AIRFLOW_ECS_LDAP_SEARCH_BASE": "ou=people,dc=example,dc=com"}
# ldap:// sends the bind password and every user's password in clear: only to this host.
_LDAP_LOCAL_HOSTS = ("127.0.0.1", "localhost", "[::1]")


def _ldap_uri(r: _Reader) -> str | None:
    name = "AIRFLOW_ECS_LDAP_URI"
    uri = r.text(name, None)
    if uri is None:
        return None
    shown = mask_url(uri)  # a URI with credentials in it must not show them
    scheme, sep, rest = uri.partition("://")
    host = rest.split("/", 1)[0].rsplit("@", 1)[-1]
    hostname = host if host.startswith("[") else host.split(":", 1)[0]
    hostname = hostname.split("]", 1)[0] + "]" if hostname.startswith("[") else hostname
    if not sep or not hostname or scheme.lower() not in ("ldaps", "ldap") or "@" in rest \
            or " " in uri:
        r.problems.append(f"invalid setting: {name}={shown!r} must be ldaps://HOST[:PORT], "
                          f"e.g. {name}=ldaps://ldap.example.com:636")
        return None
    if scheme.lower() == "ldap" and hostname.lower() not in _LDAP_LOCAL_HOSTS:
        r.problems.append(f"invalid setting: {name}={shown!r}: ldap:// sends passwords in clear "
                          f"text; use ldaps://{host} (ldap:// is accepted only for 127.0.0.1 "
                          "and localhost)")
        return None
    return uri


def _ldap_filter(r: _Reader) -> str:
    name = "AIRFLOW_ECS_LDAP_USER_FILTER"
    value = r.text(name, "") or ""
    if value and not (value.startswith("(") and value.endswith(")")
                      and value.count("(") == value.count(")")):
        r.problems.append(f"invalid setting: {name}={value!r} must be one LDAP filter in "
                          f"parentheses, e.g. {name}=(objectClass=inetOrgPerson)")
        return ""
    return value


def _ldap_roles_mapping(r: _Reader) -> tuple[tuple[str, tuple[str, ...]], ...]:
    import json

    name = "AIRFLOW_ECS_LDAP_ROLES_MAPPING"
    value = r.text(name, None)
    if value is None:
        return ()
    fix = (f"it must be a JSON object from group DN to a list of role names, e.g. "
           f"{name}='{{\"cn=airflow-ops,ou=groups,dc=example,dc=com\": [\"Op\"]}}'")
    try:
        mapping = json.loads(value)
    except ValueError as exc:
        r.problems.append(f"invalid setting: {name} is not JSON ({exc}); {fix}")
        return ()
    if not isinstance(mapping, dict) or not all(
            isinstance(group, str) and group.strip() and isinstance(roles, list) and roles
            and all(isinstance(role, str) and role.strip() for role in roles)
            for group, roles in mapping.items()):
        r.problems.append(f"invalid setting: {name}: {fix}")
        return ()
    return tuple((group, tuple(roles)) for group, roles in mapping.items())


def _absolute_path(r: _Reader, name: str, example: str) -> Path | None:
    value = r.text(name, None)
    if value is None:
        return None
    if not Path(value).is_absolute():
        r.problems.append(f"invalid setting: {name}={value!r} must be an absolute path, "
                          f"e.g. {name}={example}")
        return None
    return Path(value)


def _base_name(name: str) -> str:
    # NAME_FILE is the file form of NAME (see entrypoint.secrets).
    return name[: -len("_FILE")] if name.endswith("_FILE") else name
