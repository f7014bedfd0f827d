"""Dependency waits: Redis, the metadata database, the migrations, the execution API.

Each wait probes for real (an authenticated PING, a query, the schema's
revision, an HTTP answer), within one overall deadline
(AIRFLOW_ECS_WAIT_TIMEOUT), with exponential backoff and jitter (tenacity),
and one progress line per failed attempt naming the target with passwords
masked. Errors that waiting can't fix (a wrong password, a TLS mismatch, a
database that doesn't exist) fail at once instead of using up the deadline.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from entrypoint import migrations
from entrypoint.checks import BROKER_URL, DB_URL, EXECUTION_API_URL
from entrypoint.config import Settings
from entrypoint.errors import ConfigError, MigrationError, WaitTimeout
from entrypoint.log import log, mask_url
from entrypoint.urls import parse

REDIS_ROLES = {"scheduler", "worker", "flower", "metrics"}
DB_ROLES = {"scheduler", "dag-processor", "triggerer", "webserver", "worker", "migrate"}
SCHEMA_ROLES = {"scheduler", "dag-processor", "triggerer", "webserver", "worker"}
SOCKET_TIMEOUT = 2.0  # short, so a SIGTERM never waits long behind a blocked connect


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
    """(redis, database, schema at head, execution API) for role."""
    members = set(role.split("+"))
    if role == "exec":
        return True, True, False, False
    return (bool(members & REDIS_ROLES), bool(members & DB_ROLES),
            bool(members & SCHEMA_ROLES), "worker" in members)


def wait_for_dependencies(role: str, settings: Settings, env: Mapping[str, str]) -> None:
    redis_needed, db_needed, schema_needed, api_needed = needs(role)
    deadline = Deadline(settings.wait_timeout)
    broker = env.get(BROKER_URL, "").strip()
    db_url = env.get(DB_URL, "").strip()
    if redis_needed and broker.startswith(("redis://", "rediss://")):
        _wait("Redis", mask_url(broker), lambda: probe_redis(broker), deadline)
    if db_needed and db_url:
        _wait("the metadata database", _db_target(db_url), lambda: probe_db(db_url), deadline)
    if schema_needed and db_url:
        if settings.db_migrate:
            migrations.run_migrations(settings, env)
        else:
            _wait("the migrations", "the schema at Airflow's head revision",
                  lambda: probe_schema(db_url), deadline,
                  hint="run the migrate role (airflow-ecs run migrate) before the other roles, "
                       "or set AIRFLOW_ECS_DB_MIGRATE=true on one of them")
    api = env.get(EXECUTION_API_URL, "").strip()
    if api_needed and api:
        _wait("the execution API", api, lambda: probe_execution_api(api), deadline,
              hint="workers report task state to the api-server: check that the webserver "
                   "runs and that this task can reach it")


def _db_target(url: str) -> str:
    try:
        return mask_url(url.split("://", 1)[0] + "://" + parse(url).target)
    except ValueError:
        return "the database URL"


def _wait(what: str, target: str, probe: Callable[[], None], deadline: Deadline,
          hint: str = "") -> None:
    import tenacity  # imported here: a start-up with nothing to wait for doesn't pay for it

    attempts = 0
    last = ""

    def before_sleep(state) -> None:
        nonlocal last
        exc = state.outcome.exception() if state.outcome else None
        last = str(exc)
        log.info("waiting for %s at %s (attempt %d, %.0fs of %.0fs): %s", what, target,
                 state.attempt_number, deadline.elapsed, deadline.seconds, last)

    def count(_state) -> None:
        nonlocal attempts
        attempts += 1

    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(NotReady),
        wait=tenacity.wait_exponential_jitter(multiplier=0.5, max=10, jitter=1),
        stop=tenacity.stop_after_delay(max(deadline.remaining, 0.0)),
        before=count,
        before_sleep=before_sleep,
        reraise=True,
    )
    try:
        retrying(probe)
    except Refused as exc:
        raise WaitTimeout(f"{what} at {target} refused us: {exc}") from None
    except NotReady as exc:
        raise WaitTimeout(
            f"{what} at {target} was not ready after {deadline.elapsed:.0f}s "
            f"(AIRFLOW_ECS_WAIT_TIMEOUT={deadline.seconds:g}, {attempts} attempt(s)); "
            f"last error: {exc or last}" + (f"\n  hint: {hint}" if hint else "")) from None
    log.info("%s at %s is ready", what, target)


# --- probes -----------------------------------------------------------------------------------
def probe_redis(url: str) -> None:
    import ssl

    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=SOCKET_TIMEOUT,
                                      socket_timeout=SOCKET_TIMEOUT, retry_on_timeout=False)
    except ValueError as exc:
        raise ConfigError(f"invalid setting: {BROKER_URL}: {exc}") from None
    try:
        client.ping()
    except redis.AuthenticationError as exc:
        if "required" in str(exc).lower() or "already authenticated" in str(exc):
            raise Refused("the server requires a password; add it to the URL: "
                          "redis://:PASSWORD@host:6379/0") from None
        raise Refused("the password or ACL user was rejected (AUTH failed); check the "
                      "credentials in AIRFLOW__CELERY__BROKER_URL") from None
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


def _engine(url: str):
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    connect_args = {"connect_timeout": int(SOCKET_TIMEOUT) + 1} if url.startswith(
        ("postgresql", "postgres", "mysql")) else {}
    return create_engine(url, poolclass=NullPool, connect_args=connect_args)


_PERMANENT_DB_ERRORS = ("password authentication failed", "does not exist",
                        "no pg_hba.conf entry", "Access denied for user",
                        "role \"", "SSL is required")


def probe_db(url: str) -> None:
    from sqlalchemy import text
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError

    try:
        engine = _engine(url)
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


def probe_schema(url: str) -> None:
    from sqlalchemy.exc import OperationalError

    known, heads = migrations.revision_graph()
    engine = _engine(url)
    try:
        with engine.connect() as connection:
            current = migrations.current_revisions(connection)
    except OperationalError as exc:
        raise NotReady(" ".join(str(exc.orig).split())) from None
    finally:
        engine.dispose()
    if current == set(heads):
        return
    unknown = current - known
    if unknown:
        raise MigrationError(
            f"the database schema is at revision {', '.join(sorted(unknown))}, which this "
            "image's Airflow does not know: it was migrated by a newer Airflow. Run the image "
            "of that version, or restore the database.")
    raise NotReady("schema at " + (", ".join(sorted(current)) or "no revision (empty database)")
                   + f", head is {', '.join(sorted(heads))}")


def probe_execution_api(url: str) -> None:
    import urllib.error
    import urllib.request

    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"invalid setting: {EXECUTION_API_URL} must be an http(s) URL")
    health = url.rstrip("/") + "/health"
    request = urllib.request.Request(health, method="GET")  # noqa: S310 - scheme checked above
    try:
        with urllib.request.urlopen(request, timeout=SOCKET_TIMEOUT + 1) as response:  # noqa: S310
            if response.status < 500:
                return
    except urllib.error.HTTPError as exc:
        if exc.code < 500:
            return  # it answers: the API is up, whatever it thinks of our request
        raise NotReady(f"HTTP {exc.code}") from None
    except (OSError, ValueError) as exc:
        raise NotReady(f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}") from None
