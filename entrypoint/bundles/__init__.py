"""Versioned Airflow DAG bundles over the DAG sync, loaded inside Airflow's dag-processor and
worker (the api-server constructs them too, for their names and view URLs only).

With AIRFLOW_ECS_DAGS_VERSIONED=true, `[dag_processor] dag_bundle_config_list` names
`entrypoint.bundles.git.GitDagBundle` or `entrypoint.bundles.s3.S3DagBundle`
(entrypoint.defaults), configured by the same AIRFLOW_ECS_DAGS_* settings as the
plain-folder sync (read from the process's environment, which the entrypoint
resolved at start).

Airflow builds a bundle in two ways (airflow.dag_processing.bundles.base):
- without a version, in the dag-processor: the bundle tracks the configured
  branch, tag or prefix. `initialize()` and `refresh()` run one pass of the DAG
  sync, which publishes AIRFLOW_ECS_DAGS_DIR as in plain-folder mode; that
  symlink is the bundle's path, and its revision (commit sha, listing digest)
  is the version the dag-processor records with each DAG it parses.
- with a version, for a task (and a callback) of a DAG run recorded at that
  version: `initialize()` builds that exact version once per machine into the
  version store (entrypoint.dagsync.versions) and holds it in use for the rest
  of the process; the bundle's path is that version's folder.

A version that can't be built raises DagSyncError naming the version and the
source, so the task fails (and is retried as its retries allow); no other
version is ever served in its place.

Versions no running task uses are removed after
AIRFLOW_ECS_DAGS_VERSION_KEEP_SECONDS, by whichever bundle initialises or
refreshes next on the machine (at most once a minute).
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import gc
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from airflow.dag_processing.bundles.base import BaseDagBundle

from entrypoint import config
from entrypoint.config import Settings
from entrypoint.dagsync import publish
from entrypoint.dagsync.versions import Use, VersionStore
from entrypoint.errors import ConfigError, DagSyncError
from entrypoint.log import log


class SyncedDagBundle(BaseDagBundle):
    """What the git and S3 bundles share; `source`, `_check`, `_build` and `source_text`
    are theirs."""

    supports_versioning = True
    source = ""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._use: Use | None = None
        self._tracked: str | None = None

    # --- settings and storage -----------------------------------------------------------
    @functools.cached_property
    def settings(self) -> Settings:
        settings = config.load(os.environ)
        if settings.dags_source != self.source:
            raise ConfigError(f"DAG bundle {self.name!r} ({type(self).__name__}) needs "
                              f"AIRFLOW_ECS_DAGS_SOURCE={self.source}, not "
                              f"{settings.dags_source!r}")
        return settings

    def source_text(self) -> str:
        raise NotImplementedError

    @functools.cached_property
    def store(self) -> VersionStore:
        # Waiting for another process's build of a version: its fetch and its checkout,
        # each bounded by the sync timeout.
        return VersionStore(Path(self.base_dir), self.source_text(),
                            wait=2.0 * self.settings.dags_sync_timeout + 10)

    def version_folder(self, version: str) -> Path:
        return self.store.path(version)

    @property
    def path(self) -> Path:
        if self.version is None:
            return self.settings.dags_dir
        return self.version_folder(self.version)

    # --- Airflow's interface ------------------------------------------------------------
    def initialize(self) -> None:
        if self.version is None:
            with self.lock():
                self._sync()
        elif self._use is None:
            self._check(self.version)
            try:
                with _long_lived_objects_frozen():
                    self._use, built = self.store.acquire(self.version, self._build)
            except (DagSyncError, ConfigError) as exc:
                why = "; ".join(exc.problems) if isinstance(exc, ConfigError) else str(exc)
                raise DagSyncError(f"DAG bundle {self.name!r}: version {self.version} of "
                                   f"{self.source_text()} could not be fetched: "
                                   f"{publish.scrub(why)}") from None
            log.info("DAG bundle %r at version %s (%s)", self.name, self.version,
                     "built" if built else "already on this machine")
        self._remove_unused()
        super().initialize()

    def refresh(self) -> None:
        if self.version is not None:
            raise DagSyncError(f"DAG bundle {self.name!r} is fixed at version {self.version}: "
                               "only the tracking bundle (no version) is refreshed")
        with self.lock():
            self._sync()
        self._remove_unused()

    def get_current_version(self) -> Any:  # a BundleVersion (str before Airflow 3.3)
        version = self.version or self._tracked
        if version is None:
            status = publish.read_status(self.settings)
            version = status.revision if status is not None else None
        if version is None:
            return None
        try:
            from airflow.dag_processing.bundles.base import BundleVersion
        except ImportError:  # Airflow before 3.3 takes the version as a string
            return version
        return BundleVersion(version=version)

    # --- tracking -----------------------------------------------------------------------
    def _sync(self) -> None:
        from entrypoint.dagsync import sync

        result = sync.sync_once(self.settings, os.environ, raw_env=os.environ)
        self._tracked = result.revision
        self._after_sync(result.revision)

    def _after_sync(self, revision: str) -> None:
        """What a source does after a tracking sync (the S3 source keeps its manifest)."""

    # --- versions -----------------------------------------------------------------------
    def _check(self, version: str) -> None:
        """Refuse a version this source can't have (DagSyncError naming it)."""

    def _build(self, folder: Path) -> None:
        raise NotImplementedError

    def _remove_unused(self) -> None:
        self.store.remove_unused_now_and_then(float(self.settings.dags_version_keep_seconds),
                                              in_use=self._airflow_in_use)

    def _airflow_in_use(self, version: str) -> bool:
        """Whether Airflow's own usage tracking holds version: its BundleVersionLock keeps
        a shared flock on `get_bundle_tracking_file(name, version)` while a task runs (and
        a callback), as its stale-bundle cleanup reads it. Both are Airflow's private
        interface (`:meta private:` in airflow.dag_processing.bundles.base): checked
        before use; when it is missing or changed, only this store's own locks count."""
        try:
            from airflow.dag_processing.bundles import base

            tracking = base.get_bundle_tracking_file(bundle_name=self.name, version=version)
        except Exception:  # noqa: BLE001 - absent or changed private interface
            return False
        if not isinstance(tracking, Path) or not tracking.is_file():
            return False
        try:
            with open(tracking, "rb") as handle:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    return True
                fcntl.flock(handle, fcntl.LOCK_UN)
        except OSError:
            return False
        return False

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, version={self.version!r})"


@contextlib.contextmanager
def _long_lived_objects_frozen() -> Iterator[None]:
    """Keep the objects that exist now out of the garbage collector's full collections
    while a version is built, then give them back to it.

    A task process holds Airflow and everything the worker preloaded (some 280,000
    tracked objects); the thousands of requests and files of a build trigger full
    collections, each walking all of them: two took about 1 s of an S3 build of 2,000
    objects (BENCHMARKS.md, versioned bundles). Celery's worker freezes its preloaded
    objects the same way before its pool forks (Airflow's celery_executor_utils)."""
    frozen_before = gc.get_freeze_count()
    gc.freeze()
    try:
        yield
    finally:
        if not frozen_before:  # objects someone else froze stay frozen
            gc.unfreeze()
