"""One sync pass, the start-up sync and the refresh loop (see the package docstring)."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from entrypoint.config import GIT_SSH_KEY_VAR, GIT_TOKEN_VAR, Settings
from entrypoint.dagsync import publish
from entrypoint.errors import ConfigError, DagSyncError, Terminated
from entrypoint.log import log

if TYPE_CHECKING:
    from contextlib import AbstractContextManager
    from types import FrameType


@dataclass(frozen=True)
class SyncResult:
    revision: str
    changed: bool
    files: int
    fetched: int = 0


def credential(name: str, env: Mapping[str, str], raw_env: Mapping[str, str]) -> str | None:
    """The credential in variable name, read again now (so a rotated one is used).

    From `NAME_FILE` when set, else by resolving the original reference (raw_env
    keeps it), else the value itself.
    """
    path = raw_env.get(name + "_FILE") or env.get(name + "_FILE")
    if path:
        try:
            with open(path) as handle:
                value = handle.read()
        except OSError as exc:
            raise DagSyncError(f"cannot read {name}_FILE={path}: {exc.strerror}") from None
        return value[:-1] if value.endswith("\n") else value
    raw = raw_env.get(name)
    if raw and raw.startswith(("ssm:", "secretsmanager:")):
        from entrypoint import secrets

        return secrets.resolve_reference(raw, env, name)
    return env.get(name) or None


def sync_once(settings: Settings, env: Mapping[str, str], first: bool = False,
              raw_env: Mapping[str, str] | None = None) -> SyncResult:
    if settings.dags_source == "image":
        raise ConfigError("AIRFLOW_ECS_DAGS_SOURCE=image: the DAGs come with the image, there "
                          "is nothing to sync")
    raw_env = raw_env if raw_env is not None else os.environ
    source = settings.dags_source
    published = publish.current_tree(settings)
    try:
        if source == "git":
            result = _sync_git(settings, env, raw_env, published)
        else:
            result = _sync_s3(settings, env, published)
    except (DagSyncError, ConfigError) as exc:
        publish.record(settings, source, None, 0, _message(exc))
        raise
    except Exception as exc:
        # A bug: recorded too, so that health and --status say why the DAGs are stale.
        publish.record(settings, source, None, 0,
                       f"internal error: {type(exc).__name__}: {publish.scrub(str(exc))}")
        raise
    publish.record(settings, source, result.revision, result.files, None)
    publish.remove_old_trees(settings, keep=publish.current_tree(settings))
    return result


def _message(exc: DagSyncError | ConfigError) -> str:
    return "; ".join(exc.problems) if isinstance(exc, ConfigError) else str(exc)


def _building(tree: Path) -> AbstractContextManager[None]:
    """Turn a filesystem failure while building tree (a full volume, say) into the DAG
    sync's error, naming the folder."""
    import contextlib

    @contextlib.contextmanager
    def guard() -> Iterator[None]:
        try:
            yield
        except OSError as exc:
            where = f" ({exc.filename})" if exc.filename else ""
            raise DagSyncError(f"building the DAG tree in {tree.parent} failed: "
                               f"{exc.strerror or type(exc).__name__}{where}; "
                               "AIRFLOW_ECS_DAGS_STATE_DIR must be a writable volume with "
                               "room for two trees") from None

    return guard()


def _sync_git(settings: Settings, env: Mapping[str, str], raw_env: Mapping[str, str],
              published: Path | None) -> SyncResult:
    from entrypoint.dagsync import gitsource

    token = credential(GIT_TOKEN_VAR, env, raw_env)
    ssh_key = credential(GIT_SSH_KEY_VAR, env, raw_env)
    cache, sha = gitsource.fetch_commit(settings, env, token, ssh_key)
    status = publish.read_status(settings)
    intact = status is not None and _intact(published, status, status.revision or "")
    if intact and status is not None and status.revision == sha:
        return SyncResult(sha, changed=False, files=status.files or 0)
    tree = publish.new_tree(settings, sha)
    # Unchanged files are linked from the published tree only while it is intact, and
    # never with submodules: a changed gitlink says nothing about which of the
    # submodule's files changed.
    previous = (_published_commit(settings, published, status.revision)
                if intact and status is not None and not settings.dags_git_submodules
                else None)
    try:
        with _building(tree):
            fetched = gitsource.build_tree(settings, env, cache, sha, tree, token, ssh_key,
                                           previous)
            content = gitsource.subdir_folder(tree, settings.dags_git_subdir, sha)
            dropped = publish.drop_escaping_links(content)
        if dropped:
            log.warning("DAG sync: %d symbolic link(s) of commit %s point outside the "
                        "published folder and were left out: %s", len(dropped), sha[:12],
                        ", ".join(repr(p) for p in dropped[:10])
                        + (", ..." if len(dropped) > 10 else ""))
        files = publish.check_shrink(settings, content, published,
                                     status.files if intact and status is not None
                                     else None)
        if fetched is None:  # a full checkout wrote every file of the commit
            fetched = publish.count_files(tree) if content != tree else files
        publish.publish(settings, content)
    except BaseException:
        publish.discard(tree)
        raise
    return SyncResult(sha, changed=True, files=files, fetched=fetched)


def _intact(published: Path | None, status: publish.Status | None, revision: str) -> bool:
    """Whether the published tree is the revision's, as built: a tree whose files were
    deleted by hand (or lost) is built again rather than kept."""
    return (published is not None and status is not None and status.revision == revision
            and (status.files or 0) > 0 and publish.count_files(published) == status.files)


def _published_commit(settings: Settings, published: Path | None,
                      revision: str | None) -> tuple[Path, str] | None:
    """(published folder, its commit) when the published tree is known to be at that
    commit: its folder is named after the revision it was built from."""
    if published is None or not revision:
        return None
    root = published
    for _ in Path(settings.dags_git_subdir).parts if settings.dags_git_subdir else ():
        root = root.parent
    if not publish.inside(publish.trees_dir(settings), str(published)):
        return None  # files are linked only from a tree this sync built
    return (published, revision) if root.name.startswith(revision[:16] + "-") else None


def _sync_s3(settings: Settings, env: Mapping[str, str],
             published: Path | None) -> SyncResult:
    from entrypoint.dagsync import s3fetch, s3source

    # Every request of the sync (listing, downloads, retries) ends by this deadline.
    deadline = s3fetch.Deadline(settings.dags_sync_timeout)
    s3source.validate_uri(settings.dags_s3_uri or "")
    fs = s3source.filesystem(settings, env)
    found = s3source.listing(fs, settings, deadline)
    revision = s3source.revision(found.objects)
    status = publish.read_status(settings)
    if status is not None and _intact(published, status, revision):
        return SyncResult(revision, changed=False, files=status.files or 0)
    if found.skipped:
        log.warning("DAG sync: %d object(s) under AIRFLOW_ECS_DAGS_S3_URI name no path inside "
                    "the DAG folder ('..', '.', empty parts or a leading '/') and were left "
                    "out: %s", len(found.skipped),
                    ", ".join(repr(k) for k in found.skipped[:10])
                    + (", ..." if len(found.skipped) > 10 else ""))
    tree = publish.new_tree(settings, revision)
    try:
        with _building(tree):
            fetched = s3source.build_tree(fs, settings, env, found.objects, published, tree,
                                          deadline)
        files = publish.check_shrink(settings, tree, published)
        publish.publish(settings, tree)
    except BaseException:
        publish.discard(tree)
        raise
    return SyncResult(revision, changed=True, files=files, fetched=fetched)


def sync_at_start(settings: Settings, env: Mapping[str, str]) -> None:
    """The start-up seam: one sync for git or S3; nothing at all for the image source."""
    if settings.dags_source == "image":
        return
    result = sync_once(settings, env, first=True)
    log.info("DAG sync from %s: revision %s%s", settings.dags_source, result.revision[:12],
             "" if result.changed else " (unchanged)")


def run_loop(settings: Settings, env: Mapping[str, str],
             raw_env: Mapping[str, str] | None = None) -> int:
    """Sync every AIRFLOW_ECS_DAGS_REFRESH_SECONDS until SIGTERM or SIGINT.

    No failure ends the loop (it runs beside a role under supervisord, where its exit
    would stop the group): a failed sync, whatever its cause, keeps the last good tree and
    is retried with backoff. A signal during a sync interrupts it at once (its git
    processes and S3 requests are stopped); between syncs it ends the wait."""
    if settings.dags_refresh_seconds <= 0:
        raise ConfigError("sync-dags --loop needs AIRFLOW_ECS_DAGS_REFRESH_SECONDS > 0")
    stop = threading.Event()
    syncing = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()
        if syncing.is_set():
            syncing.clear()
            raise Terminated(f"received {signal.Signals(signum).name}")

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, on_signal)
    period = settings.dags_refresh_seconds
    failures = 0
    while not stop.is_set():
        try:
            syncing.set()
            try:
                result = sync_once(settings, env, raw_env=raw_env)
            finally:
                syncing.clear()
            if result.changed:
                log.info("DAGs updated to %s", result.revision[:12])
            failures = 0
            delay = period
        except Terminated:
            break
        except Exception as exc:  # noqa: BLE001 - the loop outlives any one sync
            failures += 1
            # Back off on failures, never longer than the period: staleness is bounded.
            delay = min(period, 2 ** min(failures, 6))
            if isinstance(exc, (DagSyncError, ConfigError)):
                log.warning("DAG sync failed (%d in a row), keeping the last good tree: %s",
                            failures, publish.scrub(_message(exc)))
            else:
                log.error("DAG sync failed (%d in a row) on an internal error, keeping the "
                          "last good tree: %s: %s", failures, type(exc).__name__,
                          publish.scrub(str(exc)))
        stop.wait(delay)
    return 0


def print_status(settings: Settings) -> int:
    status, problem = publish.load_status(settings)
    if problem:
        print(f"status unknown: {problem}")
        return 1
    if status is None:
        print(f"no DAG sync recorded under {settings.dags_state_dir}")
        return 1
    now = time.time()
    good = (f"{now - status.last_success:.0f}s ago" if status.last_success else "never")
    print(f"source: {status.source}")
    print(f"revision: {status.revision or '-'}")
    print(f"files: {status.files}")
    print(f"last good sync: {good}")
    print(f"consecutive failures: {status.consecutive_failures}")
    if status.last_error:
        print(f"last error: {publish.scrub(status.last_error)}")
    return 0 if status.last_success else 1
