"""Publishing DAG trees atomically, and the sync status.

Each sync builds a complete tree in a new directory under the state
directory; publishing points AIRFLOW_ECS_DAGS_DIR (a symlink) at it by
renaming a temporary symlink over the live one, as git-sync does: one
rename(2), so a reader sees the old tree or the new one, never a mix. Airflow
keeps the symlink's path as its DAG folder, so file locations don't change
across swaps and no DAG goes stale. Replaced trees are deleted after a grace
period, so a task that opened a file of the old tree can finish reading it.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from entrypoint.config import Settings
from entrypoint.errors import DagSyncError
from entrypoint.log import log, redact

STATUS_FILE = "status.json"
TREES = "trees"


@dataclass
class Status:
    source: str
    revision: str | None = None
    last_success: float | None = None
    last_attempt: float | None = None
    last_error: str | None = None
    consecutive_failures: int = 0
    files: int = 0


def trees_dir(settings: Settings) -> Path:
    return settings.dags_state_dir / TREES


def new_tree(settings: Settings, revision: str) -> Path:
    base = trees_dir(settings)
    base.mkdir(parents=True, exist_ok=True)
    path = base / f"{revision[:16]}-{time.time_ns()}"
    path.mkdir()
    return path


def current_tree(settings: Settings) -> Path | None:
    link = settings.dags_dir
    if not link.is_symlink():
        return None
    target = Path(os.readlink(link))
    target = target if target.is_absolute() else link.parent / target
    return target if target.is_dir() else None


def count_files(tree: Path) -> int:
    return sum(len(files) for _, _, files in os.walk(tree))


def check_shrink(settings: Settings, new: Path, published: Path | None,
                 published_files: int | None = None) -> int:
    """Refuse an empty tree, or one that lost more than half of the files (published_files:
    the published tree's count, when the caller has just counted it)."""
    files = count_files(new)
    if settings.dags_allow_shrink:
        return files
    if files == 0:
        raise DagSyncError("the source holds no files; refusing to publish an empty DAG folder "
                           "(set AIRFLOW_ECS_DAGS_ALLOW_SHRINK=true if that is intended)")
    if published is not None:
        before = count_files(published) if published_files is None else published_files
        if before and files < before / 2:
            raise DagSyncError(
                f"the new tree has {files} files where the published one has {before}; refusing "
                "to publish a sync that loses more than half of the files (set "
                "AIRFLOW_ECS_DAGS_ALLOW_SHRINK=true if that is intended)")
    return files


def publish(settings: Settings, tree: Path) -> None:
    link = settings.dags_dir
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.exists() and not link.is_symlink():
        if link.is_dir() and not any(link.iterdir()):
            link.rmdir()
        else:
            raise DagSyncError(
                f"AIRFLOW_ECS_DAGS_DIR={link} is a real directory with files in it; synced DAGs "
                "are published as a symlink there. Point AIRFLOW_ECS_DAGS_DIR at a path in a "
                "writable volume, e.g. /opt/airflow/dags-data/dags")
    temporary = link.parent / f".{link.name}.{os.urandom(16).hex()}"
    os.symlink(tree, temporary)
    try:
        os.replace(temporary, link)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise DagSyncError(f"could not publish the DAG tree at {link}: {exc.strerror}") from None


def remove_old_trees(settings: Settings, keep: Path | None) -> None:
    base = trees_dir(settings)
    if not base.is_dir():
        return
    cutoff = time.time() - settings.dags_keep_seconds
    for tree in base.iterdir():
        if keep is not None and keep.resolve().is_relative_to(tree.resolve()):
            continue
        try:
            if tree.stat().st_mtime < cutoff:
                shutil.rmtree(tree, ignore_errors=True)
        except FileNotFoundError:
            continue


def status_path(settings: Settings) -> Path:
    return settings.dags_state_dir / STATUS_FILE


def read_status(settings: Settings) -> Status | None:
    try:
        data = json.loads(status_path(settings).read_text())
    except (OSError, ValueError):
        return None
    return Status(**{k: data.get(k) for k in Status.__dataclass_fields__})


def write_status(settings: Settings, status: Status) -> None:
    path = status_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    data = asdict(status)
    if data["last_error"]:
        data["last_error"] = redact(data["last_error"])
    temporary.write_text(json.dumps(data))
    os.replace(temporary, path)


def record(settings: Settings, source: str, revision: str | None, files: int,
           error: str | None) -> Status:
    status = read_status(settings) or Status(source=source)
    status.source = source
    status.last_attempt = time.time()
    if error is None:
        status.revision = revision
        status.last_success = status.last_attempt
        status.last_error = None
        status.consecutive_failures = 0
        status.files = files
    else:
        status.last_error = error
        status.consecutive_failures = (status.consecutive_failures or 0) + 1
    write_status(settings, status)
    if error is None:
        log.info("DAGs at %s revision %s (%d files)", settings.dags_dir, revision, files)
    return status
