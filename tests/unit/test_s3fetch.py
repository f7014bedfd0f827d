"""The TLS trust the S3 downloads use: AWS_CA_BUNDLE when set, else the system's."""

import ssl

import pytest

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
