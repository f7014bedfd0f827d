"""The worker pings itself through the broker; its health probe reads the outcome.

ECS runs `airflow-ecs health worker` every 30 s in every worker container. A
probe that pings the worker itself is a new interpreter importing kombu and
redis-py each time (BENCHMARKS.md, health probe cost). The long-lived worker
already has them loaded, so a thread in its main process sends the same ping
(what `app.control.ping` sends, to its own node name, through the broker,
answered by the worker's consumer like any remote ping) every AIRFLOW_ECS_WORKER_PING_SECONDS,
and after each one replaces a small JSON record (`record_path`). The probe
(`judge`) only reads that record: a live worker process whose own pings
went through the broker and back recently is healthy, with the same meaning
as before: this host's worker answers a ping that went through the broker.

The probe pings the worker directly, as before, whenever the record cannot
speak for it: absent (a worker started without this Celery configuration,
or not ready yet, or the pings turned off), unreadable or corrupt, left by a
process that is gone, or written before the first answer.

Fork safety: the prefork pool forks from the main process, at start and again
whenever a pool process is replaced, while this thread may be in the middle
of a ping. The child inherits only this thread's memory, never runs it, and
never touches its connection (the socket is closed with the child). The locks
the thread takes (the import lock, logging's, the allocator's) are reset in
the child by CPython and glibc at fork; kombu's and redis-py's locks belong
to this thread's own connection, which no child uses.

Import-light: the probe imports this module, so only the standard library is
imported at the top; Celery's objects come in through `start_in_worker`'s
arguments, and the configuration module is imported inside it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from entrypoint.log import mask, mask_url, redact
from entrypoint.running_env import scratch_dir
from entrypoint.worker.broker import bounded_connection

logger = logging.getLogger("airflow-ecs.liveness")

RECORD_NAME = "worker-liveness.json"
# One ping's bound: the connection (connect, AUTH), sending it and collecting the answer
# each wait at most this long. The probe's own direct ping has the same (health.TIMEOUT).
PING_TIMEOUT = 5.0
# A verdict of "unhealthy" needs this many missed intervals (plus one ping's time): one
# ping lost to a broker's restart or a long pause of the main process must not make ECS
# replace a worker, and at the default 10 s the limit (35 s) stays well under the
# 90 s ECS waits (3 failed checks, 30 s apart) before replacing it.
STALE_INTERVALS = 3
# While pings fail, the next one comes after twice the interval: half the reconnection
# attempts against a broker that is down, yet the recovery is seen one interval later
# at most, and the record is still rewritten well within the staleness limit.
BACKOFF_FACTOR = 2
# A failure that keeps repeating the same error is logged again only this often, and one
# with another error (a refused connection, then a timeout...) at most this often.
LOG_EVERY = 300.0
LOG_CHANGE_EVERY = 60.0


def record_path(env: Mapping[str, str]) -> str:
    """Where the worker writes its record and the probe reads it.

    The scratch directory (`running_env.scratch_dir`): /tmp is a writable volume
    in every task definition (the root filesystem is read-only), and it is the
    container's own, so the worker and the probe ECS runs in it share it and no
    other container sees it. The DAG sync's state dir would do too, but it
    exists only when DAGs are synced.
    """
    return os.path.join(scratch_dir(env), RECORD_NAME)


def stale_after(interval: float, timeout: float = PING_TIMEOUT) -> float:
    """Seconds without an answered ping after which the worker is unhealthy."""
    return STALE_INTERVALS * interval + timeout


def process_start(pid: int) -> str | None:
    """The start time of process pid (clock ticks since boot, /proc/PID/stat's 22nd field),
    which tells a process from a later one given the same pid; None off Linux."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            # The name (2nd field) may hold spaces and parentheses: count after its end.
            fields = stat.read().rpartition(b")")[2].split()
    except OSError:
        return None
    return fields[19].decode() if len(fields) > 19 else None


# --- the worker's side --------------------------------------------------------------------
def write_record(path: str, record: Mapping[str, Any]) -> None:
    """Replace the record at path at once: readers see the old one or the new one whole.

    Mode 0600 in a 0700 directory: the probe runs as the worker's user. A record
    that did not survive a crash belongs to a process that is gone.
    """
    from entrypoint.files import replace_private

    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    replace_private(path, json.dumps(record))


class NoAnswer(Exception):
    """The ping went out, but the node did not answer in time."""


def _password(url: str) -> str | None:
    from entrypoint.urls import parse

    try:
        return parse(url).password
    except ValueError:
        return None


class Liveness:
    """Pings the node once per `step()` and records the outcome at `path`.

    `ping()` sends one ping and returns when the node answered; it raises
    otherwise. Never raises itself: failures are logged, rate-limited, and
    recorded for the probe.
    """

    def __init__(self, ping: Callable[[], None], path: str, node: str, broker: str,
                 interval: float, timeout: float = PING_TIMEOUT,
                 clock: Callable[[], float] = time.time):
        self.ping = ping
        self.path = path
        self.node = node
        self.broker = mask_url(broker)
        # An error may show the password alone (a failed AUTH): redact() masks it then.
        mask(_password(broker))
        self.interval = interval
        self.timeout = timeout
        self.clock = clock
        self.started = clock()
        self.pid = os.getpid()
        self.pid_start = process_start(self.pid)
        self.last_attempt: float | None = None
        self.last_success: float | None = None
        self.last_error: str | None = None
        self.failures = 0  # in a row
        self.pings = 0
        self.answered = 0
        self.logged: dict[str, tuple[str, float]] = {}  # what: (message, monotonic time)

    def record(self) -> dict[str, Any]:
        return {"pid": self.pid, "pid_start": self.pid_start, "node": self.node,
                "broker": self.broker, "interval": self.interval, "timeout": self.timeout,
                "started": self.started, "last_attempt": self.last_attempt,
                "last_success": self.last_success, "last_error": self.last_error,
                "failures": self.failures, "pings": self.pings, "answered": self.answered,
                "thread_cpu": time.thread_time()}

    def step(self) -> float:
        """One ping and its record; the seconds to wait before the next one."""
        self.pings += 1
        self.last_attempt = self.clock()
        try:
            self.ping()
        except Exception as exc:  # noqa: BLE001 - any failure is the ping's outcome
            self.failures += 1
            self.last_error = redact(f"{type(exc).__name__}: {exc}")[:300]
            self._log("ping", f"{self.node} did not answer its own ping through "
                              f"{self.broker}: {self.last_error}")
        else:
            if self.failures:
                logger.info("worker liveness: %s answers its own pings again, after %d "
                            "failed", self.node, self.failures)
                self.logged.pop("ping", None)
            self.failures = 0
            self.last_error = None
            self.answered += 1
            self.last_success = self.clock()
        try:
            write_record(self.path, self.record())
        except (OSError, TypeError, ValueError) as exc:
            # An older record left in place would soon read as a stuck worker: without
            # one, the probe pings the worker itself.
            with contextlib.suppress(OSError):
                os.unlink(self.path)
            self._log("record", f"cannot write {self.path} (the health probe then pings "
                                f"the worker itself; {self.path}'s folder must be writable): "
                                f"{type(exc).__name__}: {exc}")
        else:
            self.logged.pop("record", None)
        return self.interval * (BACKOFF_FACTOR if self.failures else 1)

    def _log(self, what: str, message: str) -> None:
        """Log the first failure; then one with another message every LOG_CHANGE_EVERY, the
        same one every LOG_EVERY, at most."""
        now = time.monotonic()
        last = self.logged.get(what)
        if last is not None and now - last[1] < (LOG_EVERY if last[0] == message
                                                 else LOG_CHANGE_EVERY):
            return
        self.logged[what] = (message, now)
        logger.warning("worker liveness: %s%s", message,
                       f" ({self.failures} in a row)" if what == "ping" and self.failures > 1
                       else "")

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                delay = self.step()
            except Exception:  # the worker must never die of this thread
                logger.exception("worker liveness: unexpected error; carrying on")
                delay = self.interval
            if stop.wait(delay):
                break


class CeleryPing:
    """A Celery ping to one node, through the broker, on a connection of its own.

    The same messages as `app.control.ping(destination=[node])` (Celery's control
    API is a thin layer over kombu's pidbox Mailbox), sent through kombu's
    documented `Mailbox.call` on this thread's own connection: Celery's control
    would publish through the app's shared producer pool, whose sockets have no
    timeout, where this connection waits at most `timeout` for each step. The
    connection is kept between pings and dropped after a failure, so the next
    ping reconnects.
    """

    def __init__(self, app: Any, node: str, timeout: float = PING_TIMEOUT):
        from kombu.pidbox import Mailbox

        self.app = app
        self.node = node
        self.timeout = timeout
        # The exchange the worker's own mailbox listens on (Celery's control_exchange).
        self.mailbox = Mailbox(app.conf.control_exchange, type="fanout",  # type: ignore[no-untyped-call]
                               accept=["json"])
        self.connection: Any = None

    def __call__(self) -> None:
        if self.connection is None:
            self.connection = bounded_connection(self.app, self.timeout)
        try:
            replies = self.mailbox(self.connection).call([self.node], "ping",
                                                         timeout=self.timeout) or []
        except BaseException:
            self.close()
            raise
        if not any(self.node in reply for reply in replies):
            raise NoAnswer(f"no answer within {self.timeout:g}s")

    def close(self) -> None:
        connection, self.connection = self.connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                connection.release()


def start_in_worker(environ: Mapping[str, str], app: Any,
                    node: str) -> threading.Event | None:
    """Start the pings in a Celery worker's main process (from `worker_ready`).

    Returns the event that stops them, or None when they are turned off.
    """
    from entrypoint import config

    # A worker started some other way with a bad value still pings.
    interval, problem = config.setting_or_default(environ, "worker_ping_seconds")
    if problem is not None:
        logger.error("worker liveness: %s; pinging every %d s", "; ".join(problem.problems),
                     interval)
    path = record_path(environ)
    with contextlib.suppress(OSError):
        os.unlink(path)  # a record of an earlier worker in this container speaks for none
    if not interval:
        return None
    ping = CeleryPing(app, node)
    liveness = Liveness(ping, path, node, str(app.conf.broker_url or ""), float(interval))
    stop = threading.Event()

    def run() -> None:
        try:
            liveness.run(stop)
        finally:
            ping.close()

    threading.Thread(target=run, name="worker-liveness", daemon=True).start()
    logger.info("worker liveness: %s pings itself every %d s; the health probe reads %s",
                node, interval, path)
    return stop


# --- the probe's side ---------------------------------------------------------------------
class Verdict:
    """healthy None: the record cannot speak for the worker; `reason` says why ("" when
    there is none), and the probe pings the worker itself. (A plain class: creating a
    NamedTuple class costs every probe at import.)"""

    __slots__ = ("healthy", "reason")

    def __init__(self, healthy: bool | None, reason: str) -> None:
        self.healthy = healthy
        self.reason = reason

    def __repr__(self) -> str:
        return f"Verdict({self.healthy!r}, {self.reason!r})"


def _alive(pid: int, pid_start: object) -> str | None:
    """Why pid is not the worker that wrote the record, or None when it is."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return f"its worker (pid {pid}) is not running"
    except PermissionError:
        pass  # another user's process: alive, and not ours
    if pid_start is not None and process_start(pid) not in (None, pid_start):
        return f"its worker (pid {pid}) is gone; another process has that pid now"
    return None


def _number(record: Mapping[str, Any], key: str, optional: bool = False) -> float | None:
    value = record.get(key)
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{key} is {value!r}, not a number")
    return float(value)


def judge(env: Mapping[str, str], node: str, now: float | None = None) -> Verdict:
    """The health of `node` as its own pings recorded it at record_path(env)."""
    path = record_path(env)
    try:
        with open(path, "rb") as source:
            text = source.read(65536)
    except FileNotFoundError:
        return Verdict(None, "")
    except OSError as exc:
        return Verdict(None, f"liveness record {path} unreadable: {exc.strerror or exc}")
    try:
        record = json.loads(text)
        if not isinstance(record, dict):
            raise ValueError("not a JSON object")
        pid = int(_number(record, "pid") or 0)
        if pid <= 0:
            raise ValueError(f"pid is {pid}")
        interval = _number(record, "interval") or 0.0
        timeout = _number(record, "timeout") or 0.0
        started = _number(record, "started") or 0.0
        last_attempt = _number(record, "last_attempt", optional=True)
        last_success = _number(record, "last_success", optional=True)
        recorded_node = str(record.get("node"))
    except ValueError as exc:  # json's errors too
        return Verdict(None, f"liveness record {path} is corrupt: {redact(str(exc))[:120]}")
    if recorded_node != node:
        return Verdict(None, f"liveness record {path} is {recorded_node}'s, not {node}'s")
    gone = _alive(pid, record.get("pid_start"))
    if gone:
        return Verdict(None, f"liveness record {path} ignored: {gone}")
    now = time.time() if now is None else now
    limit = stale_after(interval, timeout)
    since = last_success if last_success is not None else started
    age = max(now - since, 0.0)
    broker = mask_url(str(record.get("broker") or "the broker"))
    error = redact(str(record.get("last_error") or ""))[:300]
    if age > limit:
        if last_success is None:
            why = (f"{node} has not answered its own pings through {broker} since it "
                   f"started {age:.0f}s ago (limit {limit:g}s)")
        else:
            why = (f"no answer to {node}'s own pings through {broker} for {age:.0f}s "
                   f"(limit {limit:g}s)")
        if last_attempt is None or now - last_attempt > limit:
            attempt = "never" if last_attempt is None else f"{now - last_attempt:.0f}s ago"
            why += (f"; its last ping: {attempt} (its main process is stopped or stuck)")
        elif error:
            why += f": {error}"
        return Verdict(False, why)
    if last_success is None:
        return Verdict(None, f"{node} has not answered its own pings yet")
    reason = f"{node} answered its own ping through the broker {age:.0f}s ago"
    if error:
        reason += f" (the last one failed: {error})"
    return Verdict(True, reason)
