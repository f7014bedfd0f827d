"""Replace one method of an Airflow class, only if it still has the expected shape.

The worker corrects two behaviours of Airflow's task supervisor
(entrypoint.worker.task_exit, entrypoint.worker.first_heartbeat). Each
replacement was written against one signature of the method it wraps and the
attributes it uses, declared in entrypoint.private_apis; when an Airflow
upgrade changes any of them, or the class is not importable, the replacement
is not installed, one warning says why, and Airflow's own code runs
unchanged. Installing twice is a no-op, and the original stays reachable as
`__wrapped__`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from entrypoint import private_apis
from entrypoint.private_apis import PrivateApi

_MARK = "_airflow_ecs_replaces"


def replace(owner: PrivateApi, method: PrivateApi,
            build: Callable[[Callable[..., Any]], Callable[..., Any]],
            uses: tuple[PrivateApi, ...] = ()) -> bool:
    """Set OWNER.METHOD to build(original); True when the replacement is (already) in place.

    owner: the class, with the attributes the replacement reads; method: the one
    replaced, with its exact parameters; uses: anything else the replacement calls.
    """
    prefix, _, name = method.attribute.rpartition(".")
    if (method.module, prefix) != (owner.module, owner.attribute):
        raise ValueError(f"{method.name} is not a method of {owner.name}")
    cls = private_apis.lookup(owner)
    if cls is None:
        return False
    original = private_apis.lookup(method)
    if original is None or any(private_apis.lookup(entry) is None for entry in uses):
        return False
    if getattr(original, _MARK, None) == method.name:
        return True
    replacement = build(original)
    setattr(replacement, _MARK, method.name)
    replacement.__wrapped__ = original  # type: ignore[attr-defined]
    setattr(cls, name, replacement)
    return True
