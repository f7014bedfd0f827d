"""Dependency waits: Redis, the metadata database, the migrations, the execution API.

Each wait probes for real (an authenticated PING, a query, the schema's
revision, an HTTP answer), within one overall deadline
(AIRFLOW_ECS_WAIT_TIMEOUT), with exponential backoff and jitter (tenacity),
and one progress line per failed attempt naming the target with passwords
masked. Errors that waiting can't fix (a wrong password, a TLS mismatch, a
database that doesn't exist) fail at once instead of using up the deadline.

The deadline holds end to end: every attempt's connect, TLS, auth and query
share a budget capped at the time left, the back-off never sleeps past it, and
an alarm stops an attempt that overruns it anyway (health.deadline_alarm).
PostgreSQL is probed with psycopg2 in asynchronous mode, whatever driver the
URL names (they all speak libpq's options), so a server that accepts the
connection and never answers is given up on at the deadline, and a SIGTERM
is honoured at once.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from entrypoint import logins, migrations, rolenames
from entrypoint.airflow_names import (
    AUTH_MANAGER,
    BROKER_URL,
    DB_URL,
    EXECUTION_API_URL,
    RESULT_BACKEND,
)
from entrypoint.config import LDAP_BIND_PASSWORD_VAR, Settings, oidc_discovery_url
from entrypoint.errors import ConfigError, MigrationError, WaitTimeout
from entrypoint.log import log, mask, mask_url, redact
from entrypoint.probe.health import (
    GRACE,
    DeadlinePassed,
    deadline_alarm,
    lookup,
    postgres_params,
    postgres_query,
)
from entrypoint.urls import BROKER_SCHEMES, DB_SCHEMES, RESULT_SCHEMES, parse, problems_in_url

if TYPE_CHECKING:
    from pathlib import Path

    import tenacity
    from sqlalchemy.engine import Engine

# One attempt's budget (connect, TLS, auth and the query together), or the time left
# if less: long enough for a loaded server in another zone, short enough that an
# attempt stuck on a half-open connection is retried on a new one soon.
ATTEMPT_TIMEOUT = 5.0
# The back-off leaves at least this much for a last attempt, and none starts with less.
MIN_ATTEMPT = 0.25


class NotReady(Exception):
    """A probe failed in a way that waiting may fix."""


class Refused(Exception):
    """A probe failed in a way that waiting can't fix (wrong password, TLS mismatch...)."""


@dataclass
class Deadline:
    seconds: float
    started: float = 0.0

    def __post_init__(self) -> None:
        self.started = time.monotonic()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    @property
    def remaining(self) -> float:
        return self.seconds - self.elapsed


def needs(role: str) -> tuple[bool, bool, bool, bool]:
    """(redis, database, schema at head, execution API) for role: what its members'
    rows wait for (rolenames.TABLE; `exec` waits for Redis and the database)."""
    waits = frozenset().union(*(r.waits_for for r in rolenames.rows(role)))
    return (rolenames.REDIS in waits, rolenames.DB in waits, rolenames.SCHEMA in waits,
            rolenames.EXECUTION_API in waits)


def wait_for_dependencies(role: str, settings: Settings, env: Mapping[str, str]) -> None:
    redis_needed, db_needed, schema_needed, api_needed = needs(role)
    deadline = Deadline(settings.wait_timeout)
    broker = env.get(BROKER_URL, "").strip() if redis_needed else ""
    db_url = env.get(DB_URL, "").strip() if db_needed or schema_needed else ""
    api = env.get(EXECUTION_API_URL, "").strip() if api_needed else ""
    # Celery's results in Redis (docs/deploy.md, step 4): a URL that can't log in would
    # fail every task's result write after a start that looked healthy.
    results = env.get(RESULT_BACKEND, "").strip() \
        if any(RESULT_BACKEND in r.needs for r in rolenames.rows(role)) else ""
    if not results.startswith(("redis://", "rediss://")) or results == broker:
        results = ""
    _check_urls(broker, db_url, api, results)
    if broker.startswith(("redis://", "rediss://")):
        _wait("Redis", mask_url(broker), lambda timeout: probe_redis(broker, timeout), deadline)
    if results:
        _wait("the result backend's Redis", mask_url(results),
              lambda timeout: probe_redis(results, timeout, RESULT_BACKEND), deadline)
    if db_needed and db_url:
        _wait("the metadata database", _db_target(db_url),
              lambda timeout: probe_db(db_url, timeout), deadline)
    if schema_needed and db_url:
        if settings.db_migrate:
            migrations.run_migrations(settings, env)
        else:
            # Read as "<what> at <target> is ready": the schema, where it lives.
            _wait("the schema migrated to Airflow's head revision", _db_target(db_url),
                  lambda timeout: probe_schema(db_url, timeout), deadline,
                  hint="run the migrate role (airflow-ecs run migrate) before the other roles, "
                       "or set AIRFLOW_ECS_DB_MIGRATE=true on one of them")
    serves_logins = any(rolenames.row(m).admin_login for m in role.split("+"))
    if serves_logins and db_url and logins.uses_fab(env) \
            and not settings.db_migrate:
        # `airflow db migrate` creates FAB's tables after Airflow's: the webserver writes
        # the admin account into them.
        _wait("FAB's tables migrated to their head revision", _db_target(db_url),
              lambda timeout: probe_fab_schema(db_url, timeout), deadline,
              hint="run the migrate role (airflow-ecs run migrate) with this image, whose "
                   "`airflow db migrate` also migrates the FAB provider's tables")
    if serves_logins and settings.ldap_uri and logins.uses_fab(env):
        uri, password = settings.ldap_uri, env.get(LDAP_BIND_PASSWORD_VAR, "")
        mask(password)
        _wait("the LDAP server (AIRFLOW_ECS_LDAP_URI)", mask_url(uri),
              lambda timeout: probe_ldap(uri, settings.ldap_bind_user or "", password,
                                         settings.ldap_tls_ca_file, timeout), deadline,
              hint="the webserver logs users in from it: check AIRFLOW_ECS_LDAP_URI, and that "
                   "this task can reach the server (security groups, DNS)")
    if serves_logins and settings.oidc_issuer and logins.uses_fab(env):
        issuer = settings.oidc_issuer
        _wait("the OIDC provider's discovery document (AIRFLOW_ECS_OIDC_ISSUER)",
              mask_url(oidc_discovery_url(issuer)),
              lambda timeout: probe_oidc(issuer, timeout), deadline,
              hint="the webserver logs users in with it: check AIRFLOW_ECS_OIDC_ISSUER, and "
                   "that this task can reach the provider (security groups, NAT, DNS)")
    if api:
        _wait("the execution API", mask_url(api),
              lambda timeout: probe_execution_api(api, timeout), deadline,
              hint="workers report task state to the api-server: check that the webserver "
                   "runs and that this task can reach it")


def _check_urls(broker: str, db_url: str, api: str, results: str = "") -> None:
    """ConfigError naming every malformed URL about to be probed: a library given one
    fails in its own words, which may quote part of the password."""
    problems = []
    if broker:
        problems += problems_in_url(BROKER_URL, broker, BROKER_SCHEMES)
    if results:
        problems += problems_in_url(RESULT_BACKEND, results, RESULT_SCHEMES)
    if db_url:
        problems += problems_in_url(DB_URL, db_url, DB_SCHEMES)
    if api:
        if not api.startswith(("http://", "https://")):
            problems.append(f"invalid setting: {EXECUTION_API_URL} must be an http(s) URL")
        else:
            try:
                parse(api)
            except ValueError as exc:
                problems.append(f"invalid setting: {EXECUTION_API_URL}: {exc}")
    if problems:
        raise ConfigError(problems)


def _db_target(url: str) -> str:
    try:
        return mask_url(url.split("://", 1)[0] + "://" + parse(url).target)
    except ValueError:
        return "the database URL"


def _wait(what: str, target: str, probe: Callable[[float], None], deadline: Deadline,
          hint: str = "") -> None:
    """Run probe(seconds it may take) until it passes, within deadline."""
    import tenacity  # imported here: a start-up with nothing to wait for doesn't pay for it

    attempts = 0
    last = ""

    def before_sleep(state: tenacity.RetryCallState) -> None:
        nonlocal last
        exc = state.outcome.exception() if state.outcome else None
        last = str(exc)
        log.info("waiting for %s at %s (attempt %d, %.0fs of %.0fs): %s", what, target,
                 state.attempt_number, deadline.elapsed, deadline.seconds, last)

    def attempt() -> None:
        nonlocal attempts
        attempts += 1
        probe(max(min(ATTEMPT_TIMEOUT, deadline.remaining), 0.01))

    backoff = tenacity.wait_exponential_jitter(multiplier=0.5, max=10, jitter=1)
    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(NotReady),
        # Never sleep past the deadline: what is left goes to a last attempt.
        wait=lambda state: max(0.0, min(backoff(state), deadline.remaining - MIN_ATTEMPT)),
        stop=lambda _state: deadline.remaining < MIN_ATTEMPT,
        before_sleep=before_sleep,
        reraise=True,
    )
    try:
        with deadline_alarm(deadline.remaining + GRACE):
            retrying(attempt)
    except Refused as exc:
        raise WaitTimeout(f"{what} at {target} refused us: {exc}") from None
    except (NotReady, DeadlinePassed) as exc:
        if isinstance(exc, DeadlinePassed):
            exc = NotReady(f"no answer before the deadline ({exc})")
        raise WaitTimeout(
            f"{what} at {target} was not ready after {deadline.elapsed:.0f}s "
            f"(AIRFLOW_ECS_WAIT_TIMEOUT={deadline.seconds:g}, {attempts} attempt(s)); "
            f"last error: {exc or last}" + (f"\n  hint: {hint}" if hint else "")) from None
    log.info("%s at %s is ready", what, target)


# --- probes -----------------------------------------------------------------------------------
def _lookup(url: str, timeout: float) -> float:
    """The DNS lookup of url's host within timeout (NotReady otherwise); the time left.

    The client library looks the name up again, from an answer just given; the bound
    is for a resolver that does not answer at all (probe.health.lookup says why).
    """
    started = time.monotonic()
    try:
        endpoint = parse(url)
    except ValueError:
        return timeout  # the library reports the URL in its own words, checked before
    try:
        lookup(endpoint.host, endpoint.port, timeout)
    except OSError as exc:
        raise NotReady(str(exc)) from None
    return max(timeout - (time.monotonic() - started), 0.01)


def probe_redis(url: str, timeout: float = ATTEMPT_TIMEOUT, variable: str = BROKER_URL) -> None:
    """One PING with url's credentials; `variable` is where the URL came from."""
    import ssl

    import redis

    if not url.startswith("unix"):
        timeout = _lookup(url, timeout)
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=timeout,
                                      socket_timeout=timeout, retry_on_timeout=False)
    except ValueError as exc:
        raise ConfigError(f"invalid setting: {variable}: {exc}") from None
    try:
        client.ping()
    except redis.AuthenticationError as exc:
        if "required" in str(exc).lower() or "already authenticated" in str(exc):
            raise Refused("the server requires a password; add it to the URL: "
                          "redis://:PASSWORD@host:6379/0") from None
        raise Refused("the password or ACL user was rejected (AUTH failed); check the "
                      f"credentials in {variable}") from None
    except redis.ResponseError as exc:
        text = str(exc)
        if "NOAUTH" in text:
            raise Refused("the server requires a password; add it to the URL: "
                          "redis://:PASSWORD@host:6379/0") from None
        if "WRONGPASS" in text or "invalid password" in text or "invalid username" in text:
            raise Refused("the password or ACL user was rejected") from None
        raise NotReady(f"ResponseError: {text}") from None
    except redis.ConnectionError as exc:
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, ssl.SSLError) or "SSL" in str(exc) or "ssl" in str(exc):
            raise Refused("the TLS handshake failed: the URL says rediss:// but the server "
                          "does not seem to speak TLS (or its certificate is not trusted): "
                          f"{type(cause or exc).__name__}") from None
        text = str(exc)
        if "Connection closed by server" in text or "reset by peer" in text:
            raise NotReady(f"the server closed the connection (does it require TLS? then "
                           f"use rediss://): {text}") from None
        raise NotReady(f"{type(exc).__name__}: {text}") from None
    except redis.TimeoutError as exc:
        if url.startswith("rediss://"):
            raise NotReady(f"timed out: {exc} (no answer to the TLS handshake: if the server "
                           "does not speak TLS, use redis://)") from None
        raise NotReady(f"timed out: {exc} (does the server require TLS? then use rediss://)"
                       ) from None
    finally:
        client.close()


def _is_postgres(url: str) -> bool:
    return url.split("://", 1)[0].lower().split("+")[0] in ("postgresql", "postgres")


def _engine(url: str, timeout: float = ATTEMPT_TIMEOUT) -> Engine:
    """A SQLAlchemy engine with connect (and, for MySQL, read and write) timeouts.

    The probes use it for the databases other than PostgreSQL; the migration lock
    (migrations.py) for PostgreSQL too.
    """
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    seconds = max(int(timeout), 2)  # whole seconds; libpq takes less than 2 as 2
    connect_args: dict[str, int | str]
    if url.startswith("mysql"):
        connect_args = {"connect_timeout": seconds, "read_timeout": seconds,
                        "write_timeout": seconds}
    elif _is_postgres(url):
        # A server that stops answering mid-query must not hold us past the attempt:
        # each statement (the migration lock's polls included) gets the same bound.
        connect_args = {"connect_timeout": seconds}
        if "options=" not in url:  # the user's own options win
            connect_args["options"] = f"-c statement_timeout={seconds * 1000}"
    else:
        connect_args = {}
    return create_engine(url, poolclass=NullPool, connect_args=connect_args)


_PERMANENT_DB_ERRORS = ("password authentication failed", "does not exist",
                        "no pg_hba.conf entry", "Access denied for user",
                        "role \"", "SSL is required")


def _postgres(url: str, sql: str, timeout: float,
              missing_table_ok: bool = False) -> list[tuple[Any, ...]]:
    """Rows of sql, the whole exchange within timeout; NotReady, Refused or ConfigError."""
    import psycopg2
    import psycopg2.errors

    try:
        params = postgres_params(url)
    except ValueError as exc:
        raise ConfigError(f"invalid setting: {DB_URL}: {exc}") from None
    try:
        return postgres_query(params, sql, None, timeout)
    except TimeoutError as exc:
        raise NotReady(str(exc)) from None
    except psycopg2.errors.UndefinedTable:
        if missing_table_ok:
            return []
        raise
    except psycopg2.OperationalError as exc:
        message = redact(" ".join(str(exc).split()))
        if any(marker in message for marker in _PERMANENT_DB_ERRORS):
            raise Refused(message) from None
        raise NotReady(message or type(exc).__name__) from None
    except psycopg2.ProgrammingError as exc:  # libpq refused the options: the URL is wrong
        raise ConfigError(f"invalid setting: {DB_URL}: "
                          f"{redact(' '.join(str(exc).split()))}") from None
    except psycopg2.Error as exc:
        raise NotReady(f"{type(exc).__name__}: {redact(' '.join(str(exc).split()))}") from None
    except OSError as exc:  # the name lookup (probe.health.lookup)
        raise NotReady(str(exc)) from None


def probe_db(url: str, timeout: float = ATTEMPT_TIMEOUT) -> None:
    if _is_postgres(url):
        _postgres(url, "SELECT 1", timeout)
        return
    from sqlalchemy import text
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError

    try:
        engine = _engine(url, timeout)
    except (ArgumentError, NoSuchModuleError, ValueError) as exc:
        raise ConfigError(f"invalid setting: {DB_URL}: {type(exc).__name__}: "
                          f"{mask_url(str(exc))}") from None
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except OperationalError as exc:
        message = " ".join(str(exc.orig).split())
        if any(marker in message for marker in _PERMANENT_DB_ERRORS):
            raise Refused(message) from None
        raise NotReady(message) from None
    finally:
        engine.dispose()


def probe_schema(url: str, timeout: float = ATTEMPT_TIMEOUT) -> None:
    known, heads = migrations.revision_graph()
    current = _revisions(url, "alembic_version", timeout)
    _at_head(current, known, heads, "the database schema is", "this image's Airflow does not "
             "know: it was migrated by a newer Airflow", "schema at",
             "no revision (empty database)")


def probe_fab_schema(url: str, timeout: float = ATTEMPT_TIMEOUT) -> None:
    known, heads = migrations.fab_revision_graph()
    if not heads:
        raise ConfigError(f"invalid setting: {AUTH_MANAGER} selects FAB's auth manager, "
                          "but the FAB provider (apache-airflow-providers-fab) is not "
                          "installed in this image")
    current = _revisions(url, migrations.FAB_VERSION_TABLE, timeout)
    _at_head(current, known, heads, "FAB's tables are", "this image's FAB provider does not "
             "know: they were migrated by a newer one", "FAB's tables at",
             "no revision (not created yet)")


def _revisions(url: str, table: str, timeout: float) -> set[str]:
    """The revisions recorded in an Alembic version table (none while it doesn't exist)."""
    if _is_postgres(url):
        return {row[0] for row in _postgres(url, f"SELECT version_num FROM {table}",  # noqa: S608 - our constant
                                            timeout, missing_table_ok=True)}
    from sqlalchemy.exc import OperationalError

    engine = _engine(url, timeout)
    try:
        with engine.connect() as connection:
            return migrations.current_revisions(connection, table)
    except OperationalError as exc:
        raise NotReady(" ".join(str(exc.orig).split())) from None
    finally:
        engine.dispose()


def _at_head(current: set[str], known: frozenset[str], heads: frozenset[str], subject: str,
             unknown_why: str, progress: str, empty: str) -> None:
    """Return when current is heads; MigrationError for a revision this image doesn't
    know (a newer image migrated it); NotReady otherwise, saying where it stands."""
    if current == set(heads):
        return
    unknown = current - known
    if unknown:
        raise MigrationError(
            f"{subject} at revision {', '.join(sorted(unknown))}, which {unknown_why}. Run "
            "the image of that version, or restore the database.")
    raise NotReady(f"{progress} " + (", ".join(sorted(current)) or empty)
                   + f", head is {', '.join(sorted(heads))}")


def probe_ldap(uri: str, bind_user: str, bind_password: str, ca_file: Path | None,
               timeout: float = ATTEMPT_TIMEOUT) -> None:
    """Bind as the bind user, as FAB does before each user search, within timeout."""
    import ldap

    timeout = _lookup(uri, timeout)
    connection = ldap.initialize(uri)
    try:
        connection.set_option(ldap.OPT_REFERRALS, 0)
        connection.set_option(ldap.OPT_NETWORK_TIMEOUT, timeout)
        connection.set_option(ldap.OPT_TIMEOUT, timeout)
        connection.set_option(ldap.OPT_X_TLS_REQUIRE_CERT, ldap.OPT_X_TLS_DEMAND)
        if ca_file is not None:
            connection.set_option(ldap.OPT_X_TLS_CACERTFILE, str(ca_file))
        connection.set_option(ldap.OPT_X_TLS_NEWCTX, 0)
        connection.simple_bind_s(bind_user, bind_password)
    except ldap.INVALID_CREDENTIALS:
        raise Refused("the bind was rejected: check AIRFLOW_ECS_LDAP_BIND_USER and "
                      f"{LDAP_BIND_PASSWORD_VAR}") from None
    except ldap.SERVER_DOWN as exc:
        detail = _ldap_detail(exc)
        if "certificate" in detail.lower() or "tls" in detail.lower():
            raise Refused(f"the TLS handshake failed ({detail}): the server's certificate is "
                          "not trusted; give its CA in AIRFLOW_ECS_LDAP_TLS_CA_FILE") from None
        raise NotReady(f"can't contact the LDAP server ({detail})") from None
    except ldap.TIMEOUT:
        raise NotReady(f"no answer within {timeout:.1f}s") from None
    except ldap.LDAPError as exc:
        raise NotReady(f"{type(exc).__name__}: {_ldap_detail(exc)}") from None
    finally:
        with contextlib.suppress(Exception):
            connection.unbind_s()


def _ldap_detail(exc: Exception) -> str:
    fields = exc.args[0] if exc.args and isinstance(exc.args[0], dict) else {}
    return redact(" ".join(str(fields.get(k, "")) for k in ("desc", "info")).strip()
                  or type(exc).__name__)


# Keys of the discovery document that FAB's login (Authlib) uses.
OIDC_DISCOVERY_KEYS = ("issuer", "authorization_endpoint", "token_endpoint", "jwks_uri")


def probe_oidc(issuer: str, timeout: float = ATTEMPT_TIMEOUT) -> None:
    """Fetch the issuer's discovery document, as Authlib does at the first login, and check
    that it names this issuer and the endpoints the login needs."""
    import json
    import urllib.error
    import urllib.request

    url = oidc_discovery_url(issuer)
    if not url.startswith(("http://", "https://")):
        raise ConfigError("invalid setting: AIRFLOW_ECS_OIDC_ISSUER must be an http(s) URL")
    request = urllib.request.Request(url, headers={"Accept": "application/json"})  # noqa: S310 - scheme checked above
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            body = response.read(1 << 20)
    except urllib.error.HTTPError as exc:
        if exc.code >= 500 or exc.code == 429:
            raise NotReady(f"HTTP {exc.code}") from None
        raise Refused(f"HTTP {exc.code}: no discovery document there; AIRFLOW_ECS_OIDC_ISSUER "
                      "must be the issuer itself, the URL before "
                      "/.well-known/openid-configuration") from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        if "CERTIFICATE" in str(reason).upper():
            raise Refused(f"the TLS handshake failed ({reason}): the provider's certificate is "
                          "not trusted by the image's CA certificates") from None
        raise NotReady(redact(str(reason))) from None
    except (TimeoutError, ConnectionError, OSError) as exc:
        raise NotReady(redact(str(exc)) or type(exc).__name__) from None
    try:
        document = json.loads(body)
    except ValueError:
        raise Refused("the answer is not a JSON discovery document: check "
                      "AIRFLOW_ECS_OIDC_ISSUER") from None
    missing = [key for key in OIDC_DISCOVERY_KEYS
               if not isinstance(document, dict) or not document.get(key)]
    if missing:
        raise Refused(f"the discovery document lacks {', '.join(missing)}")
    if document["issuer"] != issuer:
        # Authlib checks the ID token's iss against this: every login would fail.
        raise Refused(f"the discovery document names the issuer {document['issuer']!r}, not "
                      "AIRFLOW_ECS_OIDC_ISSUER; set it to exactly that (trailing slash "
                      "included)")


def probe_execution_api(url: str, timeout: float = ATTEMPT_TIMEOUT) -> None:
    import urllib.error
    import urllib.request

    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"invalid setting: {EXECUTION_API_URL} must be an http(s) URL")
    timeout = _lookup(url, timeout)
    health = url.rstrip("/") + "/health"
    request = urllib.request.Request(health, method="GET")  # noqa: S310 - scheme checked above
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            if response.status < 500:
                return
    except urllib.error.HTTPError as exc:
        if exc.code < 500:
            return  # it answers: the API is up, whatever it thinks of our request
        raise NotReady(f"HTTP {exc.code}") from None
    except (OSError, ValueError) as exc:
        raise NotReady(f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}") from None
