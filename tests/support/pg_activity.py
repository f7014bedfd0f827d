"""Connections to a PostgreSQL server in a container, by the container holding them.

Read from pg_stat_activity with psql through the server's local socket (which has no
client address, so it is not counted); a client is named by its address on the
containers' network. The benchmark samples it, the end-to-end tests assert on it.
"""

from __future__ import annotations

from collections.abc import Mapping
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
