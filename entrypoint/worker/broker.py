"""Redis as Airflow's processes meet it, scheduler and worker alike: what it raises when
unreachable, and a connection to it whose every step is bounded in time."""

from __future__ import annotations

from typing import Any


def unreachable() -> tuple[type[BaseException], ...]:
    """The socket's own errors, redis-py's connection and timeout errors (Redis and Valkey,
    as broker and result backend; public classes of redis-py), and kombu's
    OperationalError, which a publish or a kombu connection ends with once its own
    retries are spent."""
    errors: tuple[type[BaseException], ...] = (OSError,)
    try:
        from kombu import exceptions as kombu_errors
        from redis import exceptions as redis_errors
    except ImportError:  # without redis-py there is no Redis broker or result backend
        return errors
    return (*errors, redis_errors.ConnectionError, redis_errors.TimeoutError,
            kombu_errors.OperationalError)


def bounded_connection(app: Any, timeout: float) -> Any:
    """A new connection to the Celery app's broker, each step within `timeout`, retried
    once. Where the app's shared producer pool has sockets without a timeout; Celery adds
    the app's own broker_transport_options under these."""
    return app.connection_for_write(
        connect_timeout=timeout,
        transport_options={"socket_timeout": timeout, "socket_connect_timeout": timeout,
                           "max_retries": 1})
