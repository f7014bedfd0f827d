"""DAG sync against real git servers (file://, git daemon, smart HTTP with a token) and
moto's S3, including atomicity under concurrent readers and refusal to shrink."""

import hashlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import boto3
import pytest

from entrypoint import dagsync
from entrypoint.dagsync import publish
from entrypoint.errors import ConfigError, DagSyncError
from tests.support.aws_proxy import AwsProxy
from tests.support.dag_sources import Repo, git, s3_env, settings_for, tree_files
from tests.support.servers import free_port, wait_port

BIN = str(Path(sys.executable).parent / "airflow-ecs")
GIT_HTTP = Path(__file__).resolve().parents[1] / "e2e" / "containers" / "git" / "git_http.py"


@pytest.fixture
def repo(tmp_path):
    return Repo(tmp_path / "src")


def test_git_branch_moves_tag_sha_force_push_delete_subdir(repo, tmp_path):
    first = repo.commit({"a.py": "A1", "sub/b.py": "B1"})
    s = settings_for(tmp_path, AIRFLOW_ECS_DAGS_SOURCE="git",
                     AIRFLOW_ECS_DAGS_GIT_URL=f"file://{repo.bare}")
    result = dagsync.sync_once(s, {}, first=True, raw_env={})
    assert result.revision == first and result.changed
    assert tree_files(s) == {"a.py": "A1", "sub/b.py": "B1"}
    assert s.dags_dir.is_symlink()

    assert not dagsync.sync_once(s, {}, raw_env={}).changed  # nothing new
    second = repo.commit({"a.py": "A2", "sub/b.py": None, "c.py": "C2"})
    assert dagsync.sync_once(s, {}, raw_env={}).revision == second
    assert tree_files(s) == {"a.py": "A2", "c.py": "C2"}

    git("tag", "v1", first, cwd=repo.work)
    git("push", "-q", str(repo.bare), "v1", cwd=repo.work)
    tag = settings_for(tmp_path, AIRFLOW_ECS_DAGS_SOURCE="git", AIRFLOW_ECS_DAGS_GIT_REF="v1",
                       AIRFLOW_ECS_DAGS_GIT_URL=f"file://{repo.bare}")
    assert dagsync.sync_once(tag, {}, raw_env={}).revision == first
    pin = settings_for(tmp_path, AIRFLOW_ECS_DAGS_SOURCE="git", AIRFLOW_ECS_DAGS_GIT_REF=second,
                       AIRFLOW_ECS_DAGS_GIT_URL=f"file://{repo.bare}")
    assert dagsync.sync_once(pin, {}, raw_env={}).revision == second

    git("reset", "-q", "--hard", first, cwd=repo.work)
    forced = repo.commit({"d.py": "D"}, message="rewritten")
    assert dagsync.sync_once(s, {}, raw_env={}).revision == forced
    assert tree_files(s) == {"a.py": "A1", "sub/b.py": "B1", "d.py": "D"}

    sub = settings_for(tmp_path, AIRFLOW_ECS_DAGS_SOURCE="git", AIRFLOW_ECS_DAGS_GIT_SUBDIR="sub",
                       AIRFLOW_ECS_DAGS_GIT_URL=f"file://{repo.bare}",
                       AIRFLOW_ECS_DAGS_ALLOW_SHRINK="true")
    repo.commit({"sub/e.py": "E"})
    dagsync.sync_once(sub, {}, raw_env={})
    assert tree_files(sub) == {"b.py": "B1", "e.py": "E"}


def test_git_refresh_writes_only_what_changed(repo, tmp_path):
    """A new commit's tree hard-links every unchanged file from the published tree and
    writes the changed ones anew: the published tree never changes under a reader."""
    files = {f"team{i % 5}/dag_{i}.py": f"# dag {i}\n" for i in range(200)}
    repo.commit({**files, "sub/keep.py": "K", "sub/edit.py": "E1", "sub/gone.py": "G"})
    (repo.work / "sub" / "link.py").symlink_to("keep.py")
    (repo.work / "run.sh").write_text("#!/bin/sh\n")
    (repo.work / "run.sh").chmod(0o755)
    repo.commit({})
    for subdir in ("", "sub"):
        s = settings_for(tmp_path / (subdir or "root"), AIRFLOW_ECS_DAGS_SOURCE="git",
                         AIRFLOW_ECS_DAGS_GIT_URL=f"file://{repo.bare}",
                         AIRFLOW_ECS_DAGS_GIT_SUBDIR=subdir)
        first = dagsync.sync_once(s, {}, first=True, raw_env={})
        # A first sync checks the whole commit out; the subdir's files are published.
        assert (first.fetched, first.files) == (205, 4 if subdir else 205)
    old = {p: (s.dags_dir / p).stat().st_ino for p in ("keep.py", "edit.py", "gone.py")}
    saved = tmp_path / "edit-as-published"
    os.link(s.dags_dir / "edit.py", saved)  # the published file's inode
    repo.commit({"sub/edit.py": "E2", "sub/gone.py": None, "sub/new.py": "N",
                 "team0/dag_0.py": "# changed outside the subdir\n"})
    result = dagsync.sync_once(s, {}, raw_env={})
    assert result.fetched == 2  # edit.py and new.py: the rest is linked
    assert tree_files(s) == {"keep.py": "K", "edit.py": "E2", "new.py": "N", "link.py": "K"}
    assert (s.dags_dir / "keep.py").stat().st_ino == old["keep.py"]
    assert (s.dags_dir / "edit.py").stat().st_ino != old["edit.py"]
    assert os.readlink(s.dags_dir / "link.py") == "keep.py"
    assert saved.read_text() == "E1"  # the published file was not written through

    root = settings_for(tmp_path / "root", AIRFLOW_ECS_DAGS_SOURCE="git",
                        AIRFLOW_ECS_DAGS_GIT_URL=f"file://{repo.bare}")
    result = dagsync.sync_once(root, {}, raw_env={})
    assert result.fetched == 3  # sub/edit.py, sub/new.py, team0/dag_0.py
    assert os.access(root.dags_dir / "run.sh", os.X_OK)
    assert tree_files(root)["team0/dag_0.py"] == "# changed outside the subdir\n"
    assert len(tree_files(root)) == 200 + 5


def test_git_cache_left_locked_or_damaged_is_rebuilt(repo, tmp_path, caplog):
    """A fetch killed halfway leaves a lock file that fails every later fetch, and a
    damaged pack loses objects: the cache is started over, once, with a warning."""
    repo.commit({"a.py": "A1"})
    s = settings_for(tmp_path, AIRFLOW_ECS_DAGS_SOURCE="git",
                     AIRFLOW_ECS_DAGS_GIT_URL=f"file://{repo.bare}")
    dagsync.sync_once(s, {}, first=True, raw_env={})
    cache = s.dags_state_dir / "repo.git"
    (cache / "shallow.lock").touch()
    second = repo.commit({"a.py": "A2"})
    assert dagsync.sync_once(s, {}, raw_env={}).revision == second
    assert tree_files(s) == {"a.py": "A2"}
    assert "shallow.lock" in caplog.text and "fetching again into a new cache" in caplog.text
    assert not (cache / "shallow.lock").exists()

    for pack in (cache / "objects" / "pack").glob("*.pack"):
        os.truncate(pack, 100)
    third = repo.commit({"a.py": "A3"})
    assert dagsync.sync_once(s, {}, raw_env={}).revision == third
    assert tree_files(s) == {"a.py": "A3"}


def test_git_tree_damaged_by_hand_is_rebuilt(repo, tmp_path):
    repo.commit({"a.py": "A", "b.py": "B"})
    s = settings_for(tmp_path, AIRFLOW_ECS_DAGS_SOURCE="git",
                     AIRFLOW_ECS_DAGS_GIT_URL=f"file://{repo.bare}")
    dagsync.sync_once(s, {}, first=True, raw_env={})
    (s.dags_dir / "b.py").unlink()
    assert dagsync.sync_once(s, {}, raw_env={}).changed
    assert tree_files(s) == {"a.py": "A", "b.py": "B"}
    assert not dagsync.sync_once(s, {}, raw_env={}).changed

    # Damaged, then a new commit: unchanged files are not linked from the damaged tree.
    (s.dags_dir / "a.py").unlink()
    repo.commit({"b.py": "B2"})
    assert dagsync.sync_once(s, {}, raw_env={}).changed
    assert tree_files(s) == {"a.py": "A", "b.py": "B2"}


def test_git_slow_remote_times_out_and_keeps_the_last_tree(repo, tmp_path):
    """A remote that accepts and never answers: the sync gives up after
    AIRFLOW_ECS_DAGS_SYNC_TIMEOUT, publishes nothing and leaves no git process."""
    good = repo.commit({"a.py": "A"})
    s = settings_for(tmp_path, AIRFLOW_ECS_DAGS_SOURCE="git",
                     AIRFLOW_ECS_DAGS_GIT_URL=f"file://{repo.bare}")
    dagsync.sync_once(s, {}, first=True, raw_env={})
    silent = socket.create_server(("127.0.0.1", 0))
    accepted = []
    threading.Thread(target=lambda: accepted.append(silent.accept()), daemon=True).start()
    try:
        port = silent.getsockname()[1]
        slow = settings_for(tmp_path, AIRFLOW_ECS_DAGS_SOURCE="git",
                            AIRFLOW_ECS_DAGS_GIT_URL=f"git://127.0.0.1:{port}/dags.git",
                            AIRFLOW_ECS_DAGS_SYNC_TIMEOUT="1")
        started = time.monotonic()
        with pytest.raises(DagSyncError, match="no answer within AIRFLOW_ECS_DAGS_SYNC_TIMEOUT=1s"):
            dagsync.sync_once(slow, {}, raw_env={})
        assert time.monotonic() - started < 10
        assert accepted  # git did connect, and got no answer
    finally:
        silent.close()
    assert tree_files(s) == {"a.py": "A"}
    assert publish.read_status(s).revision == good
    leftover = subprocess.run(["pgrep", "-f", f"127.0.0.1:{port}"], capture_output=True)
    assert leftover.returncode == 1, leftover.stdout


def test_git_unknown_ref_unsafe_urls_and_unreachable_host(repo, tmp_path):
    repo.commit({"a.py": "A"})
    bad_ref = settings_for(tmp_path, AIRFLOW_ECS_DAGS_SOURCE="git",
                           AIRFLOW_ECS_DAGS_GIT_REF="no-such-branch",
                           AIRFLOW_ECS_DAGS_GIT_URL=f"file://{repo.bare}")
    with pytest.raises(DagSyncError, match="unknown ref"):
        dagsync.sync_once(bad_ref, {}, raw_env={})
    assert not bad_ref.dags_dir.exists()  # a failed first sync publishes nothing
    for url in ("ext::sh -c touch% /tmp/pwned", "fd::17", "--upload-pack=touch /tmp/x"):
        s = settings_for(tmp_path, AIRFLOW_ECS_DAGS_SOURCE="git", AIRFLOW_ECS_DAGS_GIT_URL=url)
        with pytest.raises(ConfigError, match="refused"):
            dagsync.sync_once(s, {}, raw_env={})
    down = settings_for(tmp_path, AIRFLOW_ECS_DAGS_SOURCE="git",
                        AIRFLOW_ECS_DAGS_DIR=str(tmp_path / "down" / "dags"),
                        AIRFLOW_ECS_DAGS_GIT_URL=f"git://127.0.0.1:{free_port()}/dags.git")
    with pytest.raises(DagSyncError, match="unreachable host"):
        dagsync.sync_once(down, {}, raw_env={})
    status = publish.read_status(down)
    assert status.consecutive_failures == 1 and status.last_success is None


@pytest.fixture
def git_daemon(repo, tmp_path):
    port = free_port()
    proc = subprocess.Popen(["git", "daemon", "--reuseaddr", "--export-all",
                             f"--base-path={repo.bare.parent}", "--listen=127.0.0.1",
                             f"--port={port}", str(repo.bare.parent)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    yield f"git://127.0.0.1:{port}/dags.git"
    proc.terminate()
    proc.wait()


def test_git_daemon_2000_files(repo, git_daemon, tmp_path):
    files = {f"dags/d{i:04d}.py": f"# dag {i}\n" for i in range(2000)}
    repo.commit(files)
    s = settings_for(tmp_path, AIRFLOW_ECS_DAGS_SOURCE="git", AIRFLOW_ECS_DAGS_GIT_URL=git_daemon)
    assert dagsync.sync_once(s, {}, raw_env={}).files == 2000
    assert len(list((s.dags_dir / "dags").iterdir())) == 2000


@pytest.fixture
def http_git(repo, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("good-token-123456")
    port = free_port()
    env = {**os.environ, "REPO_ROOT": str(repo.bare.parent), "TOKEN_FILE": str(token_file),
           "BIND": "127.0.0.1"}
    proc = subprocess.Popen([sys.executable, str(GIT_HTTP), str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    yield f"http://127.0.0.1:{port}/dags.git", token_file
    proc.terminate()
    proc.wait()


def test_https_token_never_printed_and_rotation_is_picked_up(repo, http_git, tmp_path):
    url, token_file = http_git
    repo.commit({"a.py": "A"})
    s = settings_for(tmp_path, AIRFLOW_ECS_DAGS_SOURCE="git", AIRFLOW_ECS_DAGS_GIT_URL=url)
    wrong = "wrong-token-987654"
    with pytest.raises(DagSyncError, match="bad credentials") as err:
        dagsync.sync_once(s, {"AIRFLOW_ECS_DAGS_GIT_TOKEN": wrong}, raw_env={})
    assert wrong not in str(err.value)
    secret_file = tmp_path / "token-for-client"
    secret_file.write_text("good-token-123456\n")
    raw = {"AIRFLOW_ECS_DAGS_GIT_TOKEN_FILE": str(secret_file)}
    dagsync.sync_once(s, {}, raw_env=raw)
    assert tree_files(s) == {"a.py": "A"}
    cache_config = (s.dags_state_dir / "repo.git" / "config").read_text()
    assert "good-token" not in cache_config and "127.0.0.1" not in cache_config
    # Rotation: the server and the file change; the next sync uses the new token.
    token_file.write_text("rotated-token-555")
    secret_file.write_text("rotated-token-555")
    repo.commit({"b.py": "B"})
    dagsync.sync_once(s, {}, raw_env=raw)
    assert tree_files(s) == {"a.py": "A", "b.py": "B"}


def test_cli_token_absent_from_output_and_git_argv(repo, http_git, tmp_path):
    url, _ = http_git
    repo.commit({"a.py": "A"})
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update({"AIRFLOW_ECS_DAGS_SOURCE": "git", "AIRFLOW_ECS_DAGS_GIT_URL": url,
                "AIRFLOW_ECS_DAGS_GIT_TOKEN": "wrong-but-secret-token",
                "AIRFLOW_ECS_DAGS_DIR": str(tmp_path / "v" / "dags")})
    seen = []
    proc = subprocess.Popen([BIN, "sync-dags"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    while proc.poll() is None:  # watch every git child's argument list while it runs
        for pid in os.listdir("/proc"):
            if pid.isdigit():
                try:
                    seen.append(Path(f"/proc/{pid}/cmdline").read_bytes())
                except OSError:
                    pass
        time.sleep(0.01)
    out, err = proc.communicate()
    assert proc.returncode == 80
    assert b"bad credentials" in err
    assert not [c for c in seen if b"wrong-but-secret-token" in c]
    assert b"wrong-but-secret-token" not in out + err


def test_killed_sync_leaves_previous_tree_intact(repo, tmp_path):
    repo.commit({"a.py": "A1"})
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update({"AIRFLOW_ECS_DAGS_SOURCE": "git", "AIRFLOW_ECS_DAGS_GIT_URL":
                f"file://{repo.bare}", "AIRFLOW_ECS_DAGS_DIR": str(tmp_path / "v" / "dags"),
                "AIRFLOW_ECS_DAGS_ALLOW_SHRINK": "true"})
    subprocess.run([BIN, "sync-dags"], env=env, check=True, capture_output=True)
    before = (tmp_path / "v" / "dags" / "a.py").read_text()
    repo.commit({f"big/f{i}.py": "x" * 20000 for i in range(3000)})
    for delay in (0.3, 0.6, 1.0):
        proc = subprocess.Popen([BIN, "sync-dags"], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        time.sleep(delay)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        link = tmp_path / "v" / "dags"
        files = {p.name for p in link.iterdir()}
        if "big" in files:  # the sync finished before the kill: its tree is whole
            assert len(list((link / "big").iterdir())) == 3000
        else:
            assert (link / "a.py").read_text() == before
    result = subprocess.run([BIN, "sync-dags"], env=env, capture_output=True)
    assert result.returncode == 0, result.stderr
    assert len(list((tmp_path / "v" / "dags" / "big").iterdir())) == 3000


def test_readers_never_see_a_mixed_tree(repo, tmp_path):
    def version(n):
        return {f"f{i}.py": f"v{n}" for i in range(40)}

    repo.commit(version(0))
    s = settings_for(tmp_path, AIRFLOW_ECS_DAGS_SOURCE="git",
                     AIRFLOW_ECS_DAGS_GIT_URL=f"file://{repo.bare}")
    dagsync.sync_once(s, {}, raw_env={})
    stop = threading.Event()
    problems, reads = [], [0]

    def reader():
        while not stop.is_set():
            try:
                root = s.dags_dir.resolve()  # one snapshot of the link, as Airflow's walk has
                contents = {p.read_text() for p in root.iterdir() if p.suffix == ".py"}
            except FileNotFoundError:
                continue  # the tree this reader resolved was removed: a retry sees a whole one
            hashlib.sha256(repr(sorted(contents)).encode())
            if len(contents) != 1:
                problems.append(contents)
            reads[0] += 1

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for n in range(1, 21):
            repo.commit(version(n))
            dagsync.sync_once(s, {}, raw_env={})
    finally:
        stop.set()
        thread.join()
    assert reads[0] > 20
    assert problems == []
    assert {p.read_text() for p in s.dags_dir.iterdir() if p.suffix == ".py"} == {"v20"}


def test_refuses_empty_and_shrunken_trees(repo, tmp_path):
    repo.commit({f"f{i}.py": "x" for i in range(10)})
    s = settings_for(tmp_path, AIRFLOW_ECS_DAGS_SOURCE="git",
                     AIRFLOW_ECS_DAGS_GIT_URL=f"file://{repo.bare}")
    dagsync.sync_once(s, {}, raw_env={})
    repo.commit({f"f{i}.py": None for i in range(7)})
    with pytest.raises(DagSyncError, match="loses more than half"):
        dagsync.sync_once(s, {}, raw_env={})
    assert len(tree_files(s)) == 10  # the last good tree stays
    allow = settings_for(tmp_path, AIRFLOW_ECS_DAGS_SOURCE="git", AIRFLOW_ECS_DAGS_ALLOW_SHRINK=
                         "true", AIRFLOW_ECS_DAGS_GIT_URL=f"file://{repo.bare}")
    dagsync.sync_once(allow, {}, raw_env={})
    assert len(tree_files(allow)) == 3


# --- S3 ------------------------------------------------------------------------------------
def test_s3_incremental_deletes_names_and_2000_files(moto, tmp_path):
    s3 = boto3.client("s3", endpoint_url=moto.url, region_name="eu-west-1")
    s3.create_bucket(Bucket="dags", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    for i in range(2000):
        s3.put_object(Bucket="dags", Key=f"prefix/many/d{i:04d}.py", Body=b"x" * 100)
    s3.put_object(Bucket="dags", Key="prefix/with space/ünïcode dag.py", Body=b"# hi")
    s3.put_object(Bucket="dags", Key="prefix/.airflowignore", Body=b"skip_.*")
    s3.put_object(Bucket="dags", Key="outside.py", Body=b"no")
    proxy = AwsProxy(moto.url)
    try:
        s = settings_for(tmp_path, AIRFLOW_ECS_DAGS_SOURCE="s3",
                         AIRFLOW_ECS_DAGS_S3_URI="s3://dags/prefix/")
        first = dagsync.sync_once(s, s3_env(proxy.url), raw_env={})
        assert first.fetched == 2002 and first.changed
        assert (s.dags_dir / "with space" / "ünïcode dag.py").read_text() == "# hi"
        assert (s.dags_dir / ".airflowignore").read_text() == "skip_.*"
        assert not (s.dags_dir / "outside.py").exists()

        proxy.paths.clear()
        again = dagsync.sync_once(s, s3_env(proxy.url), raw_env={})
        assert not again.changed
        assert proxy.paths and all(method == "GET" and "list-type=2" in path
                                   for method, path in proxy.paths), proxy.paths
        proxy.paths.clear()

        s3.put_object(Bucket="dags", Key="prefix/many/d0007.py", Body=b"changed")
        s3.delete_object(Bucket="dags", Key="prefix/many/d0008.py")
        changed = dagsync.sync_once(s, s3_env(proxy.url), raw_env={})
        assert changed.fetched == 1
        assert (s.dags_dir / "many" / "d0007.py").read_text() == "changed"
        assert not (s.dags_dir / "many" / "d0008.py").exists()
        object_gets = [path for method, path in proxy.paths
                       if method == "GET" and "list-type=2" not in path]
        assert len(object_gets) == 1 and "d0007.py" in object_gets[0]

        # Files of the published tree lost or edited by hand: nothing changed in S3, yet
        # the tree is built again, the two files fetched anew and the rest linked.
        (s.dags_dir / "many" / "d0009.py").unlink()
        (s.dags_dir / "many" / "d0010.py").write_bytes(b"edited by hand")
        (s.dags_dir / "many" / "d0011.py").unlink()
        (s.dags_dir / "many" / "d0011.py").write_bytes(b"x" * 101)
        repaired = dagsync.sync_once(s, s3_env(proxy.url), raw_env={})
        assert repaired.changed and repaired.fetched == 3
        for name in ("d0009.py", "d0010.py", "d0011.py"):
            assert (s.dags_dir / "many" / name).read_bytes() == b"x" * 100
    finally:
        proxy.close()


def test_s3_missing_bucket_and_access_denied(moto, tmp_path):
    s = settings_for(tmp_path, AIRFLOW_ECS_DAGS_SOURCE="s3",
                     AIRFLOW_ECS_DAGS_S3_URI="s3://no-such-bucket/dags/")
    with pytest.raises(DagSyncError, match="no-such-bucket does not exist"):
        dagsync.sync_once(s, s3_env(moto.url), raw_env={})
    s3 = boto3.client("s3", endpoint_url=moto.url, region_name="eu-west-1")
    s3.create_bucket(Bucket="locked", CreateBucketConfiguration={"LocationConstraint":
                                                                 "eu-west-1"})
    s3.put_object(Bucket="locked", Key="dags/a.py", Body=b"a")
    locked = settings_for(tmp_path, AIRFLOW_ECS_DAGS_SOURCE="s3",
                          AIRFLOW_ECS_DAGS_DIR=str(tmp_path / "locked" / "dags"),
                          AIRFLOW_ECS_DAGS_S3_URI="s3://locked/dags/")
    proxy = AwsProxy(moto.url)
    try:
        dagsync.sync_once(locked, s3_env(proxy.url), raw_env={})
        assert tree_files(locked) == {"a.py": "a"}
        s3.put_object(Bucket="locked", Key="dags/b.py", Body=b"b")
        proxy.deny_path("/locked")
        with pytest.raises(DagSyncError, match="access denied listing s3://locked/dags/"):
            dagsync.sync_once(locked, s3_env(proxy.url), raw_env={})
        assert tree_files(locked) == {"a.py": "a"}  # the last good tree stays
    finally:
        proxy.close()


def test_s3_object_errors_retried_denied_and_never_leak_the_signed_url(moto, tmp_path,
                                                                       monkeypatch):
    s3 = boto3.client("s3", endpoint_url=moto.url, region_name="eu-west-1")
    s3.create_bucket(Bucket="flaky", CreateBucketConfiguration={"LocationConstraint":
                                                                "eu-west-1"})
    for name in ("a.py", "b.py", "c.py"):
        s3.put_object(Bucket="flaky", Key=f"dags/{name}", Body=name.encode() * 100)
    # Temporary credentials: their session token rides in every presigned URL.
    token = "SESSION-TOKEN-must-not-leak"
    monkeypatch.setenv("AWS_SESSION_TOKEN", token)
    s = settings_for(tmp_path, AIRFLOW_ECS_DAGS_SOURCE="s3",
                     AIRFLOW_ECS_DAGS_S3_URI="s3://flaky/dags/")
    proxy = AwsProxy(moto.url)
    try:
        # Transient 5xx answers on one object: retried, and the sync completes.
        proxy.break_path("/flaky/dags/b.py", 2, 503)
        proxy.break_path("/flaky/dags/c.py", 1, 500)
        first = dagsync.sync_once(s, s3_env(proxy.url), raw_env={})
        assert first.fetched == 3
        assert tree_files(s) == {name: name * 100 for name in ("a.py", "b.py", "c.py")}
        gets = [path for method, path in proxy.paths if "b.py" in path]
        assert len(gets) == 3 and all(token in path for path in gets)  # 2 failed, 1 good

        # An object that keeps failing: the sync fails after the attempts, the last
        # good tree stays, and the message names the object, never the URL or token.
        s3.put_object(Bucket="flaky", Key="dags/b.py", Body=b"new")
        proxy.break_path("/flaky/dags/b.py", 10, 503)
        with pytest.raises(DagSyncError) as failed:
            dagsync.sync_once(s, s3_env(proxy.url), raw_env={})
        assert "s3://flaky/dags/b.py failed 5 times" in str(failed.value)
        assert "SlowDown" in str(failed.value)
        proxy.broken_paths.clear()

        # Listing allowed, one object denied: an access-denied error for that object.
        proxy.deny_path("/flaky/dags/b.py")
        with pytest.raises(DagSyncError) as denied:
            dagsync.sync_once(s, s3_env(proxy.url), raw_env={})
        assert "access denied reading s3://flaky/dags/b.py" in str(denied.value)
        for error in (failed.value, denied.value):
            assert token not in str(error) and "X-Amz" not in str(error)
        assert tree_files(s)["b.py"] == "b.py" * 100  # the last good tree stays
        status = (s.dags_state_dir / "status.json").read_text()
        assert token not in status and "X-Amz" not in status
    finally:
        proxy.close()
