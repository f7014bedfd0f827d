"""Property-based: any git URL, ref or subdir is either taken or refused as documented
(a configuration error, 78, or the DAG sync's error, 80), never another exception; a
password planted in a URL reaches no message, log line or status file; and a sync from a
file:// repository writes nothing outside its DAG and state folders."""

import itertools
import logging
import subprocess

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from entrypoint import config, dagsync
from entrypoint.dagsync import gitsource
from entrypoint.errors import ConfigError, EntrypointError

TOKEN = "PLANTED-git-token-24680"
COUNTER = itertools.count()


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """A bare repository with a `dags` folder on main, and its head commit."""
    root = tmp_path_factory.mktemp("props-repo")
    work = root / "work"
    (work / "dags").mkdir(parents=True)
    (work / "dags" / "a.py").write_text("A")
    (work / "top.py").write_text("T")

    def git(*args, cwd=work):
        return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                              text=True).stdout.strip()

    git("init", "-q", "-b", "main", str(work), cwd=root)
    git("add", "-A")
    git("-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", "x")
    git("tag", "v1")
    git("clone", "-q", "--bare", str(work), str(root / "dags.git"), cwd=root)
    return root / "dags.git", git("rev-parse", "HEAD")


class Lines(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines = []

    def emit(self, record):
        self.lines.append(self.format(record))


def outcome(box, env: dict[str, str]) -> tuple[int, list[str]]:
    """(exit code, everything written: the message, log lines, the status file) of one
    first sync with these settings, inside box."""
    lines = Lines()
    logger = logging.getLogger("airflow-ecs")
    logger.addHandler(lines)
    try:
        settings_ = config.load({"AIRFLOW_ECS_DAGS_DIR": str(box / "volume" / "dags"),
                                 "AIRFLOW_ECS_DAGS_SOURCE": "git",
                                 "AIRFLOW_ECS_DAGS_SYNC_TIMEOUT": "20", **env})
        dagsync.sync_once(settings_, {}, first=True, raw_env={})
        code, message = 0, ""
    except EntrypointError as exc:
        code, message = exc.exit_code, str(exc)
    finally:
        logger.removeHandler(lines)
    status = box / "volume" / ".dags-sync" / "status.json"
    written = [message, *lines.lines, status.read_text() if status.exists() else ""]
    assert code in (0, 78, 80), written
    # Nothing beside the volume, nothing in it but the DAG folder and the state folder.
    assert [p.name for p in box.iterdir()] in ([], ["volume"])
    if (box / "volume").exists():
        assert {p.name for p in (box / "volume").iterdir()} <= {"dags", ".dags-sync"}
    event(f"exit {code}")
    return code, written


SCHEMES = st.sampled_from(["https://", "http://", "ssh://", "git://", "file://", "ext::",
                           "fd::", "", "-", "--upload-pack=", "HTTPS://", "git+ssh://"])
USERINFO = st.sampled_from(["", "user@", f"user:{TOKEN}@", f":{TOKEN}@", "git@",
                            f"u%40x:{TOKEN}@", f"user:{TOKEN}:more@"])
HOSTS = st.sampled_from(["127.0.0.1", "github.com", "[::1", "[::1]", "host:notaport",
                         "host:99999", "", "h\x00st", "h\udcffst", "host:22"])
PATHS = st.one_of(st.sampled_from(["/acme/dags.git", ":acme/dags.git", "", "/a b\nc",
                                   "/\x7f"]),
                  st.text(max_size=15))


@settings(max_examples=200, deadline=None)
@given(scheme=SCHEMES, userinfo=USERINFO, host=HOSTS, path=PATHS)
def test_any_git_url_is_taken_or_refused_without_leaking_its_password(scheme, userinfo,
                                                                       host, path):
    url = scheme + userinfo + host + path
    try:
        gitsource.validate_url(url)
        refused = None
    except ConfigError as exc:
        refused = str(exc)
        assert "AIRFLOW_ECS_DAGS_GIT_URL" in refused
        assert TOKEN not in refused
    if f":{TOKEN}" in userinfo:
        assert refused is not None and "must not carry credentials" in refused
    problems = dagsync.problems(config.load({"AIRFLOW_ECS_DAGS_SOURCE": "git",
                                             "AIRFLOW_ECS_DAGS_GIT_URL": url}))
    assert (problems == []) == (refused is None)
    assert not any(TOKEN in p for p in problems)
    event("refused" if refused else "taken")


@settings(max_examples=20, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(userinfo=USERINFO, where=st.sampled_from(["repo", "missing", "relative"]))
def test_file_urls_sync_or_fail_as_documented(repo, tmp_path, userinfo, where):
    bare, _ = repo
    path = {"repo": str(bare), "missing": str(bare.parent / "missing.git"),
            "relative": "dags.git"}[where]
    url = f"file://{userinfo}{path}" if not path.startswith("/") or not userinfo \
        else f"file://{userinfo}localhost{path}"
    box = tmp_path / f"url{next(COUNTER)}"
    box.mkdir()
    code, written = outcome(box, {"AIRFLOW_ECS_DAGS_GIT_URL": url})
    for text in written:
        assert TOKEN not in text and "Traceback" not in text
    if where == "repo" and not userinfo:
        assert code == 0 and (box / "volume" / "dags" / "dags" / "a.py").exists()


REF_PARTS = st.one_of(
    st.sampled_from(["main", "v1", "HEAD", "refs/heads/main", "refs/tags/v1", "..", ".",
                     ".lock", "@{", "~", "^", ":", "\\", " ", "*", "?", "[", "\x00", "é",
                     "-", "/", "//", "a.lock", "@", "nope"]),
    st.text(alphabet="ab.-_/@{}~^:", max_size=6),
)
SUBDIRS = st.sampled_from(["", "dags", "dags/", "top.py", "missing", "/etc", "dags/../..",
                           ".", "*", ":(exclude)dags", "d*gs", "da\x00gs", "da\udcffgs",
                           "dags\n", "./dags"])


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ref=st.lists(REF_PARTS, min_size=1, max_size=3).map("".join), subdir=SUBDIRS,
       sha=st.booleans())
def test_any_ref_and_subdir_sync_or_fail_as_documented(repo, tmp_path, ref, subdir, sha):
    bare, head = repo
    ref = head if sha else ref
    box = tmp_path / f"ref{next(COUNTER)}"
    box.mkdir()
    code, written = outcome(box, {"AIRFLOW_ECS_DAGS_GIT_URL": f"file://{bare}",
                                  "AIRFLOW_ECS_DAGS_GIT_REF": ref,
                                  "AIRFLOW_ECS_DAGS_GIT_SUBDIR": subdir})
    for text in written:
        assert "Traceback" not in text
    if code == 0:
        published = box / "volume" / "dags"
        files = {str(p.relative_to(published)) for p in published.rglob("*") if p.is_file()}
        assert files in ({"dags/a.py", "top.py"}, {"a.py"})
    if subdir in ("dags", "dags/", "") and ref in ("main", "v1", "refs/heads/main", head):
        assert code == 0, written
