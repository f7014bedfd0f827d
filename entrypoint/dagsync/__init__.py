"""DAG sync: git or S3 into the DAG folder, at start-up and then continuously.

`sync_at_start` is the start-up sequence's seam (nothing happens for the
`image` source); `sync_once` is one pass; `run_loop` keeps syncing every
AIRFLOW_ECS_DAGS_REFRESH_SECONDS, keeping the last good tree when a refresh
fails and recording how stale it is for `health` and `sync-dags --status`.
See docs/dags.md.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from entrypoint.config import Settings

if TYPE_CHECKING:
    # Loaded lazily at run time by __getattr__ below.
    from entrypoint.dagsync.sync import SyncResult as SyncResult
    from entrypoint.dagsync.sync import print_status as print_status
    from entrypoint.dagsync.sync import run_loop as run_loop
    from entrypoint.dagsync.sync import sync_once as sync_once


def sync_at_start(settings: Settings, env: Mapping[str, str], role: str = "") -> None:
    """The start-up seam: one sync for git or S3; nothing at all for the image source.

    The image source (the default) imports nothing more: the sync machinery (and its
    imports) loads only when there is something to sync. In versioned mode only a role
    with the dag-processor syncs (the tree its tracking bundle starts from, and a bad
    setting or credential stops it at once); the other roles read no DAG folder, and a
    worker fetches each task's version as the task starts.
    """
    if settings.dags_source == "image":
        return
    if settings.dags_versioned and "dag-processor" not in role.split("+"):
        return
    from entrypoint.dagsync import sync

    sync.sync_at_start(settings, env)


def problems(settings: Settings) -> list[str]:
    """What the sync would refuse in the DAG-sync settings beyond what config.load checks
    (a git URL carrying a password, a ref git won't take, an S3 URI that isn't UTF-8): one
    line each, for `airflow-ecs check`. The sync runs the same checks before each pass."""
    from entrypoint.errors import ConfigError

    checks: list[Callable[[], object]] = []
    if settings.dags_source == "git":
        from entrypoint.dagsync import gitsource

        checks = [lambda: gitsource.validate_url(settings.dags_git_url or ""),
                  lambda: gitsource.validate_ref(settings.dags_git_ref),
                  lambda: gitsource.validate_subdir(settings.dags_git_subdir)]
    elif settings.dags_source == "s3":
        from entrypoint.dagsync import s3source

        checks = [lambda: s3source.validate_uri(settings.dags_s3_uri or "")]
    found = []
    for check in checks:
        try:
            check()
        except ConfigError as exc:
            found.extend(exc.problems)
    return found


_LAZY = frozenset({"sync_once", "run_loop", "print_status", "SyncResult"})


def __getattr__(name: str) -> Any:
    # The rest of the package's interface, loaded on first use.
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module("entrypoint.dagsync.sync"), name)
