"""Connections to a PostgreSQL server in a container, by the container holding them.

Read from pg_stat_activity with psql through the server's local socket (which has no
client address, so it is not counted), which the end-to-end tests assert on; or, for the
most each client held at once, from the server's log of every session, which the
benchmark reads. A client is named by its address on the containers' network.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

QUERY = ["psql", "-U", "airflow", "-d", "airflow", "-At", "-c",
         "select client_addr, count(*) from pg_stat_activity "
         "where backend_type = 'client backend' and client_addr is not null group by 1"]


def addresses(attrs: Mapping[str, Any]) -> list[str]:
    """A container's addresses, from its `docker inspect` (or listing) attributes."""
    return [n["IPAddress"] for n in attrs["NetworkSettings"]["Networks"].values()
            if n.get("IPAddress")]


def connections(database: Any, names: Mapping[str, str]) -> dict[str, int] | None:
    """Client connections by name (`names`: address -> name; an unknown address stands for
    itself), or None where psql fails (the server not up yet). `database`: a docker-py
    container running the server."""
    code, out = database.exec_run(QUERY)
    if code != 0:
        return None
    counts: dict[str, int] = {}
    for line in out.decode().split():
        address, count = line.split("|")
        name = names.get(address, address)
        counts[name] = counts.get(name, 0) + int(count)
    return counts


# The server's own account of every session, with log_connections and log_disconnections
# on (PostgreSQL's default log_line_prefix, '%m [%p] ', gives each line its time, in UTC
# here, and process id): "connection received: host=ADDR port=N" as a backend starts,
# "connection authorized" once it has logged in, "disconnection: ..." as it ends. A backend
# that fails to log in logs no disconnection, so a session counts from its authorization.
LOGGING = ("-c", "log_connections=on", "-c", "log_disconnections=on")
_LINE = re.compile(r"(?m)^(?P<stamp>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?) UTC "
                   r"\[(?P<pid>\d+)\]\s+LOG:\s+(?P<what>connection received: "
                   r"host=(?P<host>\S+)|connection authorized|disconnection:)")


def peaks_from_log(log: str, name_of: Callable[[str, float], str]) -> dict[str, int]:
    """The most sessions each client held at once, from the server's log (LOGGING).
    `name_of(address, when)` names the client that had the address at that time (epoch
    seconds): Docker hands a stopped container's address to the next one it starts. Exact
    where a sample of pg_stat_activity misses a session shorter than its interval. The
    local socket and the loopback address (the server's own health checks) are not
    counted."""
    clients: dict[str, str] = {}  # backend pid -> the client's name, or its address
    open_now: dict[str, set[str]] = {}
    peaks: dict[str, int] = {}
    for match in _LINE.finditer(log):
        pid, what = match["pid"], match["what"]
        if what.startswith("connection received"):
            host = match["host"]
            if host not in ("[local]", "127.0.0.1", "::1"):
                when = datetime.fromisoformat(match["stamp"]).replace(tzinfo=UTC)
                clients[pid] = name_of(host, when.timestamp())
            continue
        name = clients.get(pid)
        if name is None:
            continue
        sessions = open_now.setdefault(name, set())
        if what == "connection authorized":
            sessions.add(pid)
            peaks[name] = max(peaks.get(name, 0), len(sessions))
        else:
            sessions.discard(pid)
            del clients[pid]
    return peaks
