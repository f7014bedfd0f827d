"""Shared-key fingerprints in Redis: mismatches refuse to start, naming the key only."""

import pytest
import redis

from entrypoint import config, fingerprints
from entrypoint.checks import API_SECRET_KEY, FERNET_KEY, JWT_SECRET
from entrypoint.errors import KeyMismatchError

FERNET = "Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6cXV4Zm9vYmFyYmE="
JWT = "j" * 64
API = "api-secret-key-value"


@pytest.fixture
def broker(redis_server):
    url = redis_server.url(db=3)
    client = redis.Redis.from_url(url)
    client.delete(fingerprints.REDIS_KEY)
    yield url
    client.delete(fingerprints.REDIS_KEY)
    client.close()


def env(broker, **overrides):
    base = {"AIRFLOW__CELERY__BROKER_URL": broker, FERNET_KEY: FERNET, JWT_SECRET: JWT,
            API_SECRET_KEY: API}
    base.update(overrides)
    return base


def test_first_role_defines_and_others_match(broker):
    settings = config.load({})
    fingerprints.verify_and_publish("scheduler", settings, env(broker))
    fingerprints.verify_and_publish("worker", settings, env(broker))
    stored = redis.Redis.from_url(broker).hgetall(fingerprints.REDIS_KEY)
    assert {k.decode() for k in stored} == {FERNET_KEY, JWT_SECRET, API_SECRET_KEY}
    for value in stored.values():
        assert value.decode() not in (FERNET, JWT, API)
        assert len(value) == 16


def test_differing_key_is_named_and_refused(broker):
    settings = config.load({})
    fingerprints.verify_and_publish("scheduler", settings, env(broker))
    other_jwt = "k" * 64
    with pytest.raises(KeyMismatchError) as err:
        fingerprints.verify_and_publish("webserver", settings, env(broker, **{JWT_SECRET:
                                                                             other_jwt}))
    message = str(err.value)
    assert JWT_SECRET in message
    assert FERNET_KEY not in message
    assert other_jwt not in message and JWT not in message


def test_migrate_role_republishes_for_rotation(broker):
    settings = config.load({})
    fingerprints.verify_and_publish("scheduler", settings, env(broker))
    rotated = env(broker, **{FERNET_KEY: "YmFyYmF6cXV4Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6cXU="})
    fingerprints.verify_and_publish("migrate", settings, rotated)
    fingerprints.verify_and_publish("worker", settings, rotated)
    with pytest.raises(KeyMismatchError, match=FERNET_KEY):
        fingerprints.verify_and_publish("worker", settings, env(broker))


def test_switched_off(broker):
    settings = config.load({"AIRFLOW_ECS_CHECK_FINGERPRINTS": "false"})
    fingerprints.verify_and_publish("scheduler", config.load({}), env(broker))
    fingerprints.verify_and_publish("worker", settings, env(broker, **{API_SECRET_KEY: "x"}))
