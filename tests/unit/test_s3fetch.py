"""The S3 downloads: their TLS trust (AWS_CA_BUNDLE when set, else the system's) and how
many run at once."""

import ssl

import pytest

from entrypoint.dagsync import s3fetch
from entrypoint.dagsync.s3fetch import _ssl_context
from entrypoint.errors import DagSyncError


def test_system_trust_by_default():
    assert _ssl_context({}) is True  # aiohttp's verified default context


def test_aws_ca_bundle_is_loaded(tmp_path):
    import certifi

    context = _ssl_context({"AWS_CA_BUNDLE": certifi.where()})
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert context.cert_store_stats()["x509_ca"] > 10


@pytest.mark.parametrize("content", [None, "not a certificate\n"], ids=["missing", "garbage"])
def test_unreadable_bundle_is_a_clear_error(tmp_path, content):
    path = tmp_path / "ca.pem"
    if content is not None:
        path.write_text(content)
    with pytest.raises(DagSyncError, match=f"AWS_CA_BUNDLE={path}: not a readable PEM"):
        _ssl_context({"AWS_CA_BUNDLE": str(path)})


@pytest.mark.parametrize("soft,wanted,usable", [
    (65535, 256, 256),
    (1024, 256, 256),
    (512, 256, 224),
    (100, 256, 18),
    (60, 8, 1),
])
def test_concurrency_fits_the_open_file_limit(monkeypatch, soft, wanted, usable):
    import logging
    import resource

    from entrypoint.log import log

    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    monkeypatch.setattr(resource, "getrlimit", lambda kind: (soft, 1 << 20))
    log.addHandler(handler)
    try:
        assert s3fetch.usable_concurrency(wanted) == usable
    finally:
        log.removeHandler(handler)
    lowered = [r.getMessage() for r in records if "lowered" in r.getMessage()]
    if usable < wanted:
        assert lowered == [f"AIRFLOW_ECS_DAGS_S3_CONCURRENCY={wanted} lowered to {usable}: "
                           f"the open-file limit is {soft} (raise the container's nofile "
                           "ulimit, or lower the setting)"]
    else:
        assert lowered == []
