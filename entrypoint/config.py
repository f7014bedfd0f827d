"""Our own settings: every `AIRFLOW_ECS_*` variable, declared once, read once into a frozen object.

`Settings` below is the one table: each field is a setting, its variable is
`AIRFLOW_ECS_` + the field's name in capitals, and the helper it is assigned
from (`text`, `integer`, `boolean`, ...) declares its kind, default, range or
choices, meaning and README example. `load()` and its checks, the README's
reference (entrypoint.tools.reference) and every other reader take their values
from that declaration: adding a setting is one entry here plus the code that
uses it.

`load()` validates everything and reports every problem at once, each naming
the variable, the value seen (settings here are never secret) and the fix.
Code that runs in another process and needs only a few settings that the
start-up has already validated (Airflow's worker) reads them with
`load(env, only=(...))`, through the same declaration.

Secret-valued inputs (the admin password, git credentials) are declared in the
same table as class variables, never held in a Settings: they are resolved by
`entrypoint.secrets` and read from the resolved environment by the code that
needs them, by the variable names given below.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any, ClassVar

from entrypoint.airflow_names import PREFIX
from entrypoint.errors import ConfigError
from entrypoint.log import mask_url

# Set by the entrypoint itself on the role's environment, never by users: the
# mark by which `airflow-ecs health` finds the resolved values (running_env).
from entrypoint.running_env import MARKER as ROLE_ENV_MARKER

DAG_SOURCES = ("image", "git", "s3")
# How long the scheduler keeps its short pause after its last sign of work
# (entrypoint.scheduler.pacing).
SCHEDULER_BUSY_HOLD_SECONDS = 30
_LOG_LEVELS = ("debug", "info", "warning", "error")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}

# Kinds of setting: how a value is read, and the Python type it becomes.
TEXT, PATH, INTEGER, NUMBER, BOOLEAN, CHOICE, LIST, SECRET = (
    "text", "path", "integer", "number", "boolean", "choice", "list", "secret")


@dataclasses.dataclass(eq=False)
class Setting:
    """The declaration of one setting (see `Settings`, the table of them)."""

    kind: str
    default: Any  # the value when the variable is unset or blank; None: no value
    meaning: str
    example: str
    low: int | float | None = None  # the range of an integer or number
    high: int | float | None = None
    choices: tuple[str, ...] = ()
    shown: str | None = None  # the README's default, where it isn't the value itself
    # Also put into the role's environment (entrypoint.defaults), where processes
    # started beside or inside the role read it without importing this module.
    exported: bool = False
    # A further check of a value read: the problem ("must ..."), or None.
    check: Callable[[Setting, Any], str | None] | None = None
    tidy: Callable[[Any], Any] | None = None  # applied to a value read that passed
    attr: str = ""  # the Settings attribute; bound when the table is read

    @property
    def name(self) -> str:
        return PREFIX + self.attr.upper()

    @property
    def secret(self) -> bool:
        return self.kind == SECRET

    @property
    def shown_default(self) -> str:
        if self.shown is not None:
            return self.shown
        if self.default is None or self.default == "":
            return "(unset)"
        return as_env(self.default)


_KEY = "airflow_ecs"  # the key of a field's declaration in its metadata


def _field(setting: Setting) -> Any:
    # Any: to mypy the field is its default's type, as written on the attribute.
    return dataclasses.field(default=setting.default, metadata={_KEY: setting})


# The helpers a field of Settings is assigned from, one per kind. Each takes the
# Setting's other attributes (shown, exported, check, tidy) as keywords.
def text(default: str | None, meaning: str, example: str, **extra: Any) -> Any:
    return _field(Setting(TEXT, default, meaning, example, **extra))


def path(default: Path, meaning: str, example: str, **extra: Any) -> Any:
    return _field(Setting(PATH, default, meaning, example, **extra))


def integer(default: int, low: int, high: int, meaning: str, example: str,
            **extra: Any) -> Any:
    return _field(Setting(INTEGER, default, meaning, example, low=low, high=high, **extra))


def number(default: float, low: float, high: float, meaning: str, example: str,
           **extra: Any) -> Any:
    return _field(Setting(NUMBER, default, meaning, example, low=low, high=high, **extra))


def boolean(default: bool, meaning: str, example: str, **extra: Any) -> Any:
    return _field(Setting(BOOLEAN, default, meaning, example, **extra))


def choice(default: str, choices: tuple[str, ...], meaning: str, example: str,
           **extra: Any) -> Any:
    """One of `choices` (lower case), given in any case."""
    return _field(Setting(CHOICE, default, meaning, example, choices=choices, **extra))


def text_list(meaning: str, example: str, **extra: Any) -> Any:
    """Comma-separated values, empty ones dropped; unset: none."""
    return _field(Setting(LIST, (), meaning, example, **extra))


def secret(meaning: str, example: str) -> Setting:
    """A secret-valued variable: declared here, never read into a Settings."""
    return Setting(SECRET, None, meaning, example)


# --- checks of single values ------------------------------------------------------------------
_SSM_PATH = re.compile(r"^/[A-Za-z0-9_.\-/]*$")


def _parameter_store_path(s: Setting, value: str) -> str | None:
    if _SSM_PATH.match(value):
        return None
    return ("must be a Parameter Store path: start with '/', then letters, digits and _.-/ "
            f"only, e.g. {s.name}={s.example}")


def _absolute(s: Setting, value: Path) -> str | None:
    return None if value.is_absolute() else f"must be an absolute path, e.g. {s.example}"


def _inside_repository(s: Setting, value: str) -> str | None:
    return "must stay inside the repository (no '..')" if ".." in Path(value).parts else None


def _ldap_filter(s: Setting, value: str) -> str | None:
    if value.startswith("(") and value.endswith(")") and value.count("(") == value.count(")"):
        return None
    return f"must be one LDAP filter in parentheses, e.g. {s.name}={s.example}"


def _roles_mapping_problem(s: Setting, value: str) -> str | None:
    import json

    group = "group DN" if s.attr.startswith("ldap_") else "group"
    fix = (f"must be a JSON object from {group} to a list of role names, e.g. "
           f"{s.name}='{s.example}'")
    try:
        mapping = json.loads(value)
    except ValueError as exc:
        return f"is not JSON ({exc}); it {fix}"
    if not isinstance(mapping, dict) or not all(
            isinstance(group, str) and group.strip() and isinstance(roles, list) and roles
            and all(isinstance(role, str) and role.strip() for role in roles)
            for group, roles in mapping.items()):
        return fix
    return None


def _roles_mapping(value: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    import json

    return tuple((group, tuple(roles)) for group, roles in json.loads(value).items())


# An ECS service name, and a Celery queue name as a worker's --queues takes it.
_SERVICE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,254}$")
_QUEUE_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,100}$")


def parse_worker_sets(value: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """SERVICE=QUEUE,QUEUE;SERVICE=QUEUE as (service, queues) pairs; ValueError says what is
    wrong. Hand-rolled: one split per separator, over a syntax that fits one variable."""
    pairs = []
    services: set[str] = set()
    owners: dict[str, str] = {}
    for part in (p.strip() for p in value.split(";")):
        if not part:
            continue
        service, sep, queues_text = (x.strip() for x in part.partition("="))
        if not sep or not _SERVICE_NAME.match(service):
            raise ValueError(f"{part!r} is not SERVICE=QUEUE,QUEUE (SERVICE an ECS service "
                             "name)")
        if service in services:
            raise ValueError(f"names service {service!r} twice")
        services.add(service)
        queues = tuple(q.strip() for q in queues_text.split(",") if q.strip())
        if not queues or not all(_QUEUE_NAME.match(q) for q in queues):
            raise ValueError(f"{part!r}: {service} needs one or more queue names (letters, "
                             "digits, _ . -) after '='")
        for queue in queues:
            if queue in owners:
                raise ValueError(f"queue {queue!r} is given to both {owners[queue]} and "
                                 f"{service}: each queue's backlog scales one service")
            owners[queue] = service
        pairs.append((service, queues))
    if not pairs:
        raise ValueError("names no service")
    return tuple(pairs)


def format_worker_sets(pairs: Collection[tuple[str, Collection[str]]]) -> str:
    """The value parse_worker_sets reads back as pairs."""
    return ";".join(f"{service}={','.join(queues)}" for service, queues in pairs)


def _worker_sets_problem(s: Setting, value: str) -> str | None:
    try:
        parse_worker_sets(value)
    except ValueError as exc:
        return (f"{exc}; write SERVICE=QUEUE,QUEUE;SERVICE=QUEUE, e.g. "
                f"{s.name}={s.example}")
    return None


def _scopes(s: Setting, value: str) -> str | None:
    if "openid" in value.split():
        return None
    return f"must include openid (space-separated scopes), e.g. {s.name}='{s.example}'"


def _claim(s: Setting, value: str) -> str | None:
    return None if value.strip() and " " not in value else \
        f"must be the name of one claim, e.g. {s.name}={s.example}"


@dataclasses.dataclass(frozen=True)
class Settings:
    """Every setting, in the README's order: one entry each, the only place it is declared."""

    ssm_path: str | None = text(
        None, "Parameter Store path whose parameters (recursive, SecureString decrypted) "
        "become environment variables named after their last path segment.", "/airflow/prod/",
        check=_parameter_store_path, tidy=lambda p: p if p.endswith("/") else p + "/")
    ssm_role_path: str | None = text(
        None, "A second Parameter Store path, loaded the same way by this task alone: the "
        "settings and secrets one role needs and the others must not read (the webserver's "
        "LDAP or OIDC login). Outside AIRFLOW_ECS_SSM_PATH; a name defined under both is "
        "refused.", "/airflow/prod-webserver/",
        check=_parameter_store_path, tidy=lambda p: p if p.endswith("/") else p + "/")
    wait_timeout: float = number(
        300.0, 1, 86400, "Overall deadline in seconds for the dependency waits (Redis, "
        "metadata DB, migrations, execution API).", "120")
    db_migrate: bool = boolean(
        False, "Run `airflow db migrate` at start instead of waiting for another task to do it.",
        "true")
    stop_timeout: int = integer(
        120, 2, 86400, "Seconds ECS gives a container between SIGTERM and SIGKILL (the task "
        "definition's stopTimeout). A worker still running tasks 10 s before it ends restores "
        "their messages to the queue, so another worker runs them.", "120", exported=True)
    admin_username: str = text(
        "admin", "User name of the admin account created from AIRFLOW_ECS_ADMIN_PASSWORD.",
        "admin")
    ADMIN_PASSWORD: ClassVar[Setting] = secret(
        "Admin password (secret: give it as a reference or through ECS `secrets`). Unset: no "
        "admin user is configured.", "ssm:/airflow/prod/admin-password")
    service_account_username: str | None = text(
        None, "User name of a service account for automation (CI jobs): a FAB database user, "
        "created and kept at AIRFLOW_ECS_SERVICE_ACCOUNT_ROLE by the webserver, that gets REST "
        "API tokens from POST /auth/token with its password. Unset: none is managed.", "ci-bot")
    SERVICE_ACCOUNT_PASSWORD: ClassVar[Setting] = secret(
        "Password of the service account (secret: give it as a reference or through ECS "
        "`secrets`); required with AIRFLOW_ECS_SERVICE_ACCOUNT_USERNAME.",
        "ssm:/airflow/prod/ci-bot-password")
    service_account_role: str = text(
        "User", "The service account's one role, set back at every webserver start (User may "
        "trigger DAG runs, Viewer only reads).", "Op")
    api_port: int = integer(
        8080, 1, 65535, "Port the webserver role's api-server listens on.", "8080",
        exported=True)
    check_fingerprints: bool = boolean(
        True, "Publish and compare fingerprints of the shared keys in Redis; a role whose keys "
        "differ from the deployment's refuses to start.", "false")
    log_level: str = choice(
        "INFO", _LOG_LEVELS, "Log level of the entrypoint's own messages.", "DEBUG",
        tidy=str.upper)
    protection: bool = boolean(
        True, "Workers on ECS protect their task from scale-in and deployments while they run "
        "tasks (through ECS_AGENT_URI, which ECS sets).", "false")
    protection_minutes: int = integer(
        60, 1, 2880, "Expiry of each protection (1 to 2880); renewed while tasks run.", "120")
    protection_idle_seconds: int = integer(
        60, 0, 86400, "Idle time after the last task before a worker clears its protection.",
        "300")
    worker_ping_seconds: int = integer(
        10, 0, 60, "Seconds between two pings a worker sends itself through the broker; its "
        "health probe reads their outcome instead of pinging it. 0: no such pings, the probe "
        "pings the worker through the broker itself.", "10")
    scheduler_busy_sleep_seconds: float = number(
        0.25, 0, 60, "The scheduler's pause after an idle loop while its tasks are queued or "
        f"running, and for {SCHEDULER_BUSY_HOLD_SECONDS} s after: how late it notices a task's "
        "end and queues the next wave. At rest it pauses [scheduler] scheduler_idle_sleep_time "
        "(Airflow's 1 s), which this never exceeds.", "0.5")
    metrics_interval: float = number(
        60.0, 1, 3600, "Seconds between two publications of the metrics role.", "30")
    metrics_namespace: str = text(
        "AirflowEcs", "CloudWatch namespace the metrics role publishes to.", "Airflow/prod")
    metrics_cluster: str = text(
        "default", "ECS cluster of the worker service (a metric dimension, and where running "
        "workers are counted).", "airflow")
    metrics_worker_service: str = text(
        "", "ECS service of the workers; its running count divides the backlog. Unset: the "
        "whole backlog is published as the backlog per worker.", "airflow-worker")
    metrics_worker_sets: str = text(
        "", "Worker services and the Celery queues each consumes, as SERVICE=QUEUE,QUEUE;"
        "SERVICE=QUEUE: each service's backlog (its queues' queued and running tasks) is "
        "divided by its own running count and published with its name as the Service "
        "dimension. Replaces AIRFLOW_ECS_METRICS_WORKER_SERVICE (`airflow-ecs render` sets "
        "it from worker_sets).", "airflow-worker-default=default;airflow-worker-heavy=heavy",
        shown="(unset: one worker service)", check=_worker_sets_problem)
    metrics_queues: tuple[str, ...] = text_list(
        "Comma-separated Celery queues to report even when empty.", "default,heavy",
        shown="(the default queue and every bound queue)")
    dags_source: str = choice(
        "image", DAG_SOURCES, "Where DAGs come from: image, git or s3.", "git", exported=True)
    # (RUF009: path() returns a dataclasses.field, whose default, a Path, is immutable.)
    dags_dir: Path = path(  # noqa: RUF009
        Path("/opt/airflow/dags"), "Folder Airflow reads DAGs from (the roles' dags_folder is "
        "pointed there).", "/opt/airflow/dags", check=_absolute)
    # Unset: the dags dir's parent/.dags-sync (load() derives it).
    dags_state_dir: Path = path(  # noqa: RUF009
        Path("/opt/airflow/.dags-sync"), "Where synced trees and the sync status are kept "
        "(must be writable).", "/opt/airflow/.dags-sync", shown="(dags dir's parent)/.dags-sync")
    dags_refresh_seconds: int = integer(
        0, 0, 86400, "Seconds between DAG syncs after start-up; 0 syncs at start-up only.", "60")
    dags_allow_shrink: bool = boolean(
        False, "Publish a sync that empties the tree or loses more than half of its files.",
        "true")
    dags_keep_seconds: int = integer(
        300, 0, 86400, "Grace period before a replaced DAG tree is deleted.", "600")
    dags_sync_timeout: int = integer(
        120, 1, 86400, "Deadline in seconds of one sync.", "300")
    dags_git_url: str | None = text(
        None, "Git repository of the DAGs (https, ssh, git or file URL).",
        "https://github.com/acme/dags.git")
    dags_git_ref: str = text("main", "Branch, tag or full commit sha to sync.", "release")
    dags_git_subdir: str = text(
        "", "Folder inside the repository that holds the DAGs.", "dags",
        shown="(repository root)", check=_inside_repository, tidy=lambda d: d.strip("/"))
    dags_git_depth: int = integer(1, 0, 1_000_000, "Clone depth; 0 fetches full history.", "1")
    dags_git_submodules: bool = boolean(False, "Also sync submodules (recursively).", "true")
    dags_git_username: str = text(
        "x-access-token", "User name sent with the HTTPS token.", "oauth2")
    DAGS_GIT_TOKEN: ClassVar[Setting] = secret(
        "HTTPS token for the git URL (secret; re-read on every sync).",
        "secretsmanager:airflow/dags-token")
    DAGS_GIT_SSH_KEY: ClassVar[Setting] = secret(
        "SSH private key for an ssh git URL (secret; re-read on every sync).",
        "ssm:/airflow/prod/dags-deploy-key")
    dags_git_known_hosts: str | None = text(
        None, "known_hosts lines for the SSH host; required with an SSH key.",
        "github.com ssh-ed25519 AAAA...")
    dags_s3_uri: str | None = text(None, "S3 prefix holding the DAGs.", "s3://acme-airflow/dags/")
    dags_s3_concurrency: int = integer(
        64, 1, 1024, "Parallel S3 downloads (open connections) per sync, at most half the "
        "open-file limit.", "128")
    # Versioned DAG bundles (docs/dags.md, "Versioned DAGs").
    dags_versioned: bool = boolean(
        False, "Serve git or S3 DAGs as an Airflow versioned DAG bundle: each DAG run keeps "
        "the DAG version it started with, and workers fetch that version.", "true")
    dags_version_keep_seconds: int = integer(
        3600, 0, 30 * 86400, "Grace period before a DAG version that no running task uses is "
        "deleted from local disk (versioned mode).", "86400")
    dags_s3_manifest_uri: str | None = text(
        None, "S3 prefix, outside AIRFLOW_ECS_DAGS_S3_URI, where the dag-processor keeps each "
        "DAG version's object list, so workers can build versions older than the current one "
        "(versioned mode). Unset: a worker builds the current version, or one it built "
        "before.", "s3://acme-airflow/dag-versions/")
    # Logins (FAB auth manager): the webserver's webserver_config.py (docs/logins.md).
    webserver_config_file: Path | None = _field(Setting(  # noqa: RUF009 - see dags_dir
        PATH, None, "Path of your own FAB webserver_config.py for the webserver; it replaces the "
        "one the entrypoint generates (the login settings below are then not used).",
        "/opt/airflow/config/webserver_config.py", check=_absolute,
        shown="(generated from these settings)"))
    ldap_uri: str | None = text(
        None, "LDAP server the webserver logs users in from (FAB's AUTH_LDAP); ldaps:// "
        "(ldap:// only to 127.0.0.1 or localhost). Unset: users are FAB's database users. The "
        "admin account still logs in from the database.", "ldaps://ldap.example.com:636")
    ldap_bind_user: str | None = text(
        None, "DN the webserver binds as to search for users; required with "
        "AIRFLOW_ECS_LDAP_URI.", "cn=airflow,ou=services,dc=example,dc=com")
    LDAP_BIND_PASSWORD: ClassVar[Setting] = secret(
        "Password of AIRFLOW_ECS_LDAP_BIND_USER (secret: give it as a reference or through ECS "
        "`secrets`).", "ssm:/airflow/prod/ldap-bind-password")
    ldap_search_base: str | None = text(
        None, "Where users are searched; required with AIRFLOW_ECS_LDAP_URI.",
        "ou=people,dc=example,dc=com")
    ldap_user_filter: str = text(
        "", "LDAP filter a user must also match to log in.", "(objectClass=inetOrgPerson)",
        shown="(every user under the search base)", check=_ldap_filter)
    ldap_uid_field: str = text(
        "uid", "Attribute holding the name users log in with.", "sAMAccountName")
    ldap_group_field: str = text(
        "memberOf", "Attribute of a user listing the DNs of their groups.", "memberOf")
    ldap_roles_mapping: tuple[tuple[str, tuple[str, ...]], ...] = _field(Setting(
        TEXT, (), "JSON object: group DN to the list of Airflow roles its members get, synced "
        "at every login. Each role must exist (Admin, Op, User, Viewer, Public, or one of "
        "[fab] custom_roles / made in the UI): the webserver refuses to start otherwise.",
        '{"cn=airflow-ops,ou=groups,dc=example,dc=com": ["Op"]}', shown="(unset)",
        check=_roles_mapping_problem, tidy=_roles_mapping))
    ldap_default_role: str | None = text(
        None, "Role of an LDAP user in none of the mapped groups.", "Viewer",
        shown="(unset: refuse users in no mapped group)")
    ldap_tls_ca_file: Path | None = _field(Setting(  # noqa: RUF009 - see dags_dir
        PATH, None, "PEM file of the CA that signed the LDAP server's certificate.",
        "/opt/airflow/config/ldap-ca.pem", check=_absolute,
        shown="(the system's CA certificates)"))
    # OIDC single sign-on (FAB's AUTH_OAUTH): docs/logins.md, "OIDC".
    oidc_issuer: str | None = text(
        None, "Issuer URL of the OpenID Connect provider the webserver logs users in with "
        "(FAB's AUTH_OAUTH); its discovery document is ISSUER/.well-known/openid-configuration. "
        "https:// (http:// only to 127.0.0.1 or localhost). Unset: no OIDC. The admin account "
        "and service accounts still get API tokens from the database.",
        "https://login.example.com/oauth2/default")
    oidc_client_id: str | None = text(
        None, "Client ID of the webserver's application at the provider; required with "
        "AIRFLOW_ECS_OIDC_ISSUER.", "0oa1b2c3d4airflow")
    OIDC_CLIENT_SECRET: ClassVar[Setting] = secret(
        "Client secret of that application (secret: give it as a reference or through ECS "
        "`secrets`).", "ssm:/airflow/prod/oidc-client-secret")
    oidc_scopes: str = text(
        "openid email profile", "Scopes requested at login, space-separated; openid is "
        "required.", "openid email profile groups", check=_scopes)
    oidc_username_claim: str = text(
        "preferred_username", "Claim (of the ID token or the userinfo answer) holding the "
        "user name an account is made and found by.", "email", check=_claim)
    oidc_groups_claim: str = text(
        "groups", "Claim (of the ID token or the userinfo answer) listing the user's groups.",
        "cognito:groups", check=_claim)
    oidc_roles_mapping: tuple[tuple[str, tuple[str, ...]], ...] = _field(Setting(
        TEXT, (), "JSON object: group (as the groups claim names it) to the list of Airflow "
        "roles its members get, synced at every login. Each role must exist: the webserver "
        "refuses to start otherwise.", '{"airflow-ops": ["Op"], "airflow-viewers": ["Viewer"]}',
        shown="(unset)", check=_roles_mapping_problem, tidy=_roles_mapping))
    oidc_default_role: str | None = text(
        None, "Role of an OIDC user in none of the mapped groups.", "Viewer",
        shown="(unset: refuse users in no mapped group)")


# --- the table, read from Settings ------------------------------------------------------------
@functools.cache
def _table(cls: type[Settings]) -> tuple[Setting, ...]:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    table = []
    # Class annotations in definition order, base classes first: fields and secrets alike.
    for klass in reversed(cls.__mro__):
        for attr in vars(klass).get("__annotations__", {}):
            setting = (fields[attr].metadata.get(_KEY) if attr in fields
                       else getattr(cls, attr, None))
            if not isinstance(setting, Setting):
                raise TypeError(f"Settings.{attr} is not declared with a setting helper")
            setting.attr = attr
            table.append(setting)
    return tuple(table)


def table() -> tuple[Setting, ...]:
    """Every setting, secrets included, in the order declared."""
    return _table(Settings)


def declared(attr: str) -> Setting:
    """The declaration of one setting, by its Settings attribute."""
    for setting in table():
        if setting.attr == attr:
            return setting
    raise KeyError(attr)


SETTINGS = table()  # the same, for code that reads it as a constant

# Names of secret-valued variables, read from the resolved environment.
ADMIN_PASSWORD_VAR = declared("ADMIN_PASSWORD").name
GIT_TOKEN_VAR = declared("DAGS_GIT_TOKEN").name
GIT_SSH_KEY_VAR = declared("DAGS_GIT_SSH_KEY").name
LDAP_BIND_PASSWORD_VAR = declared("LDAP_BIND_PASSWORD").name
OIDC_CLIENT_SECRET_VAR = declared("OIDC_CLIENT_SECRET").name
SERVICE_ACCOUNT_PASSWORD_VAR = declared("SERVICE_ACCOUNT_PASSWORD").name
# Settings whose value is a path and whose name happens to end in _FILE: not the file
# form of another variable (see entrypoint.secrets).
PATH_SETTINGS = frozenset(s.name for s in SETTINGS if s.kind == PATH and s.name.endswith("_FILE"))


# --- reading ----------------------------------------------------------------------------------
def as_env(value: Any) -> str:
    """A setting's value as its variable spells it (what `load` reads back as the same)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple) and value and isinstance(value[0], tuple):
        import json  # a mapping of lists (ldap_roles_mapping), written as its JSON

        return json.dumps({key: list(items) for key, items in value})
    if isinstance(value, tuple):
        return ",".join(value)
    return "" if value is None else str(value)


def _read(s: Setting, raw: str) -> tuple[Any, str | None]:
    """The value of setting s given as raw (stripped, not blank), or the problem with it."""
    name = s.name
    value: Any = raw
    if s.kind in (INTEGER, NUMBER):
        whole = s.kind == INTEGER
        assert s.low is not None
        assert s.high is not None
        low, high = (f"{s.low}", f"{s.high}") if whole else (f"{s.low:g}", f"{s.high:g}")
        try:
            value = int(raw) if whole else float(raw)
        except ValueError:
            kind, example = ("a whole number", f"{s.default}") if whole else \
                ("a number", f"{s.default:g}")
            return None, (f"invalid setting: {name}={raw!r} must be {kind} from {low} to {high}; "
                          f"e.g. {name}={example}")
        if not s.low <= value <= s.high:
            shown = f"{value}" if whole else f"{value:g}"
            return None, f"invalid setting: {name}={shown} must be from {low} to {high}"
    elif s.kind == BOOLEAN:
        if raw.lower() not in _TRUE | _FALSE:
            return None, f"invalid setting: {name}={raw!r} must be true or false"
        value = raw.lower() in _TRUE
    elif s.kind == CHOICE:
        if raw.lower() not in s.choices:
            return None, (f"invalid setting: {name}={raw!r} must be one of "
                          f"{', '.join(s.choices)}")
        value = raw.lower()
    elif s.kind == PATH:
        value = Path(raw)
    elif s.kind == LIST:
        value = tuple(item.strip() for item in raw.split(",") if item.strip())
    if s.check is not None:
        problem = s.check(s, value)
        if problem:
            return None, f"invalid setting: {name}={str(value)!r} {problem}"
    return (value if s.tidy is None else s.tidy(value)), None


def _raw(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name)
    return None if value is None or value.strip() == "" else value.strip()


def setting_or_default(env: Mapping[str, str], attr: str) -> tuple[Any, ConfigError | None]:
    """One setting, read inside a process the start-up did not validate for (Airflow's
    worker or scheduler, started some other way): its value, or, when that is bad, its
    declared default and the problem (the start-up itself refuses a bad value)."""
    try:
        return getattr(load(env, only=(attr,)), attr), None
    except ConfigError as exc:
        return getattr(Settings(), attr), exc


def load(env: Mapping[str, str], only: Collection[str] | None = None) -> Settings:
    """Read and validate every AIRFLOW_ECS_* setting; raise ConfigError listing all problems.

    With `only` (Settings attributes), read just those, leave the others at their
    declared defaults, and skip the checks that span settings and the search for
    unknown ones: for a process that needs a few settings the start-up validated.
    """
    strangers = set(only or ()) - {s.attr for s in table()}
    if strangers:
        raise KeyError(f"not settings: {', '.join(sorted(strangers))}")
    problems: list[str] = []
    values: dict[str, Any] = {}
    for s in table():
        if s.secret or (only is not None and s.attr not in only):
            continue
        raw = _raw(env, s.name)
        if raw is not None:
            value, problem = _read(s, raw)
            if problem:
                problems.append(problem)
            else:
                values[s.attr] = value
    if "dags_state_dir" not in values and (only is None or "dags_state_dir" in only):
        dags_dir = values.get("dags_dir", declared("dags_dir").default)
        values["dags_state_dir"] = dags_dir.parent / ".dags-sync"
    settings = Settings(**values)
    if only is None:
        problems.extend(_across(settings, env))
        known = {s.name for s in table()}
        problems.extend(f"unknown setting: {name}; see the README's configuration reference "
                        "(a typo?)" for name in sorted(env) if _unknown(name, known))
    if problems:
        raise ConfigError(problems)
    return settings


def _across(settings: Settings, env: Mapping[str, str]) -> list[str]:
    """Problems of settings that depend on each other."""
    problems = _logins(settings, env)
    if settings.metrics_worker_sets and settings.metrics_worker_service:
        problems.append("invalid setting: AIRFLOW_ECS_METRICS_WORKER_SERVICE and "
                        "AIRFLOW_ECS_METRICS_WORKER_SETS are both set; unset "
                        "AIRFLOW_ECS_METRICS_WORKER_SERVICE (AIRFLOW_ECS_METRICS_WORKER_SETS "
                        "names every worker service)")
    if settings.dags_source == "git" and not settings.dags_git_url:
        problems.append("required setting: AIRFLOW_ECS_DAGS_GIT_URL when "
                        "AIRFLOW_ECS_DAGS_SOURCE=git, e.g. https://github.com/acme/dags.git")
    if settings.dags_source == "s3":
        uri = settings.dags_s3_uri
        if not uri:
            problems.append("required setting: AIRFLOW_ECS_DAGS_S3_URI when "
                            "AIRFLOW_ECS_DAGS_SOURCE=s3, e.g. s3://acme-airflow/dags/")
        elif not _S3_URI.match(uri):
            problems.append(f"invalid setting: AIRFLOW_ECS_DAGS_S3_URI={uri!r} must be "
                            "s3://BUCKET/PREFIX/ with a valid bucket name")
    if settings.dags_versioned and settings.dags_source == "image":
        problems.append("invalid setting: AIRFLOW_ECS_DAGS_VERSIONED=true needs "
                        "AIRFLOW_ECS_DAGS_SOURCE=git or s3 (the image's DAGs have one "
                        "version); set the source or unset AIRFLOW_ECS_DAGS_VERSIONED")
    manifests = settings.dags_s3_manifest_uri
    if manifests is not None:
        if not _S3_URI.match(manifests):
            problems.append(f"invalid setting: AIRFLOW_ECS_DAGS_S3_MANIFEST_URI={manifests!r} "
                            "must be s3://BUCKET/PREFIX/ with a valid bucket name")
        elif settings.dags_s3_uri and _under(manifests, settings.dags_s3_uri):
            problems.append(f"invalid setting: AIRFLOW_ECS_DAGS_S3_MANIFEST_URI={manifests!r} "
                            "is inside AIRFLOW_ECS_DAGS_S3_URI: each manifest written there "
                            "would change the DAGs' version; choose a prefix outside it, "
                            "e.g. s3://BUCKET/dag-versions/")
    return problems


_S3_URI = re.compile(r"^s3://[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9](/.*)?$")


def _under(uri: str, prefix: str) -> bool:
    """Whether S3 URI uri lies under the S3 prefix (both s3://bucket/prefix)."""
    def folder(value: str) -> str:
        return value.rstrip("/") + "/"

    return folder(uri).startswith(folder(prefix))


def _unknown(name: str, known: Collection[str]) -> bool:
    if not name.startswith(PREFIX) or name == ROLE_ENV_MARKER or name in known:
        return False
    # NAME_FILE is the file form of NAME (see entrypoint.secrets).
    return (name[: -len("_FILE")] if name.endswith("_FILE") else name) not in known


# ldap:// sends the bind password and every user's password in clear: only to this host.
_LDAP_LOCAL_HOSTS = ("127.0.0.1", "localhost", "[::1]")


def _logins(settings: Settings, env: Mapping[str, str]) -> list[str]:
    """Problems of the login settings (FAB's LDAP and OIDC) together."""
    problems = _ldap(settings, env) + _oidc(settings, env)
    account = settings.service_account_username
    if account is None and any(n.startswith(PREFIX + "SERVICE_ACCOUNT_") and env[n].strip()
                               for n in env):
        problems.append("required setting: AIRFLOW_ECS_SERVICE_ACCOUNT_USERNAME, since the "
                        "service account's password or role is set; e.g. "
                        "AIRFLOW_ECS_SERVICE_ACCOUNT_USERNAME=ci-bot")
    if account is not None and account == settings.admin_username:
        problems.append(f"invalid setting: AIRFLOW_ECS_SERVICE_ACCOUNT_USERNAME={account!r} is "
                        "the admin account's name (AIRFLOW_ECS_ADMIN_USERNAME); give the "
                        "service account a name of its own, e.g. ci-bot")
    if settings.ldap_uri and settings.oidc_issuer:
        problems.append("invalid setting: AIRFLOW_ECS_LDAP_URI and AIRFLOW_ECS_OIDC_ISSUER are "
                        "both set, but FAB logs users in one way (AUTH_LDAP or AUTH_OAUTH); "
                        "unset one of them")
    return problems


def _settings_without_their_key(env: Mapping[str, str], method: str, key: str,
                                example: str) -> list[str]:
    """A login method's settings given without the one that turns it on."""
    given = sorted(n for n in env if n.startswith(f"{PREFIX}{method}_") and env[n].strip())
    if not given:
        return []
    return [f"required setting: {key}, since {', '.join(given)} is set; e.g. {key}={example} "
            f"(or unset the {method} settings)"]


def _own_config_conflict(key: str, method: str, put: str) -> str:
    return (f"invalid setting: {key} and AIRFLOW_ECS_WEBSERVER_CONFIG_FILE are both set, but "
            f"your own webserver_config.py replaces the one the {method} settings go into; "
            f"set one of them (put {put} in your file)")


def _ldap(settings: Settings, env: Mapping[str, str]) -> list[str]:
    problems = []
    uri = settings.ldap_uri
    if uri is None:
        return _settings_without_their_key(env, "LDAP", "AIRFLOW_ECS_LDAP_URI",
                                           "ldaps://ldap.example.com:636")
    problems += _ldap_uri_problems(uri)
    if settings.webserver_config_file:
        problems.append(_own_config_conflict("AIRFLOW_ECS_LDAP_URI", "LDAP", "AUTH_LDAP_*"))
    for attr in ("ldap_bind_user", "ldap_search_base"):
        if not getattr(settings, attr):
            s = declared(attr)
            problems.append(f"required setting: {s.name} when AIRFLOW_ECS_LDAP_URI is set, "
                            f"e.g. {s.name}={s.example}")
    if not settings.ldap_roles_mapping and not settings.ldap_default_role:
        s = declared("ldap_roles_mapping")
        problems.append("required setting: AIRFLOW_ECS_LDAP_ROLES_MAPPING or "
                        "AIRFLOW_ECS_LDAP_DEFAULT_ROLE when AIRFLOW_ECS_LDAP_URI is set: "
                        f"without either no LDAP user gets a role, e.g. {s.name}='{s.example}'")
    return problems


def _oidc(settings: Settings, env: Mapping[str, str]) -> list[str]:
    problems = []
    issuer = settings.oidc_issuer
    if issuer is None:
        return _settings_without_their_key(env, "OIDC", "AIRFLOW_ECS_OIDC_ISSUER",
                                           "https://login.example.com/oauth2/default")
    problems += oidc_issuer_problems(issuer)
    if settings.webserver_config_file:
        problems.append(_own_config_conflict("AIRFLOW_ECS_OIDC_ISSUER", "OIDC",
                                             "OAUTH_PROVIDERS"))
    if not settings.oidc_client_id:
        s = declared("oidc_client_id")
        problems.append(f"required setting: {s.name} when AIRFLOW_ECS_OIDC_ISSUER is set, "
                        f"e.g. {s.name}={s.example}")
    if not settings.oidc_roles_mapping and not settings.oidc_default_role:
        s = declared("oidc_roles_mapping")
        problems.append("required setting: AIRFLOW_ECS_OIDC_ROLES_MAPPING or "
                        "AIRFLOW_ECS_OIDC_DEFAULT_ROLE when AIRFLOW_ECS_OIDC_ISSUER is set: "
                        f"without either no OIDC user gets a role, e.g. {s.name}='{s.example}'")
    return problems


def oidc_issuer_problems(issuer: str) -> list[str]:
    """Problems of an OIDC issuer URL: https://, or http:// to this host only."""
    from urllib.parse import urlsplit

    name = declared("oidc_issuer").name
    shown = mask_url(issuer)
    try:
        parts = urlsplit(issuer)
        hostname = parts.hostname or ""
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError:
        parts, hostname = None, ""
    if parts is None or parts.scheme.lower() not in ("https", "http") or not hostname \
            or parts.username or parts.password or parts.query or parts.fragment \
            or " " in issuer:
        return [f"invalid setting: {name}={shown!r} must be https://HOST[/PATH], the issuer "
                f"the provider's discovery document names, e.g. {name}="
                "https://login.example.com/oauth2/default"]
    if parts.scheme.lower() == "http" and hostname.lower() not in ("127.0.0.1", "localhost",
                                                                    "::1"):
        return [f"invalid setting: {name}={shown!r}: http:// sends the client secret and "
                f"users' tokens in clear text; use https://{parts.netloc}{parts.path} "
                "(http:// is accepted only for 127.0.0.1 and localhost)"]
    return []


def oidc_discovery_url(issuer: str) -> str:
    """The discovery document of an issuer (OpenID Connect Discovery 1.0, section 4)."""
    return issuer.rstrip("/") + "/.well-known/openid-configuration"


def _ldap_uri_problems(uri: str) -> list[str]:
    name = declared("ldap_uri").name
    shown = mask_url(uri)  # a URI with credentials in it must not show them
    scheme, sep, rest = uri.partition("://")
    host = rest.split("/", 1)[0].rsplit("@", 1)[-1]
    hostname = host if host.startswith("[") else host.split(":", 1)[0]
    hostname = hostname.split("]", 1)[0] + "]" if hostname.startswith("[") else hostname
    if not sep or not hostname or scheme.lower() not in ("ldaps", "ldap") or "@" in rest \
            or " " in uri:
        return [f"invalid setting: {name}={shown!r} must be ldaps://HOST[:PORT], "
                f"e.g. {name}=ldaps://ldap.example.com:636"]
    if scheme.lower() == "ldap" and hostname.lower() not in _LDAP_LOCAL_HOSTS:
        return [f"invalid setting: {name}={shown!r}: ldap:// sends passwords in clear "
                f"text; use ldaps://{host} (ldap:// is accepted only for 127.0.0.1 "
                "and localhost)"]
    return []


def exported_env(settings: Settings) -> dict[str, str]:
    """The variables of the settings declared `exported`, with the values in `settings`."""
    return {s.name: as_env(getattr(settings, s.attr)) for s in table() if s.exported}
