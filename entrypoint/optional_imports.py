"""Import a library as if some of its optional dependencies were not installed.

Airflow installs packages that libraries we use then import on their own
(httpx for aiobotocore, the OpenTelemetry SDK for redis-py) although our
short-lived processes never use them, and those imports are a large part
of a sync's or a probe's CPU. A None entry in sys.modules is how Python
spells "not installed", a state those libraries handle; the entries are
removed on leaving, so anything else in the process still imports them.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator


@contextlib.contextmanager
def absent(*names: str) -> Iterator[None]:
    """Within the block, `import NAME` fails for every name not already imported."""
    hidden = [name for name in names if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        for name in hidden:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]


@contextlib.contextmanager
def kombu_without_plugins() -> Iterator[None]:
    """Within the block, importing kombu skips its search for plugins.

    At import, kombu.serialization and kombu.matcher each read the entry points
    of every installed distribution (hundreds, with Airflow) for third-party
    serializers and matchers (BENCHMARKS.md, import costs: a sizeable part of
    the worker probe), spent on plugins a JSON ping never uses. kombu asks through one function,
    kombu.utils.compat.entrypoints, only at import time; it answers "none" here.
    That function is internal to kombu (entrypoint.private_apis): where it is
    missing or changed, kombu is imported as it is, plugins searched.
    """
    from entrypoint import private_apis

    if private_apis.lookup(private_apis.KOMBU_ENTRYPOINTS) is None:
        yield
        return
    from kombu.utils import compat

    original = compat.entrypoints
    compat.entrypoints = lambda namespace: iter(())
    try:
        yield
    finally:
        compat.entrypoints = original
