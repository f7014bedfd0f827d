"""`airflow-ecs health ROLE`: the probe of Docker HEALTHCHECK and ECS, run every 30 s.

It must be cheap on a small Fargate task, so it never imports Airflow nor
boto3 (seconds and a quarter second of CPU per call: BENCHMARKS.md, import
costs), and every probe is bounded by short timeouts.

Each role's row in the role table (rolenames.TABLE) says which probe it gets:
- a job heartbeat (scheduler, dag-processor, triggerer): the role's job on
  this host has a fresh heartbeat in the metadata database (Airflow's own
  thresholds, judged by the database's clock so container clocks don't matter);
- an HTTP GET (webserver, flower): its health endpoint answers on 127.0.0.1;
- a Celery ping (worker): a ping addressed to this worker only, through the
  broker, answers. The worker sends it to itself every few seconds and records
  the outcome, which the probe reads (entrypoint.worker.liveness); without a
  usable record the probe sends it. The ping is handled by the worker's
  consumer, not by a pool slot, so a worker whose every slot is busy stays
  healthy.

With DAGs synced from git or S3, the result also says how fresh the DAGs
are; no successful sync at all is unhealthy, staleness alone is reported
but stays healthy (a git outage must not make ECS kill every container).
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from entrypoint import rolenames
from entrypoint.airflow_names import BROKER_URL, DB_URL, PREFIX
from entrypoint.errors import ConfigError
from entrypoint.log import mask_url, redact

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import FrameType

TIMEOUT = 5.0  # one probe's network exchange at most (connect, TLS, auth, query)
# The whole `health` command, every member of a group included, answers within this:
# the images' HEALTHCHECK gives it 15 s, and the interpreter's start-up counts too.
BUDGET = 10.0
# How long past its deadline a step may overrun before the alarm stops it.
GRACE = 0.5

# A heartbeat's threshold when its option (rolenames.Heartbeat.threshold_var) is unset.
DEFAULT_THRESHOLD = 30.0


class HealthResult(NamedTuple):
    healthy: bool
    reason: str


# --- bounds -----------------------------------------------------------------------------------
class DeadlinePassed(BaseException):
    """The alarm of `deadline_alarm` went off.

    A BaseException, like `Terminated`, so that no library's `except Exception`
    swallows it and goes on waiting.
    """


@contextlib.contextmanager
def deadline_alarm(seconds: float) -> Iterator[None]:
    """Raise DeadlinePassed in the main thread once `seconds` have passed.

    A backstop behind each step's own timeout: a library that makes several
    network calls in a row (connect, AUTH, a query) bounds each one but not
    their sum. SIGALRM interrupts any wait in Python code (socket calls,
    select); the PostgreSQL probes below wait in Python for that reason. Signals
    reach the main thread only: elsewhere, or when an alarm is already set, this
    does nothing and the steps' own timeouts are the bound.
    """
    if (threading.current_thread() is not threading.main_thread()
            or signal.getitimer(signal.ITIMER_REAL)[0] > 0):
        yield
        return

    def expire(_signum: int, _frame: FrameType | None) -> None:
        raise DeadlinePassed(f"no answer within {seconds:.1f}s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.01))
    try:
        yield
    finally:
        try:
            signal.setitimer(signal.ITIMER_REAL, 0)
        finally:
            signal.signal(signal.SIGALRM, previous)


def time_left(deadline: float, cap: float = TIMEOUT) -> float:
    """Seconds a step may take before `deadline` (time.monotonic()), at most `cap`."""
    left = min(cap, deadline - time.monotonic())
    if left <= 0:
        raise TimeoutError("no time left before the deadline")
    return left


# --- name lookups, bounded --------------------------------------------------------------------
def lookup(host: str, port: int | None, timeout: float) -> list[str]:
    """The addresses of host, the lookup within `timeout` seconds; TimeoutError otherwise.

    getaddrinfo(3) is a blocking C call that no socket timeout covers and no
    signal interrupts (glibc's resolver resumes its wait after one): a DNS server
    that drops queries holds it for resolv.conf's timeout x attempts, per search
    domain, 10 s and more by default. So the lookup runs in a thread, and a
    lookup still blocked when the time is up is left to finish on its own (the
    thread is a daemon and holds nothing). The standard library has no resolver
    with a deadline, and a DNS library would bypass /etc/hosts and nsswitch.
    Addresses and socket paths are returned as they are; OSError for a name that
    does not resolve.
    """
    if not host or host.startswith("/"):
        return [host]
    import socket  # here, like every import a start-up with nothing to wait for can skip

    literal = host.strip("[]")
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, literal)
        except OSError:
            continue
        return [literal]
    done = threading.Event()
    outcome: list[Any] = []

    def resolve() -> None:
        try:
            outcome.append(socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM))
        except OSError as exc:
            outcome.append(exc)
        finally:
            done.set()

    threading.Thread(target=resolve, name=f"lookup {host}", daemon=True).start()
    if not done.wait(max(timeout, 0.0)):
        raise TimeoutError(f"the DNS lookup of {host} got no answer within {timeout:.1f}s "
                           "(check the name and this task's DNS resolver)")
    if isinstance(outcome[0], OSError):
        raise OSError(f"the DNS lookup of {host} failed: {outcome[0]}") from None
    return list(dict.fromkeys(str(info[4][0]) for info in outcome[0]))


# --- PostgreSQL, bounded ----------------------------------------------------------------------
def postgres_params(url: str) -> dict[str, str | int]:
    """libpq keywords for a SQLAlchemy PostgreSQL URL, whatever its driver (+psycopg2,
    +psycopg): the host, port, credentials and database, and the query's options
    (sslmode, sslrootcert, options...) as libpq reads them."""
    from urllib.parse import parse_qsl, urlsplit

    from entrypoint.urls import parse

    endpoint = parse(url)
    params: dict[str, str | int] = dict(parse_qsl(urlsplit(url).query))
    params.update(host=endpoint.host, port=endpoint.port)
    if endpoint.username:
        params["user"] = endpoint.username
    if endpoint.password is not None:
        params["password"] = endpoint.password
    if endpoint.path.strip("/"):
        params["dbname"] = endpoint.path.strip("/")
    return params


def postgres_query(params: Mapping[str, str | int], sql: str, args: object = None,
                   timeout: float = TIMEOUT) -> list[tuple[Any, ...]]:
    """Rows of one query, connect, TLS, auth and query all within `timeout` seconds.

    psycopg2 in asynchronous mode, waited on with poll() here: a blocking libpq
    call neither honours a deadline of its own once connected (a half-open
    connection during a failover blocks in recv() for as long as TCP keeps it)
    nor lets a signal handler run (libpq retries the interrupted call), so
    SIGTERM would wait behind it. Raises TimeoutError naming the step that got
    no answer, or psycopg2's errors.
    """
    import select

    import psycopg2
    import psycopg2.extensions as ext

    deadline = time.monotonic() + timeout
    target = f"{params.get('host')}:{params.get('port')}"

    def wait(conn: Any, step: str) -> None:
        while True:
            state = conn.poll()
            if state == ext.POLL_OK:
                return
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no answer from {target} within {timeout:.1f}s ({step}): "
                                   "the server accepted the connection but does not respond "
                                   "(a failover in progress, an overloaded server, or a "
                                   "firewall dropping packets)")
            poller = select.poll()
            poller.register(conn.fileno(), select.POLLIN if state == ext.POLL_READ
                            else select.POLLOUT)
            poller.poll(left * 1000)

    host = str(params.get("host") or "")
    if "hostaddr" not in params and "," not in host:
        # libpq resolves the name inside connect, unbounded: it connects to the address
        # found here instead, and still uses the name for TLS and the password file.
        # libpq tries each pair of the two lists in turn, as it tries a name's addresses.
        addresses = lookup(host, None, deadline - time.monotonic())
        if addresses != [host]:
            params = {**params, "host": ",".join([host] * len(addresses)),
                      "hostaddr": ",".join(addresses)}
    conn = psycopg2.connect(**params, async_=True)
    try:
        wait(conn, "connecting")
        cursor = conn.cursor()
        cursor.execute(sql, args)
        wait(conn, "running a query")
        return cursor.fetchall() if cursor.description else []
    finally:
        conn.close()


# --- the probe --------------------------------------------------------------------------------
def hostname() -> str:
    """This host's name as Airflow records it (airflow.utils.net.getfqdn, its default)."""
    import socket

    name = socket.gethostname()
    try:
        addrs = socket.getaddrinfo(name, None, 0, socket.SOCK_DGRAM, 0, socket.AI_CANONNAME)
    except OSError:
        return name
    for addr in addrs:
        if addr[3]:
            return addr[3]
    return name


def probe(role: str, env: Mapping[str, str], budget: float = BUDGET) -> HealthResult:
    """Every member of role (and the DAG sync), all within `budget` seconds."""
    deadline = time.monotonic() + budget
    results: list[HealthResult] = []
    try:
        with deadline_alarm(budget + GRACE):
            results = _probe_members(role.split("+"), env, deadline)
            dags = _dag_sync(env, role)
            if dags is not None:
                results.append(dags)
    except DeadlinePassed:
        results.append(HealthResult(False, f"{role}: no answer within {budget:g}s"))
    healthy = all(r.healthy for r in results)
    return HealthResult(healthy, "; ".join(r.reason for r in results))


def _guarded(members: Sequence[str],
             run: Callable[..., list[HealthResult]]) -> list[HealthResult]:
    """run()'s results, or one unhealthy result per member naming what went wrong."""
    label = "+".join(members)
    try:
        return run()
    except ConfigError as exc:
        return [HealthResult(False, f"{label}: {exc.problems[0]}")]
    except Exception as exc:  # noqa: BLE001 - a probe reports, it never crashes
        return [HealthResult(False, f"{label}: {type(exc).__name__}: {redact(str(exc))[:300]}")]


def _health_of(role: str) -> rolenames.HealthProbe | None:
    try:
        return rolenames.row(role).health
    except KeyError:
        return None


def _job(role: str) -> rolenames.Heartbeat:
    health = _health_of(role)
    if not isinstance(health, rolenames.Heartbeat):
        raise ValueError(f"{role}: its health is not a job heartbeat")
    return health


def _probe_members(members: Sequence[str], env: Mapping[str, str],
                   deadline: float) -> list[HealthResult]:
    results: list[HealthResult] = []
    jobs = [m for m in members if isinstance(_health_of(m), rolenames.Heartbeat)]
    if jobs:  # one query for every job of a group: one connection's time, not three
        results.extend(_guarded(jobs, lambda: job_heartbeats(jobs, env, deadline)))
    for member in members:
        if member not in jobs:
            results.extend(_guarded([member], lambda m=member: [_probe_other(m, env, deadline)]))
    return results


def _probe_other(role: str, env: Mapping[str, str], deadline: float) -> HealthResult:
    health = _health_of(role)
    if isinstance(health, rolenames.HttpGet):
        if health.port_var.startswith(PREFIX):  # ours: declared in config.Settings
            port = _setting(env, health.port_var[len(PREFIX):].lower())
        else:
            port = env.get(health.port_var, health.default_port)
        return http_ok(role, f"http://127.0.0.1:{port}{health.path}", time_left(deadline))
    if isinstance(health, rolenames.CeleryPing):
        return celery_ping(env, deadline)
    return HealthResult(False, f"{role}: no health probe for this role")


def _setting(env: Mapping[str, str], attr: str) -> str:
    """Our setting `attr` (a field of config.Settings) as env gives it, or its default.

    The entrypoint puts the value of every setting declared `exported` into the
    environment of the role it starts, where the probe reads it (running_env):
    config, whose import would cost every probe, is imported only when env lacks it
    (a probe outside a started container), for the declared default.
    """
    value = env.get(PREFIX + attr.upper(), "").strip()
    if value:
        return value
    from entrypoint import config

    return config.as_env(getattr(config.Settings(), attr))


def _url_setting(env: Mapping[str, str], name: str, schemes: Sequence[str]) -> str:
    """The URL in variable name; ConfigError naming it when it is missing or malformed."""
    from entrypoint.urls import problems_in_url

    url = env.get(name, "").strip()
    if not url:
        raise ConfigError(f"required setting: {name}")
    problems = problems_in_url(name, url, schemes)
    if problems:
        raise ConfigError(problems)
    return url


_HEARTBEAT_AGES = (
    "SELECT job_type, EXTRACT(EPOCH FROM (CURRENT_TIMESTAMP - max(latest_heartbeat))) "
    "FROM job WHERE job_type = ANY(%(job_types)s) AND hostname = %(host)s "
    "AND state = 'running' GROUP BY job_type")


def _heartbeat_ages(url: str, job_types: list[str], host: str,
                    timeout: float) -> dict[str, float]:
    """Seconds since each job type's freshest heartbeat, by the database's clock.

    PostgreSQL is queried with psycopg2 directly: importing SQLAlchemy alone would
    cost more than the rest of the probe (BENCHMARKS.md, import costs), on every
    probe of every task, every 30 s.
    """
    rows = postgres_query(postgres_params(url), _HEARTBEAT_AGES,
                          {"job_types": job_types, "host": host}, timeout)
    return {job_type: float(age) for job_type, age in rows if age is not None}


def job_heartbeats(roles: Sequence[str], env: Mapping[str, str],
                   deadline: float) -> list[HealthResult]:
    url = _url_setting(env, DB_URL, ("postgresql",))
    host = hostname()
    ages = _heartbeat_ages(url, [_job(role).job_type for role in roles], host,
                           time_left(deadline))
    results = []
    for role in roles:
        job = _job(role)
        job_type, threshold_var = job.job_type, job.threshold_var
        try:
            threshold = float(env.get(threshold_var) or DEFAULT_THRESHOLD)
        except ValueError:
            threshold = DEFAULT_THRESHOLD
        age = ages.get(job_type)
        if age is None:
            results.append(HealthResult(False, f"{role}: no running {job_type} on {host}"))
        elif age > threshold:
            results.append(HealthResult(False, f"{role}: last heartbeat {age:.0f}s ago "
                                               f"(threshold {threshold:g}s)"))
        else:
            results.append(HealthResult(True, f"{role}: heartbeat {age:.0f}s ago"))
    return results


def job_heartbeat(role: str, env: Mapping[str, str]) -> HealthResult:
    return job_heartbeats([role], env, time.monotonic() + TIMEOUT)[0]


def http_ok(role: str, url: str, timeout: float = TIMEOUT) -> HealthResult:
    # Imported here: urllib.request (http.client, email) is a fifth of a worker probe.
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - fixed http URL
            code = response.status
    except urllib.error.HTTPError as exc:
        code = exc.code
    except OSError as exc:
        return HealthResult(False, f"{role}: {url} does not answer: "
                                   f"{getattr(exc, 'reason', exc)}")
    if code >= 400:
        return HealthResult(False, f"{role}: {url} answered HTTP {code}")
    return HealthResult(True, f"{role}: {url} answered HTTP {code}")


def worker_name() -> str:
    # Celery's default node name, which `airflow celery worker` keeps.
    import socket

    return f"celery@{socket.gethostname()}"


def celery_ping(env: Mapping[str, str], deadline: float | None = None) -> HealthResult:
    """This worker's answer to a ping through the broker: its own pings' record, read.

    The worker pings itself every AIRFLOW_ECS_WORKER_PING_SECONDS and records the
    outcome (entrypoint.worker.liveness): reading it costs no broker connection
    and no kombu import. When the record cannot speak for the worker (none yet,
    pings turned off, a worker started without our Celery configuration, a
    corrupt record, its process gone), the probe pings the worker itself, and
    says why it did.
    """
    from entrypoint.worker import liveness

    verdict = liveness.judge(env, worker_name())
    if verdict.healthy is not None:
        return HealthResult(verdict.healthy, f"worker: {verdict.reason}")
    result = direct_ping(env, deadline)
    if verdict.reason:
        return HealthResult(result.healthy, f"{result.reason} ({verdict.reason})")
    return result


def direct_ping(env: Mapping[str, str], deadline: float | None = None) -> HealthResult:
    """Ping this worker only, through the broker, as `celery inspect ping -d` does.

    Celery's control API is a thin layer over kombu's pidbox mailbox (namespace
    "celery", fanout, JSON), so the probe talks to the mailbox through kombu
    directly: the same messages on the wire, without importing Celery's app
    machinery (a large part of the probe's CPU otherwise)."""
    from entrypoint.optional_imports import absent, kombu_without_plugins
    from entrypoint.urls import BROKER_SCHEMES, parse

    broker = _url_setting(env, BROKER_URL, BROKER_SCHEMES)
    name = worker_name()
    deadline = deadline if deadline is not None else time.monotonic() + TIMEOUT
    if not broker.startswith("unix"):
        # A resolver that never answers fails here, within the time left; kombu then
        # looks the name up again, answered by then.
        try:
            lookup(parse(broker).host, None, time_left(deadline))
        except (OSError, ValueError) as exc:
            return HealthResult(False, f"worker: {mask_url(broker)}: {redact(str(exc))}")
    timeout = time_left(deadline)
    # Every step within what is left; deadline_alarm bounds their sum.
    options = {"socket_timeout": timeout, "socket_connect_timeout": timeout, "max_retries": 1}
    # redis-py imports the OpenTelemetry SDK whenever it is installed (Airflow
    # installs it) to offer metrics this short-lived process never records; that
    # import was a quarter of the probe's CPU. kombu registers a YAML serializer
    # when PyYAML is installed, and looks for plugins; a JSON ping needs neither.
    # kombu loads redis-py when the connection is made, so the whole ping runs
    # inside the block.
    with absent("opentelemetry.sdk.metrics", "opentelemetry.metrics", "yaml", "msgpack"), \
            kombu_without_plugins():
        from kombu.connection import Connection
        from kombu.pidbox import Mailbox

        started = time.monotonic()
        # kombu's constructors carry no annotations.
        with Connection(broker, connect_timeout=timeout,  # type: ignore[no-untyped-call]
                        transport_options=options) as conn:
            # What Celery's app.control.ping(destination=[name]) sends and collects,
            # through kombu's documented Mailbox.call: the same messages.
            try:
                mailbox = Mailbox("celery", type="fanout",  # type: ignore[no-untyped-call]
                                  accept=["json"])(conn)
                replies = mailbox.call([name], "ping", timeout=timeout) or []
            except (TypeError, AttributeError) as exc:
                # kombu's own code failed, not the broker nor the worker (a changed
                # kombu): the probe's machinery is broken, which must not report a
                # worker unhealthy and have ECS replace it. Exit 0, health unknown.
                return HealthResult(True, f"worker: probe could not check {name}: kombu API "
                                          f"changed ({type(exc).__name__}: "
                                          f"{redact(str(exc))[:200]}); health unknown")
    for reply in replies:
        if name in reply:
            return HealthResult(True, f"worker: {name} answered a ping in "
                                      f"{time.monotonic() - started:.2f}s")
    return HealthResult(False, f"worker: {name} did not answer a ping through "
                               f"{mask_url(broker)} within {timeout:.1f}s")


def _dag_sync(env: Mapping[str, str], role: str = "") -> HealthResult | None:
    if _setting(env, "dags_source") == "image":
        return None  # DAGs baked into the image: nothing to report, nothing to import
    from entrypoint import config
    from entrypoint.dagsync import publish

    try:
        settings = config.load(env)
    except ConfigError as exc:
        return HealthResult(False, f"configuration: {exc.problems[0]}")
    if settings.dags_source == "image":
        return None
    if settings.dags_versioned and "dag-processor" not in role.split("+"):
        return None  # versioned: only the dag-processor syncs; a worker fetches per task
    status, problem = publish.load_status(settings)
    if problem:
        return HealthResult(False, f"DAG sync status unknown: {problem}")
    if status is None or not status.last_success:
        return HealthResult(False, "DAGs not synced yet")
    age = time.time() - status.last_success
    revision = (status.revision or "?")[:12]
    if status.consecutive_failures:
        return HealthResult(True, f"dags stale: last good sync {age:.0f}s ago at {revision} "
                                  f"({status.consecutive_failures} failures: "
                                  f"{(status.last_error or '')[:120]})")
    return HealthResult(True, f"dags {revision} synced {age:.0f}s ago")
