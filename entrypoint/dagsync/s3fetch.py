"""Download many S3 objects at once: presigned (presign.py), fetched by aiohttp.

Why not `S3FileSystem.get`: every object then goes through botocore's whole
request pipeline (serialising, signing, the event hooks, parsing every
response header, dates included), several times the CPU of presigning a URL
and fetching it with aiohttp (BENCHMARKS.md: presigning, and the S3 sync
against `aws s3 sync`). A DAG folder is thousands of small files, so that pipeline
was the sync's bottleneck. s3fs still does everything that needs care:
credentials (refreshed task-role credentials included), the bucket's region
and endpoint, and SigV4 signing (see presign.py); aiohttp (which s3fs
already uses underneath) only moves bytes.

A URL carries the temporary credentials' session token, so none is ever
logged or put in an exception: errors name the object as s3://bucket/key.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import os
import ssl
import time
import urllib.request
from collections.abc import Coroutine, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from entrypoint.errors import DagSyncError

if TYPE_CHECKING:
    import aiohttp

    from entrypoint.dagsync.presign import Presigner

T = TypeVar("T")

ATTEMPTS = 5  # per object, for 5xx answers and broken connections
RETRY_DELAY = 0.2  # seconds before the second attempt, doubling (with jitter) after
CHUNK = 1 << 16
CONNECT_TIMEOUT = 10  # seconds, as botocore's connect_timeout
READ_TIMEOUT = 60  # seconds without a byte, as botocore's read_timeout
RESERVED_FDS = 64  # descriptors left for everything but the downloads


class Retryable(Exception):
    """A transient failure (5xx, throttling, a broken connection)."""


CANCEL_GRACE = 0.5  # seconds given to cancelled requests to close their connections


class Deadline:
    """The end of one sync (AIRFLOW_ECS_DAGS_SYNC_TIMEOUT after it started): every request
    of the sync, listing, downloads and retries included, ends by then."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds

    def remaining(self) -> float:
        return max(0.0, self.end - time.monotonic())


def run(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, T], deadline: Deadline,
        what: str) -> T:
    """Run coro on s3fs's event loop (its own thread) until the deadline.

    Not fsspec's `sync`, whose timeout leaves the coroutine running when it expires and is
    checked once a second. Here the wait ends at the deadline, or as soon as a SIGTERM
    handler raises in this (main) thread; either way the coroutine is cancelled, so no
    request outlives the sync."""
    future = asyncio.run_coroutine_threadsafe(coro, loop)
    try:
        done, _ = concurrent.futures.wait([future], timeout=deadline.remaining())
        if not done:
            raise DagSyncError(f"{what}: not done within AIRFLOW_ECS_DAGS_SYNC_TIMEOUT="
                               f"{deadline.seconds:g}s (is the S3 endpoint reachable? raise "
                               "the timeout for a very large first sync)")
        return future.result()
    finally:
        if not future.done():
            future.cancel()
            concurrent.futures.wait([future], timeout=CANCEL_GRACE)


def fetch(fs: Any, pairs: Sequence[tuple[str, Path]], concurrency: int,
          env: Mapping[str, str], deadline: Deadline,
          etags: Mapping[str, str] | None = None) -> None:
    """Download every (bucket/key, local path) pair; raise DagSyncError on failure.

    With etags ({bucket/key: ETag}), each GET carries If-Match: an object replaced since
    it was listed fails the download instead of bringing other content than listed."""
    if pairs:
        run(fs.loop, _fetch_all(fs, pairs, usable_concurrency(concurrency), env, etags or {}),
            deadline, f"downloading {len(pairs)} objects")


def usable_concurrency(wanted: int) -> int:
    """wanted, or less when the open-file limit can't hold it.

    Each download in flight holds a socket and a file; RESERVED descriptors are
    left for everything else. The default (64) fits even a 1024 limit; a larger
    setting on a host with a low limit is lowered, with a warning."""
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or wanted * 2 + RESERVED_FDS <= soft:
        return wanted
    usable = max(1, (soft - RESERVED_FDS) // 2)
    from entrypoint.log import log

    log.warning("AIRFLOW_ECS_DAGS_S3_CONCURRENCY=%d lowered to %d: the open-file limit is "
                "%d (raise the container's nofile ulimit, or lower the setting)",
                wanted, usable, soft)
    return usable


def _ssl_context(env: Mapping[str, str]) -> ssl.SSLContext | bool:
    """The CA bundle botocore would use: AWS_CA_BUNDLE, else the system's.

    For the system's, aiohttp's own verified context (True), which it has
    already built: building another loads every CA again (BENCHMARKS.md, import
    costs)."""
    bundle = env.get("AWS_CA_BUNDLE")
    if not bundle:
        return True
    try:
        return ssl.create_default_context(cafile=bundle)
    except (OSError, ssl.SSLError) as exc:
        raise DagSyncError(f"AWS_CA_BUNDLE={bundle}: not a readable PEM CA bundle "
                           f"({type(exc).__name__}: {getattr(exc, 'strerror', None) or exc})"
                           ) from None


async def _fetch_all(fs: Any, pairs: Sequence[tuple[str, Path]], concurrency: int,
                     env: Mapping[str, str], etags: Mapping[str, str]) -> None:
    import aiohttp

    from entrypoint.dagsync.presign import Presigner

    presigner = Presigner(fs)
    limit = asyncio.Semaphore(concurrency)
    connector = aiohttp.TCPConnector(limit=concurrency, ssl=_ssl_context(env))
    timeout = aiohttp.ClientTimeout(sock_connect=CONNECT_TIMEOUT, sock_read=READ_TIMEOUT)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout,
                                     auto_decompress=False) as session:
        # The first object alone: its URL teaches the presigner the bucket's endpoint.
        await _fetch_one(presigner, session, limit, *pairs[0], etags.get(pairs[0][0]))
        tasks = [asyncio.ensure_future(_fetch_one(presigner, session, limit, remote, local,
                                                  etags.get(remote)))
                 for remote, local in pairs[1:]]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


async def _fetch_one(presigner: Presigner, session: aiohttp.ClientSession,
                     limit: asyncio.Semaphore, remote: str,
                     local: Path, etag: str | None = None) -> None:
    async with limit:
        try:
            # The first attempt outside tenacity: its per-call bookkeeping cost as much
            # CPU as a GET, and nearly every object succeeds at once.
            return await _get(presigner, session, remote, local, etag)
        except Retryable:
            await asyncio.sleep(RETRY_DELAY)
        import tenacity  # here: only a retry needs it (BENCHMARKS.md, import costs)

        retrying = tenacity.AsyncRetrying(
            retry=tenacity.retry_if_exception_type(Retryable),
            wait=tenacity.wait_exponential_jitter(multiplier=RETRY_DELAY, max=5, jitter=0.5),
            stop=tenacity.stop_after_attempt(ATTEMPTS - 1),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    await _get(presigner, session, remote, local, etag)
        except Retryable as exc:
            raise DagSyncError(f"downloading s3://{remote} failed {ATTEMPTS} times, last: "
                               f"{exc}") from None


async def _get(presigner: Presigner, session: aiohttp.ClientSession, remote: str,
               local: Path, etag: str | None = None) -> None:
    import aiohttp
    from yarl import URL

    try:
        signed = await presigner.url(remote)
    except PermissionError:
        raise DagSyncError(f"access denied signing s3://{remote}: check the task role's "
                           "credentials") from None
    try:
        # encoded=True: the URL is already quoted exactly as it was signed.
        url = URL(signed, encoded=True)
        # If-Match is not part of the presigned signature (only the host is), so S3
        # takes it as a plain condition on the GET.
        headers = {"If-Match": f'"{etag}"'} if etag else None
        async with session.get(url, proxy=_proxy_for(url.scheme, url.host or ""),
                               headers=headers) as response:
            if response.status != 200:
                await _refuse(response, remote, etag)
            expected = response.content_length
            written = 0
            with open(local, "wb") as out:
                async for chunk in response.content.iter_chunked(CHUNK):
                    written += out.write(chunk)
    except (TimeoutError, aiohttp.ClientError, ConnectionError) as exc:
        # No str(exc): some aiohttp errors quote the (presigned) URL.
        raise Retryable(type(exc).__name__) from None
    except (OSError, ValueError) as exc:  # writing the file: a full disk, say
        raise DagSyncError(f"writing s3://{remote} to {local} failed: "
                           f"{getattr(exc, 'strerror', None) or type(exc).__name__}") from None
    if expected is not None and written != expected:
        os.unlink(local)
        raise Retryable(f"got {written} of {expected} bytes")


async def _refuse(response: aiohttp.ClientResponse, remote: str,
                  etag: str | None = None) -> None:
    """Raise the error an unsuccessful answer calls for."""
    body = (await response.read())[:4096].decode("utf-8", "replace")
    code = _xml_text(body, "Code") or response.reason or ""
    if response.status >= 500 or response.status == 429 or code in ("SlowDown",
                                                                     "RequestTimeout"):
        raise Retryable(f"HTTP {response.status} {code}".strip())
    if response.status == 403:
        raise DagSyncError(f"access denied reading s3://{remote} ({code}): grant the task "
                           "role s3:GetObject on the prefix (and kms:Decrypt if the objects "
                           "are encrypted with a KMS key)")
    if response.status == 412:
        raise DagSyncError(f"s3://{remote} was replaced after it was listed (its ETag is no "
                           f"longer {etag}); its listed content is gone")
    if response.status == 404:
        raise DagSyncError(f"s3://{remote} disappeared during the sync (deleted after the "
                           "listing); the next sync uses a new listing")
    raise DagSyncError(f"downloading s3://{remote} failed: HTTP {response.status} {code}"
                       .rstrip())


@functools.cache
def _proxy_for(scheme: str, host: str) -> str | None:
    """The proxy HTTPS_PROXY/HTTP_PROXY/NO_PROXY name for this host, as botocore picks it.

    Looked up once per host: aiohttp's own trust_env reads the environment and
    ~/.netrc again on every request, in a thread, which cost more CPU than the GETs."""
    # Undocumented in the standard library, so typeshed does not declare it.
    if urllib.request.proxy_bypass_environment(host):  # type: ignore[attr-defined]
        return None
    return urllib.request.getproxies_environment().get(scheme)


def _xml_text(body: str, tag: str) -> str:
    # S3 error bodies are one flat <Error> element; a full XML parser buys nothing here.
    start = body.find(f"<{tag}>")
    end = body.find(f"</{tag}>", start)
    return body[start + len(tag) + 2:end] if start >= 0 and end > start else ""
