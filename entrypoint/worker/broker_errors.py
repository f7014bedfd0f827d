"""What an unreachable Redis raises inside Airflow's processes, scheduler and worker alike.

The socket's own errors, redis-py's connection and timeout errors (Redis and Valkey, as
broker and result backend; public classes of redis-py), and kombu's OperationalError,
which a publish or a kombu connection ends with once its own retries are spent.
"""

from __future__ import annotations


def unreachable() -> tuple[type[BaseException], ...]:
    errors: tuple[type[BaseException], ...] = (OSError,)
    try:
        from kombu import exceptions as kombu_errors
        from redis import exceptions as redis_errors
    except ImportError:  # without redis-py there is no Redis broker or result backend
        return errors
    return (*errors, redis_errors.ConnectionError, redis_errors.TimeoutError,
            kombu_errors.OperationalError)
