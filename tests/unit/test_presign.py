"""The presigner's own URLs are the ones botocore's generate_presigned_url makes."""

import datetime

import botocore.auth
import pytest
import s3fs
from fsspec.asyn import sync

from entrypoint import private_apis
from entrypoint.config import load
from entrypoint.dagsync import s3source
from entrypoint.dagsync.presign import Presigner, quote_key

KEYS = ["prefix/plain.py", "prefix/with space/ünïcode dag.py", "prefix/a~b+c=d&e.py",
        "prefix/per%41cent.py", "prefix/question?.py", "prefix/#hash;semi,comma.py",
        "prefix/deep/er/still/dag.py"]


@pytest.fixture
def frozen_clock(monkeypatch):
    moment = datetime.datetime(2026, 11, 25, 12, 0, 0)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: moment)


@pytest.mark.parametrize("env", [
    {"AWS_REGION": "eu-west-1"},  # AWS itself: virtual-hosted style
    {"AWS_REGION": "us-east-1"},
    {"AWS_REGION": "eu-west-1", "AWS_ENDPOINT_URL": "http://127.0.0.1:9000"},  # path style
], ids=["aws-eu-west-1", "aws-us-east-1", "custom-endpoint"])
@pytest.mark.parametrize("token", [None, "SESSION/TOKEN+=="], ids=["keys", "session-token"])
def test_own_urls_equal_botocores(env, token, frozen_clock, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    if token:
        monkeypatch.setenv("AWS_SESSION_TOKEN", token)
    else:
        monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    fs = s3source.filesystem(load({}), env)
    presigner = Presigner(fs)

    async def urls():
        first = await presigner.url("dags-bucket/" + KEYS[0])
        ours = [await presigner.url("dags-bucket/" + key) for key in KEYS]
        theirs = [await fs._url("dags-bucket/" + key, expires=600) for key in KEYS]
        return first, ours, theirs

    first, ours, theirs = sync(fs.loop, urls)
    assert presigner._base is not None, "the fast path was not taken"
    assert first == theirs[0]
    assert ours == theirs
    if token:
        assert all("X-Amz-Security-Token=" in url for url in ours)


def test_unusual_first_url_keeps_every_url_on_botocore(frozen_clock, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    fs = s3source.filesystem(load({}), {"AWS_REGION": "eu-west-1"})
    presigner = Presigner(fs)

    async def fake_url(path, expires):  # not a SigV4 query URL
        return f"https://example.invalid/{path}?Signature=x"

    monkeypatch.setattr(fs, "_url", fake_url)
    for key in KEYS[:3]:
        url = sync(fs.loop, presigner.url, "b/" + key)
        assert url == f"https://example.invalid/b/{key}?Signature=x"
    assert presigner._base is None


def test_rotated_credentials_and_a_new_day_sign_like_botocore(frozen_clock, monkeypatch):
    """The signing key is derived again when the secret or the date changes."""
    from botocore.auth import S3SigV4QueryAuth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import ReadOnlyCredentials

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    fs = s3source.filesystem(load({}), {"AWS_REGION": "eu-west-1"})
    presigner = Presigner(fs)
    sync(fs.loop, presigner.url, "dags-bucket/" + KEYS[0])
    assert presigner._base is not None

    def botocores(credentials, key):
        request = AWSRequest(method="GET", url=presigner._base + key)
        S3SigV4QueryAuth(credentials, "s3", "eu-west-1", expires=600).add_auth(request)
        return request.url

    first = ReadOnlyCredentials("AKIDONE", "secret-one", None)
    second = ReadOnlyCredentials("AKIDTWO", "secret-two", "token")
    for credentials in (first, second, first):
        assert presigner._sign(credentials, quote_key(KEYS[1])) == botocores(
            credentials, quote_key(KEYS[1]))
    tomorrow = datetime.datetime(2026, 11, 26, 0, 0, 1)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: tomorrow)
    assert presigner._sign(first, "prefix/x.py") == botocores(first, "prefix/x.py")


def _aws_fs(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.setattr(private_apis, "_warned", set())
    return s3source.filesystem(load({}), {"AWS_REGION": "eu-west-1"})


def _s3fs_urls(fs):
    async def urls():
        return [await fs._url("dags-bucket/" + key, expires=600) for key in KEYS]

    return sync(fs.loop, urls)


def _presigned(fs):
    presigner = Presigner(fs)

    async def urls():
        return [await presigner.url("dags-bucket/" + key) for key in KEYS]

    return presigner, sync(fs.loop, urls)


def _reshape_host_helper(monkeypatch):
    # botocore calls it too, so it can't just be removed: a renamed parameter instead.
    original = botocore.auth._host_from_url
    monkeypatch.setattr(botocore.auth, "_host_from_url", lambda endpoint: original(endpoint))
    assert "_host_from_url" in private_apis.check(private_apis.BOTOCORE_HOST_FROM_URL)


def test_a_changed_botocore_host_helper_leaves_every_url_to_s3fs(frozen_clock, monkeypatch):
    fs = _aws_fs(monkeypatch)
    theirs = _s3fs_urls(fs)
    _reshape_host_helper(monkeypatch)
    presigner, ours = _presigned(fs)
    assert presigner._base is None, "the own signer was used without botocore's Host helper"
    assert ours == theirs


def test_without_s3fs_url_its_client_presigns_the_same_urls(frozen_clock, monkeypatch):
    fs = _aws_fs(monkeypatch)
    theirs = _s3fs_urls(fs)
    monkeypatch.delattr(s3fs.S3FileSystem, "_url")
    assert private_apis.check(private_apis.S3FS_URL) is not None
    presigner, ours = _presigned(fs)
    assert ours == theirs  # the first through s3fs's client, the others signed here
    assert presigner._base is not None
    _reshape_host_helper(monkeypatch)
    presigner, ours = _presigned(fs)
    assert presigner._base is None
    assert ours == theirs  # every one through s3fs's client
