"""Replace one method of an Airflow class, only if it still has the expected shape.

The worker corrects two behaviours of Airflow's task supervisor
(entrypoint.task_exit, entrypoint.first_heartbeat). Each replacement was written
against one signature of the method it wraps; when an Airflow upgrade changes
that signature, the replacement is not installed, a warning says why, and
Airflow's own code runs unchanged. Installing twice is a no-op, and the
original stays reachable as `__wrapped__`.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)

_MARK = "_airflow_ecs_replaces"


def replace(cls: type, name: str, parameters: tuple[str, ...],
            build: Callable[[Callable], Callable], label: str) -> bool:
    """Set cls.NAME to build(original); True when the replacement is (already) in place."""
    original = getattr(cls, name, None)
    if original is None or not callable(original):
        log.warning("%s: %s.%s not found; unchanged", label, cls.__name__, name)
        return False
    if getattr(original, _MARK, None) == label:
        return True
    if tuple(inspect.signature(original).parameters) != parameters:
        log.warning("%s: %s.%s%s is not the signature this fix was written for; unchanged",
                    label, cls.__name__, name, inspect.signature(original))
        return False
    replacement = build(original)
    setattr(replacement, _MARK, label)
    replacement.__wrapped__ = original  # type: ignore[attr-defined]
    setattr(cls, name, replacement)
    return True
