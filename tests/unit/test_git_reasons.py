"""What a failed git command is called, from git's own stderr: the verdict decides whether
a fresh cache is tried (a local failure) or the error is final (the remote refused), so a
path or a commit that happens to hold "403" must not read as a refusal."""

import pytest

from entrypoint.dagsync.gitsource import _classify

LOCK = ("fatal: Unable to create '/tmp/pytest-of-root/pytest-403/t0/volume/.dags-sync/"
        "repo.git/shallow.lock': File exists.\n\nAnother git process seems to be running")


@pytest.mark.parametrize("stderr, reason, remote", [
    (LOCK, "git failed", False),
    (LOCK.replace("pytest-403", "pytest-401"), "git failed", False),
    ("fatal: remote error: upload-pack: not our ref 40340140340140340140340140340140340140a3",
     "unknown ref", False),
    ("fatal: unable to access 'https://git.example.com/403/dags.git/': The requested URL "
     "returned error: 403", "bad credentials", True),
    ("fatal: unable to access 'https://git.example.com/dags.git/': The requested URL "
     "returned error: 401", "bad credentials", True),
    ("remote: Invalid username or password.\nfatal: Authentication failed for "
     "'https://git.example.com/dags.git/'", "bad credentials", True),
    ("Host key verification failed.\r\nfatal: Could not read from remote repository.",
     "SSH host key not in AIRFLOW_ECS_DAGS_GIT_KNOWN_HOSTS", True),
    ("git@git.example.com: Permission denied (publickey).\r\nfatal: Could not read from "
     "remote repository.", "bad credentials", True),
    ("fatal: repository 'https://git.example.com/not found/dags.git/' not found",
     "repository not found", True),
    ("fatal: '/srv/permission denied/dags.git' does not appear to be a git repository",
     "repository not found", True),
    ("fatal: unable to access 'https://git.example.com/dags.git/': Could not resolve host: "
     "git.example.com", "unreachable host (DNS lookup failed)", True),
    ("fatal: couldn't find remote ref refs/heads/nope", "unknown ref", False),
])
def test_git_verdicts(stderr, reason, remote):
    assert _classify(stderr) == (reason, remote)
