"""DAG sync: git or S3 into the DAG folder, at start-up and then continuously.

`sync_at_start` is the start-up sequence's seam (nothing happens for the
`image` source); `sync_once` is one pass; `run_loop` keeps syncing every
AIRFLOW_ECS_DAGS_REFRESH_SECONDS, keeping the last good tree when a refresh
fails and recording how stale it is for `health` and `sync-dags --status`.
See docs/dags.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from entrypoint.config import Settings


def sync_at_start(settings: Settings, env: Mapping[str, str]) -> None:
    """The start-up seam: one sync for git or S3; nothing at all for the image source.

    The image source (the default) imports nothing more: the sync machinery (and its
    imports) loads only when there is something to sync.
    """
    if settings.dags_source == "image":
        return
    from entrypoint.dagsync import sync

    sync.sync_at_start(settings, env)


_LAZY = frozenset({"sync_once", "run_loop", "print_status", "SyncResult"})


def __getattr__(name: str) -> Any:
    # The rest of the package's interface, loaded on first use.
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module("entrypoint.dagsync.sync"), name)
