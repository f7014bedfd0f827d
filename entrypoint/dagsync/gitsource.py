"""DAGs from git: the git command line over a persistent bare cache.

Every step is one git plumbing command (init, fetch, rev-parse, read-tree),
run through `procs.run_group`: git leads a process group of its own, and the
whole group (its `git remote-http` and `ssh` helpers included) is stopped
when it times out or a SIGTERM arrives. GitPython (installed anyway, for
Airflow's git provider) is not used here: it would add nothing but a wrapper
around the same commands, its import alone costs a sizeable part of a whole
first sync (BENCHMARKS.md: import costs, and the git sync), and its URL
handling is where its command-injection CVEs were.

The cache (`<state dir>/repo.git`) makes a refresh a shallow fetch of one
ref. Each new commit is checked out into a new tree (through a throw-away
index, so the bare cache never gets a work tree), then published.

Credentials never reach a log line, an error, a process argument list or the
repository's config: an HTTPS token is handed to git by a credential helper,
given through git's GIT_CONFIG_* environment, that reads it from the child's
environment (no script file: /tmp is often mounted noexec, as Docker's tmpfs
is by default); an SSH key is written 0600 in a
private temporary directory and used with strict host-key checking against
the configured known_hosts. Both are read again on every sync, so a rotated
credential works without a restart. URLs that make git run commands
(`ext::` and other `transport::` forms) or look like options are refused
(GitPython's CVE-2022-24439 and CVE-2023-40267 came through those).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from urllib.parse import urlsplit

from entrypoint import procs
from entrypoint.config import Settings
from entrypoint.dagsync.publish import display_url, scrub
from entrypoint.errors import ConfigError, DagSyncError
from entrypoint.log import log, mask

_SHA = re.compile(r"^[0-9a-f]{40}$")
_TRANSPORT_HELPER = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*::")
_ALLOWED_SCHEMES = ("https://", "http://", "ssh://", "git://", "file://")
_SCP_LIKE = re.compile(r"^[A-Za-z0-9._-]+@[A-Za-z0-9._-]+:[^/]")
_QUOTED_LOCATION = re.compile(r"'(?:/|[A-Za-z][A-Za-z0-9+.-]*://)[^'\n]*'")
# user:password@ at the start of a URL's authority, or of a scp-like user:password@host:path
_PASSWORD = re.compile(r"^(?:[A-Za-z][A-Za-z0-9+.-]*://)?[^@/:]*:(?P<pw>[^@/]*)@")

# git runs a helper starting with "!" through the shell with the action appended;
# it answers only `get`, from the child's environment.
CREDENTIAL_HELPER = ('!f() { test "$1" = get && printf \'username=%s\\npassword=%s\\n\' '
                     '"$AIRFLOW_ECS_GIT_USERNAME" "$AIRFLOW_ECS_GIT_PASSWORD"; }; f')


def _text(value: str, variable: str, what: str) -> None:
    """Refuse a value no command line can carry: a byte that is no character (from a
    non-UTF-8 environment), a NUL, other control characters."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigError(f"invalid setting: {variable} is not UTF-8 text (a byte that is no "
                          f"character); set it to {what}") from None
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise ConfigError(f"invalid setting: {variable} holds a control character; set it to "
                          f"{what}")


def _password(url: str) -> str | None:
    """The password a git URL carries, in any of its forms, or None."""
    if "://" in url:
        try:
            return urlsplit(url).password
        except ValueError:
            pass
    match = _PASSWORD.search(url)
    return match["pw"] if match else None


def validate_url(url: str, variable: str = "AIRFLOW_ECS_DAGS_GIT_URL") -> None:
    """Refuse a git URL the sync won't fetch, with a ConfigError naming variable.

    The one check of a git URL: the sync runs it on AIRFLOW_ECS_DAGS_GIT_URL and on every
    submodule URL, and `airflow-ecs check` can run it (`entrypoint.dagsync.problems`)."""
    password = _password(url)
    if password:
        mask(password)
        raise ConfigError(f"invalid setting: {variable}={display_url(url)!r} must not carry "
                          "credentials; give the token in AIRFLOW_ECS_DAGS_GIT_TOKEN (or an SSH "
                          "key in AIRFLOW_ECS_DAGS_GIT_SSH_KEY)")
    _text(url, variable, "a git URL, e.g. https://github.com/acme/dags.git")
    if url.startswith("-") or _TRANSPORT_HELPER.match(url):
        raise ConfigError(f"invalid setting: {variable}={display_url(url)!r} is "
                          "refused: transport helpers (ext::, fd::, ...) and option-like "
                          "values can run commands")
    if not (url.startswith(_ALLOWED_SCHEMES) or _SCP_LIKE.match(url)):
        raise ConfigError(f"invalid setting: {variable}={display_url(url)!r} must "
                          "be an https, http, ssh, git or file URL, or user@host:path")
    if "@" in url.split("://", 1)[-1].split("/", 1)[0] and url.startswith(("https://",
                                                                            "http://")):
        raise ConfigError(f"invalid setting: {variable} must not carry "
                          "credentials; give the token in AIRFLOW_ECS_DAGS_GIT_TOKEN")
    if "://" in url:
        try:
            urlsplit(url).port  # noqa: B018 - raises on a port that is no number
        except ValueError:
            raise ConfigError(f"invalid setting: {variable}={display_url(url)!r} is not a "
                              "valid URL (its host or port)") from None


def validate_ref(ref: str) -> None:
    """Refuse what git would not take as a branch, tag or commit (git's ref-name rules,
    `git check-ref-format`, for the characters allowed here: written out rather than run,
    so `airflow-ecs check` needs no git)."""
    parts = ref.split("/")
    if (ref.startswith("-") or not re.match(r"^[A-Za-z0-9._/\-]+$", ref) or ".." in ref
            or ref.endswith((".", "/")) or ref.startswith("/") or "//" in ref
            or any(part.startswith(".") or part.endswith(".lock") for part in parts)):
        raise ConfigError(f"invalid setting: AIRFLOW_ECS_DAGS_GIT_REF={ref!r} must be a branch, "
                          "tag or full commit sha")


def validate_subdir(subdir: str) -> None:
    _text(subdir, "AIRFLOW_ECS_DAGS_GIT_SUBDIR", "a folder of the repository, e.g. dags")
    if subdir.startswith("/") or any(part in ("..", ".") for part in subdir.split("/")):
        raise ConfigError(f"invalid setting: AIRFLOW_ECS_DAGS_GIT_SUBDIR={subdir!r} must be a "
                          "folder inside the repository, relative to its root (no '..')")


def subdir_folder(tree: Path, subdir: str, sha: str) -> Path:
    """The published folder of a checked-out commit: tree/subdir, which must be a real
    folder of the commit. A symbolic link there (`dags -> /etc`) would publish whatever it
    names, outside the repository."""
    folder = tree
    for part in [p for p in subdir.split("/") if p]:
        folder = folder / part
        try:
            found = os.lstat(folder)
        except OSError:
            found = None
        if found is not None and stat.S_ISLNK(found.st_mode):
            raise DagSyncError(
                f"AIRFLOW_ECS_DAGS_GIT_SUBDIR={subdir!r}: {folder.relative_to(tree)!s} is a "
                f"symbolic link at commit {sha[:12]}, not a folder; point the variable at "
                "a real folder of the repository (the one the link names, if it is in the "
                "repository)")
        if found is None or not stat.S_ISDIR(found.st_mode):
            raise DagSyncError(f"AIRFLOW_ECS_DAGS_GIT_SUBDIR={subdir!r} is not a folder at "
                               f"commit {sha[:12]}; set it to a folder of the repository")
    return folder


@contextlib.contextmanager
def credentials(settings: Settings, env: Mapping[str, str], token: str | None,
                ssh_key: str | None) -> Iterator[dict[str, str]]:
    """Environment for git children carrying the credentials; files removed afterwards."""
    child = {k: v for k, v in env.items() if not k.startswith(("AIRFLOW", "GIT_"))}
    child.update({"GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_NOSYSTEM": "1",
                  "GIT_ASKPASS": "/bin/false", "SSH_ASKPASS": "/bin/false",
                  # Paths given to git (the subdir) are paths, never pathspec patterns.
                  "GIT_LITERAL_PATHSPECS": "1"})
    # The user's own GIT_CONFIG_* entries (protocol.file.allow=always, say) are kept, and
    # the sync's follow them, so that its own settings win.
    config = user_config(env)
    workdir: Path | None = None  # private, for the SSH key files only
    try:
        if token:
            mask(token)
            # The empty value first clears any helper from the user's or repository's
            # config, so the token goes to no other helper.
            config += [("credential.helper", ""), ("credential.helper", CREDENTIAL_HELPER)]
            child.update({"AIRFLOW_ECS_GIT_USERNAME": settings.dags_git_username,
                          "AIRFLOW_ECS_GIT_PASSWORD": token})
        if config:
            child["GIT_CONFIG_COUNT"] = str(len(config))
            for i, (key, value) in enumerate(config):
                child[f"GIT_CONFIG_KEY_{i}"] = key
                child[f"GIT_CONFIG_VALUE_{i}"] = value
        if ssh_key:
            if not settings.dags_git_known_hosts:
                raise ConfigError("required setting: AIRFLOW_ECS_DAGS_GIT_KNOWN_HOSTS with an "
                                  "SSH key (the host key lines, e.g. from ssh-keyscan)")
            workdir = Path(tempfile.mkdtemp(prefix="airflow-ecs-git-"))
            os.chmod(workdir, 0o700)
            key_file = workdir / "id"
            fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(ssh_key if ssh_key.endswith("\n") else ssh_key + "\n")
            known = workdir / "known_hosts"
            known.write_text(settings.dags_git_known_hosts.replace("\\n", "\n") + "\n")
            child["GIT_SSH_COMMAND"] = (
                f"ssh -i {key_file} -o IdentitiesOnly=yes -o StrictHostKeyChecking=yes "
                f"-o UserKnownHostsFile={known} -o BatchMode=yes")
        yield child
    finally:
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)


def user_config(env: Mapping[str, str]) -> list[tuple[str, str]]:
    """The git settings given in the environment as git reads them (GIT_CONFIG_COUNT,
    GIT_CONFIG_KEY_n, GIT_CONFIG_VALUE_n); a malformed set is ignored, as git fails on it."""
    try:
        count = int(env.get("GIT_CONFIG_COUNT", "0"))
    except ValueError:
        return []
    entries = [(env.get(f"GIT_CONFIG_KEY_{i}"), env.get(f"GIT_CONFIG_VALUE_{i}"))
               for i in range(max(0, min(count, 1000)))]
    return [(k, v) for k, v in entries if k and v is not None]


# What git's stderr says went wrong, checked in order: (phrases, reason, whether the
# remote or the credentials refused: a new cache would only repeat such a failure).
# HTTP statuses are matched as curl words them, never as bare digits: a commit sha or a
# path holds "403" often enough to turn a stale lock file into "bad credentials".
_REASONS: tuple[tuple[tuple[str, ...], str, bool], ...] = (
    (("could not resolve host", "name or service not known"),
     "unreachable host (DNS lookup failed)", True),
    (("connection refused", "timed out", "couldn't connect"), "unreachable host", True),
    (("host key verification failed",),
     "SSH host key not in AIRFLOW_ECS_DAGS_GIT_KNOWN_HOSTS", True),
    (("authentication failed", "could not read username", "returned error: 401",
      "returned error: 403", "permission denied", "could not read password"),
     "bad credentials", True),
    (("couldn't find remote ref", "not our ref", "unknown revision"), "unknown ref", False),
    (("not allowed",),
     "transport not allowed by git's protocol policy (protocol.allow, protocol.<name>.allow: "
     "file is allowed for the repository itself only, not for its submodules, unless set, "
     "e.g. GIT_CONFIG_COUNT=1 GIT_CONFIG_KEY_0=protocol.file.allow GIT_CONFIG_VALUE_0=always)",
     True),
    (("not found", "does not appear to be a git repository"), "repository not found", True),
)


def _classify(stderr: str) -> tuple[str, bool]:
    """(reason, whether the remote or the credentials refused) for a git stderr."""
    # Paths and URLs git quotes are the caller's words, not git's verdict.
    text = _QUOTED_LOCATION.sub("''", stderr).lower()
    for phrases, reason, remote in _REASONS:
        if any(phrase in text for phrase in phrases):
            return reason, remote
    return "git failed", False


class GitError(DagSyncError):
    """A git command failed; `remote` when the remote or the credentials refused it."""

    def __init__(self, message: str, remote: bool) -> None:
        super().__init__(message)
        self.remote = remote


def _git(args: list[str], env: Mapping[str, str], timeout: float, what: str,
         cwd: Path | None = None, stdin: str | None = None) -> str:
    try:
        # git's helpers (git remote-http, ssh) run in its process group: stopped with it.
        result = procs.run_group(["git", *args], env=env, timeout=timeout,
                                 cwd=str(cwd) if cwd else None,
                                 input_bytes=stdin.encode() if stdin is not None else None)
    except subprocess.TimeoutExpired:
        raise DagSyncError(f"{what}: no answer within AIRFLOW_ECS_DAGS_SYNC_TIMEOUT="
                           f"{timeout:g}s") from None
    except OSError as exc:
        raise DagSyncError(f"{what}: cannot run git: {exc.strerror}") from None
    if result.returncode != 0:
        stderr = scrub(result.stderr.decode(errors="replace")).strip()
        lines = stderr.splitlines()
        # git's own verdicts, without the advice it prints after them
        last = "\n".join(([line for line in lines if line.startswith(("fatal:", "error:"))]
                          or lines)[-4:])
        reason, remote = _classify(stderr)
        raise GitError(f"{what}: {reason}: {last}", remote)
    return result.stdout.decode(errors="replace").strip()


def fetch_commit(settings: Settings, env: Mapping[str, str], token: str | None,
                 ssh_key: str | None) -> tuple[Path, str]:
    """Fetch the ref into the cache; return (cache, commit sha)."""
    url = settings.dags_git_url or ""
    validate_url(url)
    validate_ref(settings.dags_git_ref)
    validate_subdir(settings.dags_git_subdir)
    cache = settings.dags_state_dir / "repo.git"
    with credentials(settings, env, token, ssh_key) as child:
        if (cache / "HEAD").exists():
            try:
                return cache, _fetch(settings, child, cache, url, new_cache=False)
            except GitError as exc:
                if exc.remote:
                    raise
                # A sync killed mid-fetch can leave a lock file behind (every later fetch
                # then fails), a damaged pack can make objects vanish: start over, once.
                log.warning("git fetch into the cache failed (%s); fetching again into a new "
                            "cache", exc)
        shutil.rmtree(cache, ignore_errors=True)
        cache.parent.mkdir(parents=True, exist_ok=True)
        _git(["init", "--quiet", "--bare", str(cache)], child,
             float(settings.dags_sync_timeout), "git init")
        return cache, _fetch(settings, child, cache, url, new_cache=True)


def has_commit(settings: Settings, env: Mapping[str, str], cache: Path, sha: str) -> bool:
    """Whether the cache already holds commit sha (then no fetch is needed for it)."""
    if not (cache / "HEAD").exists():
        return False
    with credentials(settings, env, None, None) as child:
        try:
            _git(["--git-dir", str(cache), "cat-file", "-e", f"{sha}^{{commit}}"], child,
                 float(settings.dags_sync_timeout), f"looking for commit {sha[:12]}")
        except DagSyncError:
            return False
    return True


def _depth(settings: Settings) -> list[str]:
    return [f"--depth={settings.dags_git_depth}"] if settings.dags_git_depth else []


def _fetch(settings: Settings, child: Mapping[str, str], cache: Path, url: str,
           new_cache: bool) -> str:
    """Fetch the ref into the cache; return its commit sha."""
    timeout = float(settings.dags_sync_timeout)
    git_dir = ["--git-dir", str(cache)]
    if new_cache:
        # A new cache has nothing to pack or prune: skip fetch's maintenance run (a child
        # process). Later fetches keep it, as packs pile up one per fetch.
        git_dir += ["-c", "maintenance.auto=false"]
    # The URL is passed per call, never stored in the cache's config.
    ref = settings.dags_git_ref
    _git([*git_dir, "fetch", "--quiet", "--no-tags", *_depth(settings), "--", url,
          f"+{ref}:refs/airflow-ecs/sync" if not _SHA.match(ref) else ref],
         child, timeout, f"fetching {ref} from {display_url(url)}")
    target = "refs/airflow-ecs/sync" if not _SHA.match(ref) else "FETCH_HEAD"
    return _git([*git_dir, "rev-parse", "--verify", f"{target}^{{commit}}"], child, timeout,
                f"resolving {ref}")


def build_tree(settings: Settings, env: Mapping[str, str], cache: Path, sha: str,
               tree: Path, token: str | None, ssh_key: str | None,
               previous: tuple[Path, str] | None = None) -> int | None:
    """Check commit sha out into the empty directory tree; return the files written,
    or None when every file of the commit was (a full checkout).

    With `previous` (the published folder and its commit), only what changed between
    the two commits is written: every other file is hard-linked from the published
    tree, as the S3 source does with unchanged objects. A commit touching one file of
    thousands then costs one file write instead of a full checkout. Git writes each
    changed file anew (never through a link), so the published tree never changes.
    """
    timeout = float(settings.dags_sync_timeout)
    with credentials(settings, env, token, ssh_key) as child:
        child = {**child, "GIT_INDEX_FILE": str(tree.parent / f".index-{tree.name}")}
        git = ["--git-dir", str(cache), "--work-tree", str(tree)]
        try:
            changed = _changes(cache, previous[1], sha, settings.dags_git_subdir, child,
                               timeout) if previous else None
            if changed is None:
                # One process reads the commit and writes its files, as `git clone` does.
                _git([*git, "read-tree", "-u", "--reset", sha], child, timeout,
                     "checking out the commit")
                if settings.dags_git_submodules:
                    from entrypoint.dagsync import submodules

                    submodules.check_out(
                        lambda args, env, what: _git(args, env, timeout, what),
                        lambda sub_url: validate_url(sub_url, "its URL"),
                        cache, sha, settings.dags_git_url or "", tree, child, _depth(settings),
                        settings.dags_git_subdir)
                return None
            assert previous is not None  # changes are only listed against a previous tree
            _git([*git, "read-tree", sha], child, timeout, "reading the commit")
            _link_unchanged(previous[0], tree, settings.dags_git_subdir, set(changed))
            written = [path for path, status in changed.items() if status != "D"]
            if written:
                _git([*git, "checkout-index", "-f", "-z", "--stdin"], child, timeout,
                     "checking out the changed files", stdin="\0".join(written) + "\0")
            return len(written)
        finally:
            Path(child["GIT_INDEX_FILE"]).unlink(missing_ok=True)


def _changes(cache: Path, old: str, new: str, subdir: str, child: Mapping[str, str],
             timeout: float) -> dict[str, str] | None:
    """{path: A|M|D|T} between two commits under subdir; None when the old commit is
    gone from the cache (then the tree is checked out in full)."""
    try:
        out = _git(["--git-dir", str(cache), "diff-tree", "-r", "-z", "--no-renames",
                    "--name-status", old, new, "--", subdir or "."], child, timeout,
                   "comparing with the published commit")
    except DagSyncError:
        return None
    if "\ufffd" in out:
        return None  # a path that isn't UTF-8: check out in full rather than guess
    fields = [f for f in out.split("\0") if f]
    return {fields[i + 1]: fields[i][0] for i in range(0, len(fields) - 1, 2)}


def _link_unchanged(published: Path, tree: Path, subdir: str, changed: set[str]) -> None:
    """Hard-link every published file whose path didn't change into the new tree."""
    root = tree / subdir if subdir else tree
    for folder, dirs, files in os.walk(published):
        relative = Path(folder).relative_to(published)
        target_dir = root / relative
        target_dir.mkdir(parents=True, exist_ok=True)
        for name in [*files, *(d for d in dirs if (Path(folder) / d).is_symlink())]:
            rel = (relative / name).as_posix()
            if (f"{subdir}/{rel}" if subdir else rel) in changed:
                continue
            source = Path(folder) / name
            if source.is_symlink():
                os.symlink(os.readlink(source), target_dir / name)
            elif source.is_file():  # a regular file of the published tree, never a link's
                os.link(source, target_dir / name, follow_symlinks=False)
