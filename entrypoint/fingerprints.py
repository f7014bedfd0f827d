"""Shared-key fingerprints in Redis: a role whose keys differ from the deployment's
refuses to start.

Airflow's roles must share the Fernet key, the JWT secret and the API secret
key. When one differs, Airflow fails late and opaquely (tasks fail with
"Invalid auth token", Variables silently read as their default, logs answer
403). Every role publishes a short fingerprint of each key in the broker's
Redis and compares it with what is there.

The authority is the one-off `migrate` role (run before every rollout) or a
role started with AIRFLOW_ECS_DB_MIGRATE=true: it overwrites the stored
fingerprints, so an intended key rotation takes effect with the rollout. Any
other role adds fingerprints that are missing and compares the rest.

A fingerprint is the first 16 hex digits of SHA-256 over a fixed label, the
key's name and its value: it identifies a key without revealing it (the keys
are high-entropy random strings).
"""

from __future__ import annotations

from collections.abc import Mapping

from entrypoint.airflow_names import BROKER_URL, SHARED_KEYS
from entrypoint.config import Settings
from entrypoint.errors import KeyMismatchError, WaitTimeout
from entrypoint.log import log, mask_url, redact

REDIS_KEY = "airflow-ecs:key-fingerprints"


def fingerprint(name: str, value: str) -> str:
    import hashlib  # here: OpenSSL's load, every start-up (BENCHMARKS.md, import costs)

    digest = hashlib.sha256(b"airflow-ecs key fingerprint\0" + name.encode() + b"\0"
                            + value.encode())
    return digest.hexdigest()[:16]


def ours(env: Mapping[str, str]) -> dict[str, str]:
    return {name: fingerprint(name, env[name]) for name in SHARED_KEYS if env.get(name)}


def is_authority(role: str, settings: Settings) -> bool:
    return role == "migrate" or settings.db_migrate


def verify_and_publish(role: str, settings: Settings, env: Mapping[str, str]) -> None:
    """Compare this role's key fingerprints with the deployment's; raise KeyMismatchError."""
    broker = env.get(BROKER_URL, "")
    if role == "exec" or not settings.check_fingerprints or not broker.startswith("redis"):
        return
    mine = ours(env)
    if not mine:
        return
    import redis

    client = redis.Redis.from_url(broker, socket_timeout=5, socket_connect_timeout=5)
    try:
        if is_authority(role, settings):
            # redis types the mapping with invariant key and value unions; str fits both.
            client.hset(REDIS_KEY, mapping=mine)  # type: ignore[arg-type]
            log.info("published the shared keys' fingerprints (%s)", ", ".join(sorted(mine)))
            return
        with client.pipeline(transaction=True) as pipe:
            for name, value in mine.items():
                pipe.hsetnx(REDIS_KEY, name, value)
            pipe.hgetall(REDIS_KEY)
            stored = {k.decode(): v.decode() for k, v in pipe.execute()[-1].items()}
    except redis.RedisError as exc:
        raise WaitTimeout(f"could not read the key fingerprints from Redis at "
                          f"{mask_url(broker)}: {type(exc).__name__}: {redact(str(exc))}") from None
    finally:
        client.close()
    differing = sorted(name for name, value in mine.items() if stored.get(name) != value)
    if differing:
        raise KeyMismatchError(
            "this task's " + ", ".join(differing) + " differ(s) from the value the rest of the "
            "deployment runs with (compared by fingerprint in Redis key " + REDIS_KEY + "). "
            "Give every role the same value. For an intended rotation, run the migrate role "
            "(or start a role with AIRFLOW_ECS_DB_MIGRATE=true) with the new keys first: it "
            "republishes the fingerprints.")
    log.info("shared keys match the deployment's (%s)", ", ".join(sorted(mine)))
