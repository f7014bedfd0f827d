"""Messages a worker held when Redis went away, put back on their queue once it answers.

With Redis as the broker, a message a worker has received waits in Redis's
`unacked` set until the worker acknowledges it (Airflow's tasks acknowledge
late, when they end). When the broker connection breaks, kombu puts the
worker's unacknowledged messages back on their queue through that connection.
When Redis itself went away (restarted, failed over, down for seconds) that
fails, and kombu leaves them in `unacked` until the visibility timeout
(AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT, 6 h here). A
message whose task had not started yet then waits for Airflow's queued timeout
([scheduler] task_queued_timeout, 300 s here, checked every 120 s): its DAG run
stalls for 5 to 7 minutes. Seen in the end-to-end broker scenario: one task of
a fan-out, received 44 ms before Redis stopped, left in `unacked`. (Celery's
issue 1307 asks for this and was closed without it.)

So when kombu's put-back fails, the delivery tags it meant to put back are
kept, and a thread puts them back once Redis answers, with kombu's own
`restore_by_tag`, trying every RETRY_SECONDS for at most GIVE_UP_SECONDS
(kombu's visibility-timeout sweep still covers what is left then). A tag is
put back only while its message is still in `unacked` from before the break:
one delivered again since, to any worker, is left alone. A message whose task
was already running is put back too, as kombu meant to: its second delivery
finds the task running and Airflow's Celery task drops it ("Task already
running elsewhere").

Hand-written because neither kombu nor Celery retries this put-back.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from entrypoint import private_apis
from entrypoint.worker import method_patch
from entrypoint.worker.broker import unreachable

log = logging.getLogger("airflow-ecs.restore")

RETRY_SECONDS = 1.0
TIMEOUT_SECONDS = 5.0  # each Redis call of a put-back attempt
GIVE_UP_SECONDS = 3600.0


@dataclass
class Held:
    """Delivery tags kombu could not put back, when, and the connection they came by."""

    tags: list[str]
    lost_at: float  # Redis's unacked index scores deliveries by the same clock
    connection: Any  # the kombu Connection whose put-back failed


_held: list[Held] = []
_lock = threading.Lock()
_thread: threading.Thread | None = None


def install() -> bool:
    """In a worker's main process: keep what a failed put-back leaves; True when in place."""
    return method_patch.replace(private_apis.KOMBU_REDIS_QOS, private_apis.KOMBU_RESTORE_UNACKED,
                                _keeping)


def _keeping(original: Callable[..., Any]) -> Callable[..., Any]:
    def restore_unacked(self: Any, client: Any = None) -> Any:
        tags = [str(tag) for tag in self._delivered]
        try:
            return original(self, client)
        except Exception as error:
            if tags:
                hold(Held(tags, time.time(), self.channel.connection.client), error)
            raise

    return restore_unacked


def hold(held: Held, error: BaseException) -> None:
    global _thread
    log.warning("the broker did not answer while %d unacknowledged message(s) were put back "
                "on their queue (%s: %s); they are put back once it answers",
                len(held.tags), type(error).__name__, error)
    with _lock:
        _held.append(held)
        if _thread is None or not _thread.is_alive():
            _thread = threading.Thread(target=_run, name="worker-restore", daemon=True)
            _thread.start()


def _run() -> None:
    while True:
        with _lock:
            pending = list(_held)
        if not pending:
            return
        for held in pending:
            try:
                done = attempt(held)
            except Exception:  # the thread must not die silently with tags held
                log.exception("putting back %d held message(s) failed; they return to their "
                              "queue after the visibility timeout", len(held.tags))
                done = True
            if done or time.time() - held.lost_at > GIVE_UP_SECONDS:
                if not done:  # Redis has not answered for GIVE_UP_SECONDS
                    log.error("gave up putting back %d message(s) after %d s; they return "
                              "to their queue after the visibility timeout",
                              len(held.tags), GIVE_UP_SECONDS)
                with _lock:
                    _held.remove(held)
        time.sleep(RETRY_SECONDS)


def attempt(held: Held) -> bool:
    """Put back what is still held from before the break; True when done, False to retry."""
    options = dict(held.connection.transport_options or {})
    options.update(socket_timeout=TIMEOUT_SECONDS, socket_connect_timeout=TIMEOUT_SECONDS,
                   max_retries=1)
    connection = held.connection.clone(connect_timeout=TIMEOUT_SECONDS,
                                       transport_options=options)
    try:
        restored = put_back(connection.default_channel, held.tags, held.lost_at)
    except (*unreachable(), *connection.connection_errors) as error:  # the next one reconnects
        log.debug("putting back held messages failed: %s", error)
        return False
    finally:
        connection.release()
    log.warning("put %d of %d held message(s) back on their queue, %.1f s after the broker "
                "went away%s", restored, len(held.tags), time.time() - held.lost_at,
                "" if restored == len(held.tags)
                else " (the others had been delivered again or acknowledged)")
    return True


def put_back(channel: Any, tags: list[str], lost_at: float) -> int:
    qos, client = channel.qos, channel.client
    restored = 0
    for tag in tags:
        delivered_at = client.zscore(qos.unacked_index_key, tag)
        if delivered_at is not None and delivered_at <= lost_at:
            qos.restore_by_tag(tag, client)
            restored += 1
    return restored
