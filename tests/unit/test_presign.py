"""The presigner's own URLs are the ones botocore's generate_presigned_url makes."""

import datetime

import botocore.auth
import pytest
from fsspec.asyn import sync

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
