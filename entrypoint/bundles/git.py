"""The git DAG bundle: a version is a commit sha (see the package docstring).

A version is fetched by its sha alone (`git fetch --depth 1 <url> <sha>`, the
sync's own fetch) into a bare cache shared by every task on the machine
(`<bundle folder>/repo.git`, used only under the version store's build lock),
unless the cache already holds it; then checked out as the sync checks out a
commit, linking the files unchanged since the most recently used version on the
machine. The server must let a commit be fetched by its sha, as for
AIRFLOW_ECS_DAGS_GIT_SUBMODULES (GitHub, GitLab and git's protocol v2 do).
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from urllib.parse import urlsplit

from entrypoint.bundles import SyncedDagBundle
from entrypoint.config import GIT_SSH_KEY_VAR, GIT_TOKEN_VAR
from entrypoint.dagsync import publish
from entrypoint.dagsync.versions import Use
from entrypoint.errors import DagSyncError
from entrypoint.log import log

_SHA = re.compile(r"^[0-9a-f]{40}$")
# Where a commit's tree can be browsed, by host (as Airflow's own git bundle knows them).
_BROWSE = {"github.com": "{url}/tree/{{version}}", "gitlab.com": "{url}/-/tree/{{version}}",
           "bitbucket.org": "{url}/src/{{version}}"}


class GitDagBundle(SyncedDagBundle):
    source = "git"

    def source_text(self) -> str:
        return publish.display_url(self.settings.dags_git_url or "")

    def version_folder(self, version: str) -> Path:
        folder = self.store.path(version)
        return folder / self.settings.dags_git_subdir if self.settings.dags_git_subdir else folder

    def _check(self, version: str) -> None:
        if not _SHA.match(version):
            raise DagSyncError(f"DAG bundle {self.name!r}: version {version!r} of "
                               f"{self.source_text()} is not a full commit sha")

    def _build(self, folder: Path) -> None:
        # Imported here: a task whose version the machine holds never builds, and every
        # task's start pays for what its bundle imports (BENCHMARKS.md, versioned bundles).
        from entrypoint.dagsync import gitsource, sync

        sha = self.version or ""
        settings = dataclasses.replace(self.settings, dags_state_dir=Path(self.base_dir),
                                       dags_git_ref=sha)
        env = os.environ
        token = sync.credential(GIT_TOKEN_VAR, env, env)
        ssh_key = sync.credential(GIT_SSH_KEY_VAR, env, env)
        cache = Path(self.base_dir) / "repo.git"
        cached = gitsource.has_commit(settings, env, cache, sha)
        if not cached:
            cache, fetched = gitsource.fetch_commit(settings, env, token, ssh_key)
            if fetched != sha:
                raise DagSyncError(f"fetching {sha} gave commit {fetched}")
        previous = None if settings.dags_git_submodules else self._previous()
        try:
            try:
                gitsource.build_tree(settings, env, cache, sha, folder, token, ssh_key,
                                     (previous[0].path, previous[1]) if previous else None)
            except DagSyncError:
                if not cached:
                    raise
                # The cache held the commit but could not check it out (a damaged pack):
                # fetch it again, which starts a damaged cache over.
                log.warning("checking out %s from the cache failed; fetching it again",
                            sha[:12])
                _empty(folder)
                cache, _ = gitsource.fetch_commit(settings, env, token, ssh_key)
                gitsource.build_tree(settings, env, cache, sha, folder, token, ssh_key)
        finally:
            if previous is not None:
                previous[0].release()
        content = gitsource.subdir_folder(folder, settings.dags_git_subdir, sha)
        dropped = publish.drop_escaping_links(content)
        if dropped:
            log.warning("DAG bundle %r: %d symbolic link(s) of commit %s point outside the "
                        "published folder and were left out: %s", self.name, len(dropped),
                        sha[:12], ", ".join(repr(p) for p in dropped[:10]))

    def _previous(self) -> tuple[Use, str] | None:
        """The most recently used version on the machine, held while its unchanged files
        are linked into the new one: (its subdir folder, its commit)."""
        for version in self.store.published()[:1]:
            use = self.store.hold(version, self.settings.dags_git_subdir)
            return (use, version) if use is not None else None
        return None

    def view_url_template(self) -> str | None:
        """A URL of the commit's tree on GitHub, GitLab or Bitbucket (over https), for the
        UI; None for other hosts. Never raises: the api-server and the dag-processor call
        it without initialising the bundle."""
        if self._view_url_template:
            return self._view_url_template
        try:
            return browse_template(self.settings.dags_git_url or "",
                                   self.settings.dags_git_subdir)
        except Exception:  # noqa: BLE001 - no link is better than a bundle that fails
            return None


def browse_template(url: str, subdir: str) -> str | None:
    """`https://host/org/repo/tree/{version}[/subdir]` for a repository URL on a known host."""
    match = re.match(r"^(?:ssh://)?[A-Za-z0-9._-]+@([A-Za-z0-9.-]+)[:/](.+)$", url)
    if match:
        url = f"https://{match[1]}/{match[2]}"
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname or parts.password:
        return None
    path = parts.path.removesuffix("/").removesuffix(".git")
    base = f"https://{parts.hostname}{path}"
    for host, template in _BROWSE.items():
        if parts.hostname == host or parts.hostname.endswith("." + host):
            found = template.format(url=base)
            return f"{found}/{subdir}" if subdir else found
    return None


def _empty(folder: Path) -> None:
    import shutil

    for entry in folder.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
