"""Submodules of a synced git commit (AIRFLOW_ECS_DAGS_GIT_SUBMODULES=true).

After the commit's tree is checked out, every submodule under the synced folder
(a gitlink in the tree, named in the commit's `.gitmodules`) is fetched at the
exact commit the superproject records, into the same bare cache, and checked
out at its path; then the same for its own submodules, at most MAX_DEPTH deep.

The steps are git plumbing, as for the superproject: `git submodule` needs a
work tree with a `.git` per submodule, which the published trees never carry.
Each URL from `.gitmodules` is checked like AIRFLOW_ECS_DAGS_GIT_URL (a
repository's content must not make git run commands) and fetched with the same
credentials, under git's transport policy for submodules (a `file://` URL only
where the git config allows it, e.g. `protocol.file.allow=always`); relative
URLs (`../lib.git`) are resolved against the URL of the repository that names
them, as git does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from entrypoint.errors import ConfigError, DagSyncError

MAX_DEPTH = 5
GITLINK_MODE = "160000"

# (args, env, what) -> stdout: gitsource's runner of one git command.
Git = Callable[..., str]


def resolve_url(base: str, url: str) -> str:
    """A `.gitmodules` URL made absolute against the URL of the repository naming it:
    `./x` below it, each `../` one path component up, as git resolves them.

    Written here because git's resolver is internal to `git submodule` (no plumbing
    command exposes it), which needs a work tree the published trees don't have."""
    if not url.startswith(("./", "../")):
        return url
    base = base.rstrip("/")
    scheme = base.find("://")
    # The path starts after the host: at the first "/" after "scheme://host", or at the
    # ":" of a scp-like user@host:path. Nothing above it can be climbed to.
    floor = base.find("/", scheme + 3) if scheme >= 0 else base.find(":")
    while url.startswith(("./", "../")):
        if url.startswith("./"):
            url = url[2:]
            continue
        url = url[3:]
        cut = base.rfind("/") if scheme >= 0 else max(base.rfind("/"), base.rfind(":"))
        if floor < 0 or cut < floor or base.endswith(":"):
            raise DagSyncError(f"a submodule URL climbs above the repository URL {base!r}")
        base = base[:cut + 1] if base[cut] == ":" else base[:cut]
    return base + url if base.endswith(":") else f"{base}/{url}"


def gitlinks(git: Git, cache: Path, sha: str, env: Mapping[str, str],
             under: str) -> dict[str, str]:
    """{path: recorded commit} of the submodules in commit sha, under folder `under`."""
    out = git(["--git-dir", str(cache), "ls-tree", "-r", "-z", "--full-tree", sha,
               *(["--", under] if under else [])], env, "listing the commit's submodules")
    links = {}
    for entry in out.split("\0"):
        meta, _, path = entry.partition("\t")
        fields = meta.split()
        if len(fields) == 3 and fields[0] == GITLINK_MODE:
            links[path] = fields[2]
    return links


def urls(git: Git, cache: Path, sha: str, env: Mapping[str, str]) -> dict[str, str]:
    """{path: url} from the commit's .gitmodules."""
    try:
        out = git(["--git-dir", str(cache), "config", "-z", "--blob", f"{sha}:.gitmodules",
                   "--get-regexp", r"^submodule\..*\.(path|url)$"], env,
                  "reading .gitmodules")
    except DagSyncError:
        return {}
    names: dict[str, dict[str, str]] = {}
    for item in out.split("\0"):
        key, _, value = item.partition("\n")
        name, dot, field = key[len("submodule."):].rpartition(".")
        if dot:
            names.setdefault(name, {})[field] = value
    return {entry["path"]: entry["url"] for entry in names.values()
            if "path" in entry and "url" in entry}


def check_out(git: Git, validate: Callable[[str], None], cache: Path, sha: str, url: str,
              tree: Path, env: Mapping[str, str], depth: list[str], under: str = "",
              level: int = 1) -> None:
    """Fetch and check out every submodule of commit sha (checked out at tree)."""
    links = gitlinks(git, cache, sha, env, under)
    if not links:
        return
    if level > MAX_DEPTH:
        raise DagSyncError(f"submodules nested more than {MAX_DEPTH} deep under {url}")
    named = urls(git, cache, sha, env)
    for path, commit in sorted(links.items()):
        if path not in named:
            raise DagSyncError(f"submodule {path!r} of commit {sha[:12]} has no URL in "
                               ".gitmodules")
        sub_url = resolve_url(url, named[path])
        try:
            validate(sub_url)
        except ConfigError as exc:
            raise DagSyncError(f"submodule {path!r} (.gitmodules of commit {sha[:12]}): "
                               f"{'; '.join(exc.problems)}") from None
        # As `git submodule` fetches: with GIT_PROTOCOL_FROM_USER=0, so git's own transport
        # policy applies (protocol.allow, protocol.<name>.allow): file:// and other
        # "user" transports only where the user's git config allows them.
        git(["--git-dir", str(cache), "fetch", "--quiet", "--no-tags", *depth, "--", sub_url,
             commit], {**env, "GIT_PROTOCOL_FROM_USER": "0"},
            f"fetching submodule {path!r} at {commit[:12]}")
        target = tree / path
        target.mkdir(parents=True, exist_ok=True)
        index = tree.parent / f".index-{tree.name}-{level}"
        try:
            git(["--git-dir", str(cache), "--work-tree", str(target), "read-tree", "-u",
                 "--reset", commit], {**env, "GIT_INDEX_FILE": str(index)},
                f"checking out submodule {path!r}")
        finally:
            index.unlink(missing_ok=True)
        check_out(git, validate, cache, commit, sub_url, target, env, depth, "", level + 1)
