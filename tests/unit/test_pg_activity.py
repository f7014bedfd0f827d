"""The benchmark's count of database connections from PostgreSQL's log of sessions."""

from __future__ import annotations

from datetime import UTC, datetime

from tests.support import pg_activity


def line(second: float, pid: int, text: str) -> str:
    return f"2026-11-28 20:27:{second:06.3f} UTC [{pid}] LOG:  {text}"


def received(second: float, pid: int, host: str) -> str:
    return line(second, pid, f"connection received: host={host} port={40000 + pid}")


def authorized(second: float, pid: int) -> str:
    return line(second, pid, "connection authorized: user=airflow database=airflow")


def ended(second: float, pid: int, host: str) -> str:
    return line(second, pid, "disconnection: session time: 0:00:00.013 user=airflow "
                             f"database=airflow host={host} port={40000 + pid}")


def at(second: float) -> float:
    return datetime(2026, 11, 28, 20, 27, 0, tzinfo=UTC).timestamp() + second


def test_counts_the_sessions_a_client_held_at_once_however_short():
    log = "\n".join([
        received(1.0, 10, "10.0.0.4"), authorized(1.01, 10),
        received(1.02, 11, "10.0.0.4"), authorized(1.03, 11),  # two at once
        ended(1.04, 10, "10.0.0.4"), ended(1.05, 11, "10.0.0.4"),
        received(2.0, 12, "10.0.0.4"), authorized(2.01, 12),  # one again
        received(2.0, 13, "10.0.0.5"), authorized(2.01, 13), ended(2.02, 13, "10.0.0.5"),
    ])
    peaks = pg_activity.peaks_from_log(log, lambda address, when: address)
    assert peaks == {"10.0.0.4": 2, "10.0.0.5": 1}


def test_a_reused_address_is_named_by_who_had_it_when_the_session_began():
    log = "\n".join([
        received(1.0, 10, "10.0.0.4"), authorized(1.01, 10),
        received(1.1, 11, "10.0.0.4"), authorized(1.11, 11),
        ended(2.0, 10, "10.0.0.4"), ended(2.0, 11, "10.0.0.4"),
        # The first container has stopped; the next one started got its address.
        received(9.0, 12, "10.0.0.4"), authorized(9.01, 12),
        # A process id is used again once its backend has ended.
        received(9.5, 10, "10.0.0.4"), authorized(9.51, 10),
        received(9.6, 14, "10.0.0.4"), authorized(9.61, 14),
    ])

    def name_of(address: str, when: float) -> str:
        return "migrate" if when < at(5) else "worker-2"

    assert pg_activity.peaks_from_log(log, name_of) == {"migrate": 2, "worker-2": 3}


def test_failed_logins_and_the_servers_own_checks_are_not_counted():
    log = "\n".join([
        received(1.0, 10, "10.0.0.4"),  # failed its login: no authorization, no end
        received(1.1, 11, "10.0.0.4"), ended(1.2, 11, "10.0.0.4"),  # gave up before it
        received(1.3, 12, "[local]"), authorized(1.31, 12),
        received(1.4, 13, "127.0.0.1"), authorized(1.41, 13),
        "2026-11-28 20:27:01.500 UTC [14] FATAL:  password authentication failed",
    ])
    assert pg_activity.peaks_from_log(log, lambda address, when: address) == {}


def test_the_session_time_is_read_as_utc():
    seen = []
    log = "\n".join([received(3.25, 10, "10.0.0.4"), authorized(3.3, 10)])
    pg_activity.peaks_from_log(log, lambda address, when: seen.append(when) or address)
    assert seen == [at(3.25)]
