"""DAGs from S3, with s3fs: incremental, parallel, verified, into a new tree.

One listing of the prefix decides everything: objects whose ETag and size
match the published tree's manifest are hard-linked from it (published
trees are never written again, so sharing their files is safe); the others
are downloaded in parallel into the new tree (s3fetch: URLs presigned by
s3fs, bytes moved by aiohttp), and their sizes checked before the tree is
published. Deleted objects are simply not in the
new tree. Every object is copied as it is, `.airflowignore` included; the
sync's own record of a tree's objects (its manifest) is kept beside the tree,
never in it. A listing holding a key that can't be a file as named is refused
whole; keys naming no path inside the folder (`..`, `.`, empty parts) are
skipped with a warning.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from entrypoint import private_apis
from entrypoint.config import Settings
from entrypoint.dagsync import s3fetch
from entrypoint.dagsync.publish import scrub, sidecar, trees_dir
from entrypoint.errors import ConfigError, DagSyncError
from entrypoint.optional_imports import absent


def filesystem(settings: Settings, env: Mapping[str, str]) -> Any:  # an s3fs.S3FileSystem
    # aiobotocore imports httpx, its optional second HTTP backend, whenever it is
    # installed, though s3fs only uses aiohttp: a sixth of a 2,000-object first
    # sync's CPU (profiled; `make bench` measures the whole sync).
    with absent("httpx2", "httpx"):
        import s3fs
        from aiobotocore.session import AioSession

    client_kwargs = {}
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    if region:
        client_kwargs["region_name"] = region
    endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
    if endpoint:
        client_kwargs["endpoint_url"] = endpoint
    # Listing timestamps stay strings: only keys, ETags and sizes are used, and
    # parsing 2,000 dates with dateutil was half the listing's CPU.
    session = AioSession()
    session.get_component("response_parser_factory").set_parser_defaults(
        timestamp_parser=str)
    # SigV4 for the presigned GETs too (botocore presigns S3 with SigV2 by default,
    # which regions opened since 2014 refuse).
    return s3fs.S3FileSystem(session=session, client_kwargs=client_kwargs,
                             use_listings_cache=False,
                             config_kwargs={"signature_version": "s3v4"})


def validate_uri(uri: str) -> None:
    """Refuse an AIRFLOW_ECS_DAGS_S3_URI no request could carry (config.load checks its
    shape; this, what only the sync would trip on)."""
    try:
        uri.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigError(f"invalid setting: AIRFLOW_ECS_DAGS_S3_URI={uri!r} is not UTF-8 "
                          "text (a byte that is no character): set it to s3://BUCKET/PREFIX/"
                          ) from None
    if not uri.startswith("s3://") or any(ord(c) < 0x20 or ord(c) == 0x7F for c in uri):
        raise ConfigError(f"invalid setting: AIRFLOW_ECS_DAGS_S3_URI={uri!r} must be "
                          "s3://BUCKET/PREFIX/, without control characters")


def split_uri(uri: str) -> tuple[str, str]:
    rest = uri[len("s3://"):]
    bucket, _, prefix = rest.partition("/")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    return bucket, prefix


@dataclass
class Listing:
    objects: dict[str, tuple[str, int]]  # {relative key: (etag, size)}
    skipped: list[str]  # keys that name no path inside the folder


def listing(fs: Any, settings: Settings, deadline: s3fetch.Deadline) -> Listing:
    """Every object under the prefix; DagSyncError when one of them can't be a file."""
    uri = settings.dags_s3_uri or ""
    validate_uri(uri)
    bucket, prefix = split_uri(uri)
    root = f"{bucket}/{prefix}"
    if private_apis.lookup(private_apis.S3FS_FIND) is not None:
        listed = fs._find(path=root, detail=True, withdirs=False)
    else:  # fsspec's public, blocking form, off s3fs's event loop
        listed = asyncio.to_thread(fs.find, root, detail=True, withdirs=False)
    try:
        # The listing is the only request an unchanged refresh makes.
        found = s3fetch.run(fs.loop, listed, deadline, f"listing s3://{root}")
    except PermissionError:
        raise DagSyncError(f"access denied listing s3://{root}: grant the task role "
                           "s3:ListBucket on the bucket and s3:GetObject on the prefix") from None
    except FileNotFoundError:
        raise DagSyncError(f"bucket {bucket} does not exist: check AIRFLOW_ECS_DAGS_S3_URI"
                           ) from None
    except DagSyncError:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever the endpoint's answer made s3fs raise
        raise DagSyncError(f"listing s3://{root} failed: {type(exc).__name__}: "
                           f"{scrub(str(exc))[:300]}") from None
    objects, skipped = {}, []
    for key, info in found.items():
        if info.get("type") == "directory" or key.endswith("/"):
            continue
        relative = key[len(root):] if key.startswith(root) else key.split("/", 1)[-1]
        if not relative or any(part in ("", ".", "..") for part in relative.split("/")):
            # `..`, `.`, empty components and a leading `/` (an "absolute" key): no path
            # inside the DAG folder has that name (aws s3 sync skips them too).
            skipped.append(relative)
            continue
        objects[relative] = (str(info.get("ETag", "")).strip('"'), int(info.get("size", 0)))
    check_keys(objects, settings, f"s3://{root}")
    return Listing(objects, sorted(skipped))


def check_keys(objects: Mapping[str, object], settings: Settings, root: str) -> None:
    """Refuse a listing holding a key that can't be a file of the tree as it is named: a
    key that is also the folder of other keys (`a` beside `a/b.py`), a name longer than
    the filesystem allows, a NUL byte. Publishing the rest would publish something the
    bucket doesn't hold."""
    base = trees_dir(settings)
    try:
        name_max = os.pathconf(base if base.is_dir() else "/", "PC_NAME_MAX")
        path_max = os.pathconf(base if base.is_dir() else "/", "PC_PATH_MAX")
    except (OSError, ValueError):
        name_max, path_max = 255, 4096
    # The tree's own path comes first: leave room for it (its name is a revision and a time).
    room = path_max - len(os.fsencode(base)) - 64
    for key in sorted(objects):
        why = None
        if "\0" in key:
            why = "it holds a NUL byte, which no file name can"
        elif any(len(os.fsencode(part)) > name_max for part in key.split("/")):
            why = f"a part of it is longer than the {name_max} bytes a file name can hold"
        elif len(os.fsencode(key)) > room:
            why = "it is longer than a path on this filesystem can be"
        else:
            parts = key.split("/")
            for i in range(1, len(parts)):
                if "/".join(parts[:i]) in objects:
                    why = (f"{'/'.join(parts[:i])!r} is an object too, so it can't also be "
                           "the folder holding this one")
                    break
        if why:
            raise DagSyncError(f"object {root + key!r} can't be a file of the DAG folder: "
                               f"{why}. Rename or delete the object under "
                               "AIRFLOW_ECS_DAGS_S3_URI; the last good tree is kept")


def revision(objects: Mapping[str, tuple[str, int]]) -> str:
    digest = hashlib.sha256()
    for key in sorted(objects):
        etag, size = objects[key]
        digest.update(f"{key}\0{etag}\0{size}\n".encode())
    return digest.hexdigest()[:16]


def read_manifest(tree: Path | None) -> dict[str, tuple[str, int]]:
    """The objects a tree was built from, kept beside it (a tree from before the manifest
    moved there has none: its files are all fetched again once)."""
    if tree is None:
        return {}
    try:
        return parse_manifest(sidecar(tree).read_bytes())
    except (OSError, ValueError):
        return {}


def parse_manifest(data: bytes) -> dict[str, tuple[str, int]]:
    """{key: (etag, size)} from a manifest's JSON; ValueError when it is none."""
    try:
        found = json.loads(data)
        return {str(k): (str(v[0]), int(v[1])) for k, v in found.items()}
    except (ValueError, TypeError, AttributeError, IndexError, KeyError,
            RecursionError) as exc:
        raise ValueError(f"not a manifest ({type(exc).__name__})") from None


def manifest_json(objects: Mapping[str, tuple[str, int]]) -> str:
    return json.dumps({k: list(v) for k, v in objects.items()})


def _has(path: Path, size: int) -> bool:
    """Whether path is a regular file of that size (a published file lost or edited by
    hand is fetched again rather than linked)."""
    try:
        found = os.stat(path, follow_symlinks=False)
    except OSError:
        return False
    return stat.S_ISREG(found.st_mode) and found.st_size == size


def build_tree(fs: Any, settings: Settings, env: Mapping[str, str],
               objects: Mapping[str, tuple[str, int]], previous: Path | None,
               tree: Path, deadline: s3fetch.Deadline, if_match: bool = False) -> int:
    """Fill tree; return how many objects were downloaded.

    if_match: download each object only while its ETag is the listed one (a tree that
    must be exactly one version of the prefix, never a mix with later uploads)."""
    bucket, prefix = split_uri(settings.dags_s3_uri or "")
    old = read_manifest(previous)
    pairs = []
    etags = {}
    folders: set[Path] = set()
    for key, (etag, size) in objects.items():
        target = tree / key
        if target.parent not in folders:
            target.parent.mkdir(parents=True, exist_ok=True)
            folders.add(target.parent)
        if previous is not None and old.get(key) == (etag, size) and _has(previous / key, size):
            os.link(previous / key, target, follow_symlinks=False)
        else:
            pairs.append((f"{bucket}/{prefix}{key}", target))
            if if_match and etag:
                etags[f"{bucket}/{prefix}{key}"] = etag
    s3fetch.fetch(fs, pairs, settings.dags_s3_concurrency, env, deadline, etags)
    for key, (_, size) in objects.items():
        try:
            complete = os.stat(tree / key).st_size == size
        except OSError:
            complete = False
        if not complete:
            raise DagSyncError(f"s3://{bucket}/{prefix}{key!r} arrived incomplete; not "
                               "publishing this sync")
    sidecar(tree).write_text(manifest_json(objects))
    return len(pairs)
