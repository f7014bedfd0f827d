"""Passwords are masked in URLs of every form, malformed ones included, and masking
never raises."""

import pytest

from entrypoint.log import mask_url, redact


@pytest.mark.parametrize("url,shown", [
    ("redis://:SECRET@host:6379/0", "redis://:****@host:6379/0"),
    # An unencoded '/' puts the rest of the password in urllib's path.
    ("redis://:SECRET/tail@host:6379/0", "redis://:****@host:6379/0"),
    ("redis://:SE@CR#ET?x@host:6379/0", "redis://:****@host:6379/0"),
    ("git://user:TOKEN@host/org/repo.git", "git://user:****@host/org/repo.git"),
    ("ssh://git:TOKEN@host:2222/repo.git", "ssh://git:****@host:2222/repo.git"),
    ("user:TOKEN@host:repo.git", "user:****@host:repo.git"),
    ("user:TO:K@EN@host:org/repo.git", "user:****@host:org/repo.git"),
    ("user:TOKEN@host", "user:****@host"),
    ("redis://:SECRET@host:99999/0", "redis://:****@host:99999/0"),
    ("redis://:SECRET@[::1/0", "redis://:****@[::1/0"),
    ("postgresql://airflow@db/airflow?password=SECRET&sslmode=require",
     "postgresql://airflow@db/airflow?password=****&sslmode=require"),
    ("https://x:SECRET@host/a b", "https://x:****@host/a b"),
    # A token as the user name alone, as git hosts take it over HTTPS.
    ("https://ghp_SECRET@github.com/org/repo.git", "https://****@github.com/org/repo.git"),
    ("HTTP://SECRET@git.internal/r.git", "HTTP://****@git.internal/r.git"),
])
def test_password_masked_in_any_form(url, shown):
    assert mask_url(url) == shown
    assert "SECRET" not in redact(f"failed: {url} (retrying)")


@pytest.mark.parametrize("url", ["git@github.com:org/repo.git", "https://host:8443/api",
                                 "ssh://git@host/repo.git", "postgresql://airflow@db/airflow",
                                 "redis://host:6379/0", "not a url", "", "@", ":"])
def test_urls_without_password_unchanged(url):
    assert mask_url(url) == url


def test_git_error_text_is_redacted():
    text = ("fatal: unable to access 'https://oauth2:ghp_SECRET/x@git.example/o/r.git/': "
            "Could not resolve host; also tried user:SECRET2@git.example:o/r.git")
    out = redact(text)
    assert "SECRET" not in out
    assert "'https://oauth2:****@git.example/o/r.git/'" in out
    assert "user:****@git.example:o/r.git" in out


@pytest.mark.parametrize("value", [None, 12, b"redis://:x@h", object()])
def test_masking_never_raises(value):
    assert isinstance(mask_url(value), str)
    assert isinstance(redact(value), str)
