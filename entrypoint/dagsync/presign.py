"""Presigned GET URLs for the objects of one S3 bucket.

The first URL comes from s3fs (`S3FileSystem._url`, i.e. botocore's
`generate_presigned_url`), which resolves everything that needs care: the
endpoint and addressing style, the signing region, the credentials. The
following ones reuse that URL's base (everything before the object key),
credentials and region, and are signed here, by the SigV4 query-string
algorithm botocore's `S3SigV4QueryAuth` implements (AWS's "Authenticating
Requests: Using Query Parameters"), with the signing key derived once per
day. Hand-written because botocore's per-call path is generic: through
`generate_presigned_url`, endpoint-rules evaluation and event hooks took a
third of a 2,000-object sync's CPU; through `S3SigV4QueryAuth` alone,
request objects, URL re-parsing and header handling still took about 15%
(both profiled; `make bench` measures the two signers side by side, and the
whole sync). Unit tests check that both paths give the same URL, byte for
byte, for awkward keys, with and without a session token, on AWS and on a
custom endpoint, across rotated credentials and a change of day.

When the first URL is not a plain SigV4 S3 URL ending in the quoted key
(an S3 Express bucket, say), every URL comes from s3fs. `_url`, botocore's
`_host_from_url` and its clock are private to their libraries
(entrypoint.private_apis): without `_url`, URLs come from s3fs's client as
`_url` makes them; without the other two, every URL comes from s3fs.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any, cast
from urllib.parse import parse_qs, quote, urlsplit

from entrypoint import private_apis

EXPIRES = 600  # seconds; each URL is made just before its GET


def quote_key(key: str) -> str:
    # How botocore puts a greedy {Key+} label into a path.
    return quote(key, safe="/~")


class Presigner:
    def __init__(self, fs: Any) -> None:
        self.fs = fs
        self._base: str | None = None
        self._region = ""
        self._credentials: Any = None
        self._learned = False
        self._host = ""
        self._path = ""
        self._keys: tuple[str, str, bytes] = ("", "", b"")  # (secret, date, signing key)
        self._s3fs_url = private_apis.lookup(private_apis.S3FS_URL) is not None

    async def url(self, remote: str) -> str:
        """A presigned GET URL for remote ("bucket/key")."""
        if self._base is None:
            url = await self._from_s3fs(remote)
            if not self._learned:
                self._learned = True
                await self._learn(url, remote.split("/", 1)[1])
            return url
        credentials = await self._credentials.get_frozen_credentials()
        return self._sign(credentials, quote_key(remote.split("/", 1)[1]))

    async def _from_s3fs(self, remote: str) -> str:
        if self._s3fs_url:
            return cast(str, await self.fs._url(path=remote, expires=EXPIRES))
        # What s3fs's _url does, with the client its documented set_session() returns.
        bucket, key = remote.split("/", 1)
        client = await self.fs.set_session()
        return cast(str, await client.generate_presigned_url(
            ClientMethod="get_object", Params={"Bucket": bucket, "Key": key},
            ExpiresIn=EXPIRES))

    def _sign(self, credentials: Any, quoted_key: str) -> str:
        from botocore.auth import get_current_datetime

        stamp = get_current_datetime().strftime("%Y%m%dT%H%M%SZ")
        day = stamp[:8]
        scope = f"{day}/{self._region}/s3/aws4_request"
        params = {"X-Amz-Algorithm": "AWS4-HMAC-SHA256",
                  "X-Amz-Credential": f"{credentials.access_key}/{scope}",
                  "X-Amz-Date": stamp, "X-Amz-Expires": str(EXPIRES),
                  "X-Amz-SignedHeaders": "host"}
        if credentials.token is not None:
            params["X-Amz-Security-Token"] = credentials.token
        pairs = [(_encode(k), _encode(v)) for k, v in params.items()]
        query = "&".join(f"{k}={v}" for k, v in pairs)
        canonical = "\n".join(["GET", self._path + quoted_key,
                               "&".join(f"{k}={v}" for k, v in sorted(pairs)),
                               f"host:{self._host}\n", "host", "UNSIGNED-PAYLOAD"])
        to_sign = "\n".join(["AWS4-HMAC-SHA256", stamp, scope,
                             hashlib.sha256(canonical.encode()).hexdigest()])
        signature = hmac.new(self._signing_key(credentials.secret_key, day),
                             to_sign.encode(), hashlib.sha256).hexdigest()
        return f"{self._base}{quoted_key}?{query}&X-Amz-Signature={signature}"

    def _signing_key(self, secret: str, day: str) -> bytes:
        if self._keys[:2] != (secret, day):
            key = ("AWS4" + secret).encode()
            for part in (day, self._region, "s3", "aws4_request"):
                key = hmac.new(key, part.encode(), hashlib.sha256).digest()
            self._keys = (secret, day, key)
        return self._keys[2]

    async def _learn(self, url: str, key: str) -> None:
        parts = urlsplit(url)
        query = parse_qs(parts.query)
        scope = (query.get("X-Amz-Credential") or [""])[0].split("/")
        suffix = quote_key(key)
        plain = (query.get("X-Amz-Algorithm") == ["AWS4-HMAC-SHA256"] and len(scope) == 5
                 and scope[3] == "s3" and parts.path.endswith(suffix))
        if not plain:
            return
        credentials = await self.fs.session.get_credentials()
        if credentials is None:
            return
        host_from_url = private_apis.lookup(private_apis.BOTOCORE_HOST_FROM_URL)
        if host_from_url is None or private_apis.lookup(private_apis.BOTOCORE_CLOCK) is None:
            return  # every URL from s3fs
        self._credentials = credentials
        self._region = scope[2]
        self._path = parts.path[:len(parts.path) - len(suffix)]
        self._base = f"{parts.scheme}://{parts.netloc}{self._path}"
        self._host = host_from_url(url=self._base)  # the Host botocore would sign


def _encode(value: str) -> str:
    # SigV4's URI encoding (botocore.utils.percent_encode): everything but unreserved.
    return quote(value, safe="-_.~")
