"""Relative submodule URLs resolved against the repository naming them, as git does."""

import pytest

from entrypoint.dagsync.submodules import resolve_url
from entrypoint.errors import DagSyncError


@pytest.mark.parametrize("base,url,expected", [
    ("https://git.example.com/acme/dags.git", "../lib.git", "https://git.example.com/acme/lib.git"),
    ("https://git.example.com/acme/dags.git/", "../lib.git",
     "https://git.example.com/acme/lib.git"),
    ("https://git.example.com/dags.git", "../lib.git", "https://git.example.com/lib.git"),
    ("https://git.example.com/acme/dags.git", "./lib.git",
     "https://git.example.com/acme/dags.git/lib.git"),
    ("https://git.example.com/a/b/dags.git", "../../other/lib.git",
     "https://git.example.com/a/other/lib.git"),
    ("ssh://git@git.example.com:2222/acme/dags.git", "../lib.git",
     "ssh://git@git.example.com:2222/acme/lib.git"),
    ("git@github.com:acme/dags.git", "../lib.git", "git@github.com:acme/lib.git"),
    ("git@github.com:dags.git", "../lib.git", "git@github.com:lib.git"),
    ("file:///srv/git/dags.git", "../lib.git", "file:///srv/git/lib.git"),
    ("https://git.example.com/acme/dags.git", "https://other.example.com/lib.git",
     "https://other.example.com/lib.git"),
])
def test_resolve(base, url, expected):
    assert resolve_url(base, url) == expected


@pytest.mark.parametrize("base,url", [
    ("https://git.example.com/dags.git", "../../lib.git"),
    ("git@github.com:dags.git", "../../lib.git"),
    ("git@github.com:acme/dags.git", "../../../lib.git"),
])
def test_climbing_above_the_host_is_refused(base, url):
    with pytest.raises(DagSyncError, match="climbs above"):
        resolve_url(base, url)
