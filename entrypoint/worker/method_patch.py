"""Replace one method of an Airflow class, only if it still has the expected shape.

The worker corrects two behaviours of Airflow's task supervisor
(entrypoint.worker.task_exit, entrypoint.worker.first_heartbeat). Each replacement was written
against one signature of the method it wraps and the attributes it uses; when
an Airflow upgrade changes either, or the class is not importable, the
replacement is not installed, a warning says why, and Airflow's own code runs
unchanged. Installing twice is a no-op, and the original stays reachable as
`__wrapped__`.
"""

from __future__ import annotations

import importlib
import inspect
import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

_MARK = "_airflow_ecs_replaces"


def replace(module: str, class_name: str, name: str, parameters: tuple[str, ...],
            build: Callable[[Callable[..., Any]], Callable[..., Any]], label: str,
            attributes: tuple[str, ...] = ()) -> bool:
    """Set CLASS.NAME to build(original); True when the replacement is (already) in place."""
    try:
        cls = getattr(importlib.import_module(module), class_name)
    except (ImportError, AttributeError) as exc:
        log.warning("%s: %s.%s not importable (%s); unchanged", label, module, class_name, exc)
        return False
    # attrs classes declare their instance attributes; others must have them on the class.
    declared = {a.name for a in getattr(cls, "__attrs_attrs__", ())}
    missing = [a for a in attributes if a not in declared and not hasattr(cls, a)]
    if missing:
        log.warning("%s: %s has no %s; unchanged", label, class_name, ", ".join(missing))
        return False
    original = getattr(cls, name, None)
    if original is None or not callable(original):
        log.warning("%s: %s.%s not found; unchanged", label, class_name, name)
        return False
    if getattr(original, _MARK, None) == label:
        return True
    if tuple(inspect.signature(original).parameters) != parameters:
        log.warning("%s: %s.%s%s is not the signature this fix was written for; unchanged",
                    label, class_name, name, inspect.signature(original))
        return False
    replacement = build(original)
    setattr(replacement, _MARK, label)
    replacement.__wrapped__ = original  # type: ignore[attr-defined]
    setattr(cls, name, replacement)
    return True
