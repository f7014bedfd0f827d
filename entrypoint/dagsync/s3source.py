"""DAGs from S3, with s3fs: incremental, parallel, verified, into a new tree.

One listing of the prefix decides everything: objects whose ETag and size
match the published tree's manifest are hard-linked from it (published
trees are never written again, so sharing their files is safe); the others
are downloaded in parallel into the new tree (s3fetch: URLs presigned by
s3fs, bytes moved by aiohttp), and their sizes checked before the tree is
published. Deleted objects are simply not in the
new tree. Every object is copied as it is, `.airflowignore` included.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

from entrypoint.config import Settings
from entrypoint.dagsync import s3fetch
from entrypoint.errors import DagSyncError
from entrypoint.optional_imports import absent

MANIFEST = ".airflow-ecs-manifest.json"


def filesystem(settings: Settings, env: Mapping[str, str]):
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


def split_uri(uri: str) -> tuple[str, str]:
    rest = uri[len("s3://"):]
    bucket, _, prefix = rest.partition("/")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    return bucket, prefix


def listing(fs, settings: Settings) -> dict[str, tuple[str, int]]:
    """{relative key: (etag, size)} of every object under the prefix."""
    bucket, prefix = split_uri(settings.dags_s3_uri or "")
    root = f"{bucket}/{prefix}"
    try:
        # The listing is the only request an unchanged refresh makes.
        found = fs.find(root, detail=True, withdirs=False)
    except PermissionError:
        raise DagSyncError(f"access denied listing s3://{root}: grant the task role "
                           "s3:ListBucket on the bucket and s3:GetObject on the prefix") from None
    except FileNotFoundError:
        raise DagSyncError(f"bucket {bucket} does not exist") from None
    except OSError as exc:
        raise DagSyncError(f"listing s3://{root} failed: {type(exc).__name__}: {exc}") from None
    objects = {}
    for key, info in found.items():
        if info.get("type") == "directory" or key.endswith("/"):
            continue
        relative = key[len(root):] if key.startswith(root) else key.split("/", 1)[-1]
        if not relative or PurePosixPath(relative).is_absolute() or ".." in \
                PurePosixPath(relative).parts:
            continue
        objects[relative] = (str(info.get("ETag", "")).strip('"'), int(info.get("size", 0)))
    return objects


def revision(objects: Mapping[str, tuple[str, int]]) -> str:
    digest = hashlib.sha256()
    for key in sorted(objects):
        etag, size = objects[key]
        digest.update(f"{key}\0{etag}\0{size}\n".encode())
    return digest.hexdigest()[:16]


def read_manifest(tree: Path | None) -> dict[str, tuple[str, int]]:
    if tree is None:
        return {}
    try:
        data = json.loads((tree / MANIFEST).read_text())
    except (OSError, ValueError):
        return {}
    return {k: (v[0], int(v[1])) for k, v in data.items()}


def _has(path: Path, size: int) -> bool:
    """Whether path is a regular file of that size (a published file lost or edited by
    hand is fetched again rather than linked)."""
    try:
        found = os.stat(path, follow_symlinks=False)
    except OSError:
        return False
    return stat.S_ISREG(found.st_mode) and found.st_size == size


def build_tree(fs, settings: Settings, env: Mapping[str, str],
               objects: Mapping[str, tuple[str, int]], previous: Path | None,
               tree: Path) -> int:
    """Fill tree; return how many objects were downloaded."""
    bucket, prefix = split_uri(settings.dags_s3_uri or "")
    old = read_manifest(previous)
    pairs = []
    folders: set[Path] = set()
    for key, (etag, size) in objects.items():
        target = tree / key
        if target.parent not in folders:
            target.parent.mkdir(parents=True, exist_ok=True)
            folders.add(target.parent)
        if previous is not None and old.get(key) == (etag, size) and _has(previous / key, size):
            os.link(previous / key, target)
        else:
            pairs.append((f"{bucket}/{prefix}{key}", target))
    s3fetch.fetch(fs, pairs, settings.dags_s3_concurrency, env)
    for key, (_, size) in objects.items():
        try:
            complete = os.stat(tree / key).st_size == size
        except OSError:
            complete = False
        if not complete:
            raise DagSyncError(f"s3://{bucket}/{prefix}{key} arrived incomplete; not "
                               "publishing this sync")
    (tree / MANIFEST).write_text(json.dumps({k: list(v) for k, v in objects.items()}))
    return len(pairs)
