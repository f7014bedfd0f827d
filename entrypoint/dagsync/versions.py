"""Exact versions of the DAG tree, each built once per machine and shared by every process.

A versioned DAG bundle (entrypoint.bundles) asks for one version (a commit sha, an
S3 listing digest); this store answers with a complete tree of it:

    <root>/versions/<version>/          a published version, never written again
    <root>/versions/.<version>.<random> a version being built (or left by a killed build)
    <root>/versions/.trash.<random>     a version being removed
    <root>/use/<version>                in-use lock and last-use time of a version
    <root>/build.lock                   held while a version is built

A version's folder exists only once complete: it is built under a temporary name
and renamed into place (one rename(2), as the sync publishes its trees), so a
reader never sees half of one. Builds take `build.lock`, so concurrent tasks
wanting the same version fetch it once: the first builds it, the others wait
(bounded) and find it published. A build killed halfway leaves its temporary
folder, removed by the next build, and its lock, which the kernel releases with
the process.

Every process using a version holds a shared flock on `use/<version>` for as
long as it runs (a task: its whole process), and touches its time. A version is
removed only when no process holds that lock, its last use is older than the
grace period, and the caller's own check (Airflow's usage tracking) agrees; it is
renamed away under an exclusive lock first, so a process arriving later sees it
either whole or absent, and then builds it again.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from entrypoint.dagsync.publish import SIDECAR, sidecar
from entrypoint.errors import DagSyncError
from entrypoint.log import log

VERSIONS = "versions"
USE = "use"
POLL = 0.05  # seconds between two tries of a lock that is held
# Removal is checked at most this often per process: it lists every version.
CLEANUP_PERIOD = 60.0


def _lock(handle: IO[bytes], kind: int, deadline: float | None, what: str) -> None:
    """flock handle, waiting until deadline (None: try once, raise BlockingIOError).

    Polled rather than blocking in flock(2), so the wait is bounded and a signal
    handler (SIGTERM) runs between two tries."""
    while True:
        try:
            fcntl.flock(handle, kind | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if deadline is None:
                raise
            if time.monotonic() >= deadline:
                raise DagSyncError(what) from None
        time.sleep(POLL)


class Use:
    """A version held in use by this process: released by `release()` or at exit."""

    def __init__(self, path: Path, handle: IO[bytes]) -> None:
        self.path = path
        self._handle: IO[bytes] | None = handle

    def release(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


class VersionStore:
    """The versions of one DAG source under root.

    `source` names the source in messages (a URL without credentials); `wait` bounds
    how long a process waits for another one building the version it wants."""

    def __init__(self, root: Path, source: str, wait: float) -> None:
        self.root = root
        self.source = source
        self.wait = wait
        self.versions = root / VERSIONS
        self.uses = root / USE

    def path(self, version: str) -> Path:
        return self.versions / version

    def _open_use(self, version: str, kind: int, deadline: float | None) -> IO[bytes]:
        """The lock file of version, locked; the same file as the one now at its path
        (a remover unlinks it while holding it exclusively)."""
        path = self.uses / version
        while True:
            self.uses.mkdir(parents=True, exist_ok=True)
            handle = open(path, "ab")  # kept open while the version is used
            try:
                _lock(handle, kind, deadline,
                      f"version {version} of {self.source}: its lock {path} stayed held for "
                      f"{self.wait:g}s")
                try:
                    same = os.fstat(handle.fileno()).st_ino == os.stat(path).st_ino
                except FileNotFoundError:
                    same = False
            except BaseException:
                handle.close()
                raise
            if same:
                return handle
            handle.close()  # removed meanwhile: lock the new one

    def acquire(self, version: str, build: Callable[[Path], None]) -> tuple[Use, bool]:
        """The published version, held in use; built first by build(folder) when no
        process has built it yet. Returns (use, whether this call built it).

        build fills the empty folder it is given and raises on failure; the folder is
        published only when it returns."""
        deadline = time.monotonic() + self.wait
        try:
            handle = self._open_use(version, fcntl.LOCK_SH, deadline)
        except OSError as exc:
            raise self._storage_error(exc) from None
        try:
            os.utime(handle.fileno())  # its last use: now
            target = self.path(version)
            if target.is_dir():
                return Use(target, handle), False
            with self._build_lock(version, deadline):
                if target.is_dir():  # built by the process that held the lock
                    return Use(target, handle), False
                self._build(version, build)
            return Use(target, handle), True
        except BaseException:
            handle.close()
            raise

    def hold(self, version: str, below: str = "") -> Use | None:
        """Hold a published version in use (to link its files into a new one), or None
        when it is absent or being removed; the Use's path is its folder `below`."""
        try:
            handle = self._open_use(version, fcntl.LOCK_SH, None)
        except (BlockingIOError, OSError):
            return None
        path = self.path(version) / below if below else self.path(version)
        if not path.is_dir():
            handle.close()
            return None
        return Use(path, handle)

    def published(self) -> list[str]:
        """The published versions, the most recently used first."""
        try:
            names = [p.name for p in self.versions.iterdir()
                     if not p.name.startswith(".") and not p.name.endswith(SIDECAR)]
        except FileNotFoundError:
            return []

        def last_use(name: str) -> float:
            try:
                return os.stat(self.uses / name).st_mtime
            except OSError:
                return 0.0

        return sorted(names, key=last_use, reverse=True)

    @contextlib.contextmanager
    def _build_lock(self, version: str, deadline: float) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / "build.lock", "ab") as handle:
            _lock(handle, fcntl.LOCK_EX, deadline,
                  f"version {version} of {self.source}: another process has been building a "
                  f"version for {self.wait:g}s; gave up waiting for it (the task fails and is "
                  "retried as its retries allow)")
            self._remove_leftovers()
            yield

    def _remove_leftovers(self) -> None:
        """Folders of builds killed halfway (no build runs while build.lock is held)."""
        with contextlib.suppress(FileNotFoundError):
            for path in self.versions.iterdir():
                if path.name.startswith(".") and not path.name.startswith(".trash."):
                    _remove(path)

    def _build(self, version: str, build: Callable[[Path], None]) -> None:
        try:
            self.versions.mkdir(parents=True, exist_ok=True)
            folder = self.versions / f".{version}.{os.urandom(6).hex()}"
            folder.mkdir()
        except OSError as exc:
            raise self._storage_error(exc) from None
        try:
            build(folder)
            os.rename(folder, self.path(version))
            if sidecar(folder).exists():
                os.rename(sidecar(folder), sidecar(self.path(version)))
        except OSError as exc:
            _remove(folder)
            raise self._storage_error(exc) from None
        except BaseException:
            _remove(folder)
            raise
        log.info("DAG version %s of %s published at %s", version, self.source,
                 self.path(version))

    def _storage_error(self, exc: OSError) -> DagSyncError:
        where = f" ({exc.filename})" if exc.filename else ""
        return DagSyncError(f"storing a DAG version of {self.source} under {self.root} failed: "
                            f"{exc.strerror or type(exc).__name__}{where}; the folder must be "
                            "a writable volume with room for the versions in use")

    def remove_unused(self, keep_seconds: float, keep: set[str] | None = None,
                      in_use: Callable[[str], bool] | None = None) -> list[str]:
        """Remove every version no process holds, last used more than keep_seconds ago,
        not in keep and not reported by in_use; return the removed versions."""
        cutoff = time.time() - keep_seconds
        removed = []
        for version in self.published():
            if keep and version in keep:
                continue
            try:
                if os.stat(self.uses / version).st_mtime >= cutoff:
                    continue
            except FileNotFoundError:
                pass  # a version without its lock file: judged by the lock taken below
            try:
                handle = self._open_use(version, fcntl.LOCK_EX, None)
            except (BlockingIOError, OSError):
                continue  # in use
            try:
                if in_use is not None and in_use(version):
                    continue
                if os.stat(handle.fileno()).st_mtime >= cutoff:
                    continue  # a version without a lock file got one just now
                trash = self.versions / f".trash.{os.urandom(6).hex()}"
                try:
                    os.rename(self.path(version), trash)
                except FileNotFoundError:
                    continue
                sidecar(self.path(version)).unlink(missing_ok=True)
                (self.uses / version).unlink(missing_ok=True)
            finally:
                handle.close()
            _remove(trash)
            removed.append(version)
            log.info("DAG version %s of %s removed: unused for %gs", version, self.source,
                     keep_seconds)
        with contextlib.suppress(FileNotFoundError):
            for path in self.versions.glob(".trash.*"):
                _remove(path)  # left by a removal killed halfway: no reader reaches them
        return removed

    def remove_unused_now_and_then(self, keep_seconds: float, keep: set[str] | None = None,
                                   in_use: Callable[[str], bool] | None = None) -> None:
        """remove_unused, by one process at a time and at most every CLEANUP_PERIOD
        seconds on the machine (its stamp file's time); never raises: a removal that
        fails leaves the version for the next one."""
        stamp = self.root / "cleanup.stamp"
        try:
            if time.time() - os.stat(stamp).st_mtime < min(CLEANUP_PERIOD, keep_seconds):
                return
        except FileNotFoundError:
            pass
        except OSError:
            return
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with open(stamp, "ab") as handle:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    return  # another process is removing
                os.utime(handle.fileno())
                self.remove_unused(keep_seconds, keep, in_use)
        except OSError as exc:
            log.warning("removing unused DAG versions under %s failed: %s", self.root,
                        exc.strerror or type(exc).__name__)


def _remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    sidecar(path).unlink(missing_ok=True)
