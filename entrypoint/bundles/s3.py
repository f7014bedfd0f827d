"""The S3 DAG bundle: a version is the digest of the prefix's listing (see the package
docstring).

The digest (the sync's revision) hashes every key with its ETag and size, sorted,
so it names one content of the prefix. Building a version needs that version's
manifest ({key: [etag, size]}), looked up in this order:
1. the current listing of the prefix, when its digest is the version (the common
   case: a task of a run that started since the last upload);
2. AIRFLOW_ECS_DAGS_S3_MANIFEST_URI, where the dag-processor's tracking bundle
   writes the manifest of every version it publishes (`<digest>.json`);
and a manifest whose digest is not the version is refused. Each object is then
fetched only while its ETag is the manifest's (If-Match), so a version is built
exactly or not at all: an object replaced or deleted since fails the build,
naming it. Objects unchanged since the most recently used version on the
machine are hard-linked from it, as the sync links from its published tree.

Not built: fetching replaced objects by their S3 object version id in a
versioned bucket; such a version fails to build once one of its objects is
replaced or deleted.
"""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from entrypoint import private_apis
from entrypoint.bundles import SyncedDagBundle
from entrypoint.dagsync import publish
from entrypoint.errors import DagSyncError
from entrypoint.log import log

if TYPE_CHECKING:
    from entrypoint.dagsync import s3fetch

# s3source and s3fetch (and s3fs with them) are imported where a version is built or a
# manifest kept: a task whose version the machine holds does neither, and every task's
# start pays for what its bundle imports (BENCHMARKS.md, versioned bundles).

_DIGEST = re.compile(r"^[0-9a-f]{16}$")


class S3DagBundle(SyncedDagBundle):
    source = "s3"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._kept: set[str] = set()  # manifests this process has written

    def source_text(self) -> str:
        return publish.scrub(self.settings.dags_s3_uri or "")

    def _check(self, version: str) -> None:
        if not _DIGEST.match(version):
            raise DagSyncError(f"DAG bundle {self.name!r}: version {version!r} of "
                               f"{self.source_text()} is not a listing digest (16 hex digits)")

    def _manifest_key(self, version: str) -> str | None:
        """bucket/key of version's manifest under AIRFLOW_ECS_DAGS_S3_MANIFEST_URI."""
        uri = self.settings.dags_s3_manifest_uri
        if not uri:
            return None
        from entrypoint.dagsync import s3source

        bucket, prefix = s3source.split_uri(uri)
        return f"{bucket}/{prefix}{version}.json"

    # --- tracking: keep each published version's manifest ------------------------------
    def _after_sync(self, revision: str) -> None:
        key = self._manifest_key(revision)
        if key is None or revision in self._kept:
            return
        from entrypoint.dagsync import s3fetch, s3source

        objects = s3source.read_manifest(publish.current_tree(self.settings))
        if s3source.revision(objects) != revision:
            log.warning("DAG bundle %r: the published tree's manifest is not version %s; "
                        "not keeping it", self.name, revision)
            return
        deadline = s3fetch.Deadline(self.settings.dags_sync_timeout)
        try:
            fs = s3source.filesystem(self.settings, os.environ)
            data = s3source.manifest_json(objects).encode()
            if private_apis.lookup(private_apis.S3FS_PIPE_FILE) is not None:
                writing = fs._pipe_file(path=key, data=data)
            else:  # fsspec's public, blocking form, off s3fs's event loop
                writing = asyncio.to_thread(fs.pipe_file, key, data)
            s3fetch.run(fs.loop, writing, deadline, f"writing s3://{key}")
        except Exception as exc:  # noqa: BLE001 - retried after the next refresh
            # Only versions older than the current one need it: the next refresh tries again.
            log.warning("DAG bundle %r: keeping the manifest of version %s at s3://%s failed "
                        "(%s: %s); workers can build this version only while it is current "
                        "(grant the dag-processor's task role s3:PutObject there)", self.name,
                        revision, key, type(exc).__name__, publish.scrub(str(exc))[:300])
            return
        self._kept.add(revision)

    # --- versions -----------------------------------------------------------------------
    def _build(self, folder: Path) -> None:
        from entrypoint.dagsync import s3fetch, s3source

        version = self.version or ""
        settings = self.settings
        deadline = s3fetch.Deadline(settings.dags_sync_timeout)
        fs = s3source.filesystem(settings, os.environ)
        objects = self._objects(fs, version, deadline)
        previous = None
        for recent in self.store.published()[:1]:
            previous = self.store.hold(recent)
        try:
            fetched = s3source.build_tree(fs, settings, os.environ, objects,
                                          previous.path if previous else None, folder,
                                          deadline, if_match=True)
        finally:
            if previous is not None:
                previous.release()
        log.info("DAG bundle %r: version %s built, %d object(s) downloaded, %d linked",
                 self.name, version, fetched, len(objects) - fetched)

    def _objects(self, fs: Any, version: str,
                 deadline: s3fetch.Deadline) -> dict[str, tuple[str, int]]:
        """The manifest of version (see the module docstring); DagSyncError without one."""
        from entrypoint.dagsync import s3fetch, s3source

        key = self._manifest_key(version)
        try:
            found = s3source.listing(fs, self.settings, deadline)
        except DagSyncError as exc:
            # The current content can't be listed or used (a key that can't be a file,
            # say): an older version may still be built from its manifest.
            if key is None:
                raise
            current = f"unknown: {exc}"
        else:
            current = s3source.revision(found.objects)
            if current == version:
                return found.objects
        if key is None:
            raise DagSyncError(f"it is not the prefix's current content (now version "
                               f"{current}) and no manifest of older versions is kept: set "
                               "AIRFLOW_ECS_DAGS_S3_MANIFEST_URI")
        try:
            if private_apis.lookup(private_apis.S3FS_CAT_FILE) is not None:
                reading = fs._cat_file(path=key)
            else:  # fsspec's public, blocking form, off s3fs's event loop
                reading = asyncio.to_thread(fs.cat_file, key)
            data = s3fetch.run(fs.loop, reading, deadline, f"reading s3://{key}")
        except FileNotFoundError:
            raise DagSyncError(f"it is not the prefix's current content (now version "
                               f"{current}) and s3://{key} does not exist (no dag-processor "
                               "kept its manifest)") from None
        except PermissionError:
            raise DagSyncError(f"access denied reading s3://{key}: grant the task role "
                               "s3:GetObject there") from None
        except DagSyncError:
            raise
        except Exception as exc:  # noqa: BLE001 - whatever the endpoint's answer made s3fs raise
            raise DagSyncError(f"reading s3://{key} failed: {type(exc).__name__}: "
                               f"{publish.scrub(str(exc))[:300]}") from None
        try:
            objects = s3source.parse_manifest(data)
        except ValueError as exc:
            raise DagSyncError(f"s3://{key} is {exc}") from None
        if s3source.revision(objects) != version:
            raise DagSyncError(f"s3://{key} lists another content (version "
                               f"{s3source.revision(objects)}); refusing it")
        s3source.check_keys(objects, self.settings, self.source_text())
        return objects

    def view_url_template(self) -> str | None:
        """The prefix in the S3 console (the version is not part of it). Never raises."""
        if self._view_url_template:
            return self._view_url_template
        try:
            from entrypoint.dagsync import s3source

            bucket, prefix = s3source.split_uri(self.settings.dags_s3_uri or "")
        except Exception:  # noqa: BLE001 - no link is better than a bundle that fails
            return None
        if not bucket:
            return None
        return (f"https://s3.console.aws.amazon.com/s3/buckets/{quote(bucket)}"
                f"?prefix={quote(prefix)}")
