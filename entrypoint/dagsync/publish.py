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
import math
import os
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from entrypoint.config import Settings
from entrypoint.errors import DagSyncError
from entrypoint.files import replace_private
from entrypoint.log import log, mask_url, redact

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


# A password in a URL: scheme://user:PASSWORD@ or scp-like user:PASSWORD@host:path.
_PASSWORD = re.compile(r"(?P<head>(?:[A-Za-z][A-Za-z0-9+.-]*://)?[^\s'\"@/:]*):"
                       r"(?P<pw>[^\s'\"@/]*)@")
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"]+")


def display_url(url: str) -> str:
    """url as it may appear in a message: any password masked, in every URL form."""
    return scrub(url)


def scrub(text: str) -> str:
    """text (a message, an error, git's stderr) with every secret masked: the values
    registered with the log module, and the password of any URL, in any form."""
    text = _URL.sub(lambda m: mask_url(m.group(0)), redact(text))
    # The forms mask_url may not parse (scp-like user:password@host:path), and what is
    # left of a URL it could not split.
    return _PASSWORD.sub(lambda m: f"{m['head']}:****@" if m["pw"] != "****" else m[0], text)


def trees_dir(settings: Settings) -> Path:
    return settings.dags_state_dir / TREES


def new_tree(settings: Settings, revision: str) -> Path:
    base = trees_dir(settings)
    try:
        base.mkdir(parents=True, exist_ok=True)
        path = base / f"{revision[:16]}-{time.time_ns()}"
        path.mkdir()
    except OSError as exc:
        raise DagSyncError(f"cannot create a DAG tree under AIRFLOW_ECS_DAGS_STATE_DIR="
                           f"{settings.dags_state_dir}: {exc.strerror}; point it at a "
                           "writable volume") from None
    return path


def current_tree(settings: Settings) -> Path | None:
    """The published tree, when it is one this sync built: a link pointing anywhere else
    (edited by hand, or a state directory moved) is never read from, nor linked from."""
    link = settings.dags_dir
    if not link.is_symlink():
        return None
    target = Path(os.readlink(link))
    target = target if target.is_absolute() else link.parent / target
    if not target.is_dir():
        return None
    base = os.path.realpath(trees_dir(settings))
    real = os.path.realpath(target)
    return target if real.startswith(base + os.sep) else None


def inside(root: Path, path: str) -> bool:
    real_root = os.path.realpath(root)
    real = os.path.realpath(path)
    return real == real_root or real.startswith(real_root + os.sep)


def drop_escaping_links(root: Path) -> list[str]:
    """Remove every symbolic link under root whose target is outside root (an absolute
    link, or one climbing out with `..`, directly or through other links); return their
    paths, relative to root. What stays resolves inside the published tree, so a reader
    of the DAG folder never reaches the host's files through it."""
    links = []
    folders = [str(root)]
    while folders:
        folder = folders.pop()
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.is_symlink():
                    links.append(entry.path)
                elif entry.is_dir(follow_symlinks=False):
                    folders.append(entry.path)
    # Every link judged before any is removed: one that leaves only through another
    # (`a -> b/etc`, `b -> /`) is judged with that other one still in place.
    escaping = [link for link in links if not inside(root, link)]
    for link in escaping:
        os.unlink(link)
    return sorted(os.path.relpath(link, root) for link in escaping)


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
        raise DagSyncError(f"{_source(settings)} holds no files; refusing to publish an empty "
                           "DAG folder (set AIRFLOW_ECS_DAGS_ALLOW_SHRINK=true if that is "
                           "intended)")
    if published is not None:
        before = count_files(published) if published_files is None else published_files
        if before and files < before / 2:
            raise DagSyncError(
                f"the new tree has {files} files where the published one has {before}; refusing "
                "to publish a sync that loses more than half of the files (set "
                "AIRFLOW_ECS_DAGS_ALLOW_SHRINK=true if that is intended)")
    return files


def _source(settings: Settings) -> str:
    if settings.dags_source == "s3":
        return f"AIRFLOW_ECS_DAGS_S3_URI={scrub(settings.dags_s3_uri or '')}"
    url = f"AIRFLOW_ECS_DAGS_GIT_URL={display_url(settings.dags_git_url or '')}"
    if settings.dags_git_subdir:
        return f"folder AIRFLOW_ECS_DAGS_GIT_SUBDIR={settings.dags_git_subdir!r} of {url}"
    return url


def publish(settings: Settings, tree: Path) -> None:
    link = settings.dags_dir
    try:
        link.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DagSyncError(f"cannot create the folder of AIRFLOW_ECS_DAGS_DIR={link}: "
                           f"{exc.strerror}; point it at a path in a writable volume") from None
    if link.exists() and not link.is_symlink():
        if link.is_dir() and not any(link.iterdir()):
            link.rmdir()
        else:
            raise DagSyncError(
                f"AIRFLOW_ECS_DAGS_DIR={link} is a real directory with files in it; synced DAGs "
                "are published as a symlink there. Point AIRFLOW_ECS_DAGS_DIR at a path in a "
                "writable volume, e.g. /opt/airflow/dags-data/dags")
    temporary = link.parent / f".{link.name}.{os.urandom(16).hex()}"
    try:
        os.symlink(tree, temporary)
        os.replace(temporary, link)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise DagSyncError(f"could not publish the DAG tree at AIRFLOW_ECS_DAGS_DIR={link}: "
                           f"{exc.strerror}; its folder must be writable") from None


def remove_old_trees(settings: Settings, keep: Path | None) -> None:
    base = trees_dir(settings)
    if not base.is_dir():
        return
    cutoff = time.time() - settings.dags_keep_seconds
    for tree in base.iterdir():
        if tree.name.endswith(SIDECAR) or tree.name.startswith("."):
            continue
        if keep is not None and keep.resolve().is_relative_to(tree.resolve()):
            continue
        try:
            if tree.stat().st_mtime < cutoff:
                shutil.rmtree(tree, ignore_errors=True)
        except FileNotFoundError:
            continue
    for state in base.glob("*" + SIDECAR):
        if not (base / state.name[:-len(SIDECAR)]).exists():
            state.unlink(missing_ok=True)


SIDECAR = ".manifest.json"


def sidecar(tree: Path) -> Path:
    """Where the sync keeps its own state about a tree: beside it, never in it (the
    published tree holds the source's files and nothing else)."""
    return tree.with_name(tree.name + SIDECAR)


def discard(tree: Path) -> None:
    """Remove a tree that will not be published, and its state."""
    shutil.rmtree(tree, ignore_errors=True)
    sidecar(tree).unlink(missing_ok=True)


def status_path(settings: Settings) -> Path:
    return settings.dags_state_dir / STATUS_FILE


def _number(value: object) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


# Each field's check: a status file edited by hand, truncated or from another program
# must never make a reader fail on a field of the wrong type.
_FIELDS: dict[str, Callable[[Any], bool]] = {
    "source": lambda v: isinstance(v, str),
    "revision": lambda v: v is None or isinstance(v, str),
    "last_success": lambda v: v is None or _number(v),
    "last_attempt": lambda v: v is None or _number(v),
    "last_error": lambda v: v is None or isinstance(v, str),
    "consecutive_failures": lambda v: _number(v) and isinstance(v, int) and v >= 0,
    "files": lambda v: _number(v) and isinstance(v, int) and v >= 0,
}


def load_status(settings: Settings) -> tuple[Status | None, str | None]:
    """(status, None); (None, None) when no sync was recorded; (None, what is wrong)
    when the status file can't be read or is not a status (the next sync rewrites it)."""
    path = status_path(settings)
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        return None, f"cannot read the DAG sync status {path}: {exc.strerror}"
    except (ValueError, RecursionError):
        data = None
    defaults = asdict(Status(source="?"))
    if isinstance(data, dict):
        data = {k: data.get(k, defaults[k]) for k in Status.__dataclass_fields__}
        bad = sorted(k for k, check in _FIELDS.items() if not check(data[k]))
        if not bad:
            return Status(**data), None
        why = f"field {', '.join(bad)} of the wrong type"
    else:
        why = "not a JSON object"
    return None, (f"the DAG sync status {path} is corrupt ({why}); the next sync rewrites "
                  "it (or delete it)")


def read_status(settings: Settings) -> Status | None:
    """The recorded status, or None (nothing recorded, or a corrupt file: named in a
    warning)."""
    status, problem = load_status(settings)
    if problem:
        log.warning("%s", problem)
    return status


def write_status(settings: Settings, status: Status) -> None:
    """Write the status, mode 0600: its last error can name hosts, paths and users."""
    path = status_path(settings)
    data = asdict(status)
    if data["last_error"]:
        data["last_error"] = scrub(data["last_error"])
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        replace_private(path, json.dumps(data))
    except OSError as exc:
        raise DagSyncError(f"cannot write the DAG sync status {path}: {exc.strerror}; "
                           "AIRFLOW_ECS_DAGS_STATE_DIR must be a writable folder") from None


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
