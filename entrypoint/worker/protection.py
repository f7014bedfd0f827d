"""ECS task scale-in protection for Celery workers that hold running tasks.

A worker marks its own ECS task protected through the ECS agent's endpoint
(`PUT $ECS_AGENT_URI/task-protection/v1/state`) while it runs at least one
task, renews the protection before it expires, and clears it once it has been
idle for a grace period. A protected task is skipped by service scale-in and
by deployments, so a long task is not killed halfway.

It adds nothing to a task's hot path: a thread in the worker's main process
looks at the number of active requests Celery already keeps once a second,
and calls the agent only when the decision changes or a renewal is due. The
endpoint being slow, failing or down is logged and retried with backoff; it
never raises into the worker.

The agent client is hand-written on urllib: the endpoint is two plain JSON
calls on a link-local address, and pulling in an HTTP library for them would
add a dependency to every worker for nothing.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from entrypoint import config
from entrypoint.errors import ConfigError

logger = logging.getLogger("airflow-ecs.protection")

PATH = "/task-protection/v1/state"
# ECS's limit on ExpiresInMinutes, the range of AIRFLOW_ECS_PROTECTION_MINUTES.
MAX_MINUTES = int(config.declared("protection_minutes").high or 0)
_SETTINGS = ("protection", "protection_minutes", "protection_idle_seconds")
_DEFAULTS = config.Settings()


class AgentError(Exception):
    pass


@dataclass(frozen=True)
class State:
    enabled: bool
    expires_at: float | None  # epoch seconds


class AgentClient:
    def __init__(self, agent_uri: str, timeout: float = 3.0):
        if not agent_uri.startswith(("http://", "https://")):
            raise ValueError(f"ECS_AGENT_URI must be an http(s) URL, got {agent_uri!r}")
        self.url = agent_uri.rstrip("/") + PATH
        self.timeout = timeout

    def _call(self, method: str, body: dict[str, Any] | None = None) -> State:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url, data=data, method=method,  # noqa: S310
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                payload = json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            detail = exc.read(500).decode(errors="replace")
            raise AgentError(f"HTTP {exc.code} from the ECS agent: {detail}") from None
        except (OSError, ValueError) as exc:
            raise AgentError(f"{type(exc).__name__}: {exc}") from None
        if "failure" in payload or "error" in payload:
            raise AgentError(f"the ECS agent refused: {payload.get('failure') or payload['error']}")
        protection = payload.get("protection") or {}
        expires = protection.get("ExpirationDate")
        return State(
            enabled=bool(protection.get("ProtectionEnabled")),
            expires_at=_parse_date(expires) if expires else None,
        )

    def set(self, enabled: bool, minutes: int) -> State:
        body: dict[str, Any] = {"ProtectionEnabled": enabled}
        if enabled:
            body["ExpiresInMinutes"] = minutes
        return self._call("PUT", body)

    def get(self) -> State:
        return self._call("GET")


def _parse_date(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


class ProtectionManager:
    """Decides, once per `step()`, whether the task must be protected, and tells the agent."""

    def __init__(self, agent: AgentClient, active_count: Callable[[], int],
                 minutes: int = _DEFAULTS.protection_minutes,
                 idle_grace: float = _DEFAULTS.protection_idle_seconds,
                 clock: Callable[[], float] = time.time):
        if not 1 <= minutes <= MAX_MINUTES:
            raise ValueError(f"protection minutes must be from 1 to {MAX_MINUTES}")
        self.agent = agent
        self.active_count = active_count
        self.minutes = minutes
        self.idle_grace = idle_grace
        self.clock = clock
        self.protected = False
        self.granted_at = 0.0
        self.expires_at: float | None = None
        self.idle_since: float | None = None
        self.failures = 0
        self.retry_at = 0.0
        self.calls = 0

    def _renewal_due(self, now: float) -> bool:
        if self.expires_at is None:
            return False
        # Renew once half the granted time has passed (at most 5 minutes before
        # expiry), judged by the expiry the agent returned, not by our clock alone.
        margin = min((self.expires_at - self.granted_at) / 2, 300.0)
        return now >= self.expires_at - margin

    def step(self) -> None:
        now = self.clock()
        if now < self.retry_at:
            return
        busy = self.active_count() > 0
        if busy:
            self.idle_since = None
            if not self.protected or self._renewal_due(now):
                self._set(True, now)
        elif self.protected:
            if self.idle_since is None:
                self.idle_since = now
            if now - self.idle_since >= self.idle_grace:
                self._set(False, now)

    def _set(self, enabled: bool, now: float) -> None:
        self.calls += 1
        try:
            state = self.agent.set(enabled, self.minutes)
        except AgentError as exc:
            self.failures += 1
            backoff = min(2.0 ** self.failures, 60.0)
            self.retry_at = now + backoff
            logger.warning("scale-in protection: could not %s it (attempt %d, retry in %.0fs): %s",
                           "set" if enabled else "clear", self.failures, backoff, exc)
            return
        if self.failures:
            logger.info("scale-in protection: the ECS agent answers again")
        self.failures = 0
        self.retry_at = 0.0
        if enabled and not self.protected:
            logger.info("scale-in protection on (running tasks; expires in %d min)", self.minutes)
        elif not enabled:
            logger.info("scale-in protection off (idle for %.0fs)", self.idle_grace)
        self.protected = enabled
        self.granted_at = now
        self.expires_at = state.expires_at if enabled else None
        if enabled and self.expires_at is None:
            self.expires_at = now + self.minutes * 60

    def run(self, stop: threading.Event, interval: float = 1.0) -> None:
        while not stop.wait(interval):
            try:
                self.step()
            except Exception:  # the worker must never die of this thread
                logger.exception("scale-in protection: unexpected error; carrying on")


def start_in_worker(environ: Mapping[str, str],
                    active_count: Callable[[], int]) -> threading.Event | None:
    """Start the protection thread in a Celery worker's main process, if on ECS."""
    agent_uri = environ.get("ECS_AGENT_URI", "")
    if not agent_uri:
        return None
    try:
        settings = config.load(environ, only=_SETTINGS)
    except ConfigError as exc:
        logger.error("scale-in protection not started: %s", "; ".join(exc.problems))
        return None
    if not settings.protection:
        return None
    manager = ProtectionManager(AgentClient(agent_uri), active_count,
                                settings.protection_minutes,
                                float(settings.protection_idle_seconds))
    stop = threading.Event()
    thread = threading.Thread(target=manager.run, args=(stop,), name="ecs-protection",
                              daemon=True)
    thread.start()
    logger.info("scale-in protection enabled through the ECS agent")
    return stop
