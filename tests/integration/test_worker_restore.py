"""Messages a worker held when Redis went away go back on their queue once Redis answers
(entrypoint.worker.restore), through kombu's Redis transport on a real Redis that keeps
its data across the restart, as a restarted or failed-over Redis does."""

from __future__ import annotations

import contextlib
import time

import kombu
import pytest
import redis

from entrypoint.worker import restore
from tests.support.servers import start_redis

QUEUE = "restore-probe"


@pytest.fixture
def server():
    redis_server = start_redis(password="restore-pw", persistent=True)
    yield redis_server
    redis_server.close()


def held_by_a_consumer(url: str, count: int):
    """A kombu connection whose consumer received `count` messages and acknowledged none."""
    connection = kombu.Connection(url, transport_options={"socket_timeout": 2,
                                                          "socket_connect_timeout": 2})
    channel = connection.channel()
    queue = kombu.Queue(QUEUE, kombu.Exchange(QUEUE), routing_key=QUEUE)
    producer = kombu.Producer(channel)
    for n in range(count):
        producer.publish({"n": n}, exchange=queue.exchange, routing_key=QUEUE, declare=[queue])
    received = []
    consumer = kombu.Consumer(channel, [queue], accept=["json"],
                              callbacks=[lambda body, message: received.append(message)])
    consumer.consume()
    deadline = time.monotonic() + 10
    while len(received) < count:
        assert time.monotonic() < deadline, f"{len(received)} of {count} received"
        connection.drain_events(timeout=2)
    return connection, channel


def lose_the_broker_while_putting_back(server, connection) -> None:
    server.stop()  # Redis saves its data, the unacknowledged messages with it
    # What Celery's consumer does once the connection broke; it ignores the failure too.
    with contextlib.suppress(Exception):
        connection.collect()
    time.sleep(2.5 * restore.RETRY_SECONDS)  # put-back attempts fail meanwhile
    server.start()


def counts(server) -> tuple[int, int]:
    client = redis.Redis.from_url(server.url())
    try:
        return client.llen(QUEUE), client.hlen("unacked")
    finally:
        client.close()


def wait_for_the_queue(server, expected: int, timeout: float = 15) -> tuple[int, int]:
    deadline = time.monotonic() + timeout
    while (found := counts(server))[0] < expected and time.monotonic() < deadline:
        time.sleep(0.2)
    return found


def test_messages_held_when_redis_went_away_go_back_on_their_queue(server):
    assert restore.install()
    connection, _ = held_by_a_consumer(server.url(), 3)
    assert counts(server) == (0, 3)
    lose_the_broker_while_putting_back(server, connection)
    # kombu alone leaves (0, 3) here until the visibility timeout.
    assert wait_for_the_queue(server, 3) == (3, 0)


def test_kombu_alone_leaves_them_unacknowledged(server, monkeypatch):
    from kombu.transport.redis import QoS

    assert restore.install()
    monkeypatch.setattr(QoS, "restore_unacked", QoS.restore_unacked.__wrapped__)
    connection, _ = held_by_a_consumer(server.url(), 3)
    lose_the_broker_while_putting_back(server, connection)
    time.sleep(3 * restore.RETRY_SECONDS)
    assert counts(server) == (0, 3)


def test_a_message_delivered_again_since_the_break_is_left_to_its_new_holder(server):
    connection, _ = held_by_a_consumer(server.url(), 2)
    lost_at = time.time()
    client = redis.Redis.from_url(server.url())
    tags = sorted(tag.decode() for tag in client.hkeys("unacked"))
    # Delivered again after the break (to another worker): its unacked entry is stamped anew.
    client.zadd("unacked_index", {tags[0]: lost_at + 1})
    client.close()
    assert restore.attempt(restore.Held(tags, lost_at, connection))
    assert counts(server) == (1, 1)
    connection.release()  # while Redis answers: it puts back the other, as a worker's stop does
