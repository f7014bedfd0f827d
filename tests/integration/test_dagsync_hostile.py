"""DAG sync against hostile or broken sources, on real servers on 127.0.0.1 (moto's S3,
git over file://, a silent TCP server standing in for an endpoint that never answers):
every failure is the DAG sync's own (exit 80) or a configuration error (78), named, with
the last good tree kept, no process left behind and no credential written anywhere."""

import http.server
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import boto3
import pytest

from entrypoint import dagsync
from entrypoint.dagsync import publish
from entrypoint.errors import ConfigError, DagSyncError
from entrypoint.probe import health
from tests.support.dag_sources import Repo, git, s3_env, settings_for, tree_files
from tests.support.waiting import wait_until

BIN = str(Path(sys.executable).parent / "airflow-ecs")


def all_files(root: Path) -> dict[str, bytes]:
    """Every file under root, hidden ones included (the published tree, as Airflow sees it)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*")
            if p.is_file()}


def bucket(moto, name="dags"):
    s3 = boto3.client("s3", endpoint_url=moto.url, region_name="eu-west-1")
    s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint":
                                                             "eu-west-1"})
    return s3


def cli_env(tmp_path, **settings):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "GIT_"))}
    env.update({"AIRFLOW_ECS_DAGS_DIR": str(tmp_path / "volume" / "dags"),
                "AIRFLOW_ECS_DAGS_KEEP_SECONDS": "0", **settings})
    return env


def run_cli(env, *args, timeout=60):
    return subprocess.run([BIN, *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def status_of(state_dir: Path) -> dict:
    return json.loads((state_dir / "status.json").read_text())


@pytest.fixture
def silent_server():
    """A TCP server on 127.0.0.1 that accepts connections and never answers."""
    server = socket.create_server(("127.0.0.1", 0))
    held = []
    stop = threading.Event()

    def accept():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1], held
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


# --- S3: objects that can't be files ------------------------------------------------------
UNPUBLISHABLE = [
    pytest.param("dags/a", "'a' is an object too", id="file-beside-its-folder"),
    pytest.param("dags/" + "x" * 300 + ".py", "longer than the 255 bytes", id="long-name"),
    pytest.param("dags/nul\0key.py", "NUL byte", id="nul"),
]


@pytest.mark.parametrize("bad,why", UNPUBLISHABLE)
def test_s3_object_that_cant_be_a_file_fails_the_sync_by_name(moto, tmp_path, bad, why):
    s3 = bucket(moto)
    s3.put_object(Bucket="dags", Key="dags/a/b.py", Body=b"B")
    s3.put_object(Bucket="dags", Key="dags/ok.py", Body=b"OK")
    env = cli_env(tmp_path, AIRFLOW_ECS_DAGS_SOURCE="s3", AIRFLOW_ECS_DAGS_S3_URI=
                  "s3://dags/dags/", **s3_env(moto.url))
    assert run_cli(env, "sync-dags").returncode == 0
    dags = tmp_path / "volume" / "dags"
    good = all_files(dags)
    assert good == {"a/b.py": b"B", "ok.py": b"OK"}

    s3.put_object(Bucket="dags", Key=bad, Body=b"bad")
    failed = run_cli(env, "sync-dags")
    assert failed.returncode == 80, failed.stderr
    assert why in failed.stderr and "Rename or delete the object" in failed.stderr
    assert repr("s3://dags/" + bad)[1:-1] in failed.stderr  # the key, as it is named
    assert "Traceback" not in failed.stderr
    assert all_files(dags) == good  # the previous tree stays published
    status = status_of(tmp_path / "volume" / ".dags-sync")
    assert status["consecutive_failures"] == 1 and why in status["last_error"]
    assert status["files"] == 2 and status["last_success"]

    # A first sync: nothing published, the failure recorded, the DAG-sync exit code.
    fresh = cli_env(tmp_path / "fresh", AIRFLOW_ECS_DAGS_SOURCE="s3",
                    AIRFLOW_ECS_DAGS_S3_URI="s3://dags/dags/", **s3_env(moto.url))
    first = run_cli(fresh, "sync-dags")
    assert first.returncode == 80 and why in first.stderr
    assert not (tmp_path / "fresh" / "volume" / "dags").exists()
    assert why in status_of(tmp_path / "fresh" / "volume" / ".dags-sync")["last_error"]
    trees = tmp_path / "fresh" / "volume" / ".dags-sync" / "trees"
    assert not trees.exists() or not list(trees.iterdir())


def test_s3_loop_outlives_unpublishable_content_and_recovers(moto, tmp_path):
    """`sync-dags --loop` runs beside a role: DAG content must never end it."""
    s3 = bucket(moto)
    s3.put_object(Bucket="dags", Key="dags/a", Body=b"file")
    s3.put_object(Bucket="dags", Key="dags/a/b.py", Body=b"B")
    env = cli_env(tmp_path, AIRFLOW_ECS_DAGS_SOURCE="s3", AIRFLOW_ECS_DAGS_S3_URI=
                  "s3://dags/dags/", AIRFLOW_ECS_DAGS_REFRESH_SECONDS="1", **s3_env(moto.url))
    state = tmp_path / "volume" / ".dags-sync"
    proc = subprocess.Popen([BIN, "sync-dags", "--loop"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: proc.poll() is not None or (
                       (state / "status.json").exists()
                       and status_of(state)["consecutive_failures"] >= 2),
                   "two failed passes (or the loop to end)", timeout=15)
        assert proc.poll() is None, proc.communicate()
        assert "is an object too" in status_of(state)["last_error"]
        s3.delete_object(Bucket="dags", Key="dags/a")
        dags = tmp_path / "volume" / "dags"
        wait_until(dags.exists, "the tree to be published", timeout=15)
        assert all_files(dags) == {"a/b.py": b"B"}
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "is an object too" in err and "Traceback" not in err


def test_s3_keys_naming_no_path_are_left_out_with_a_warning(moto, tmp_path, caplog):
    s3 = bucket(moto)
    for key in ("dags/../up.py", "dags//absolute.py", "dags/./dot.py", "dags/ok.py"):
        s3.put_object(Bucket="dags", Key=key, Body=b"x")
    s = settings_for(tmp_path, AIRFLOW_ECS_DAGS_SOURCE="s3",
                     AIRFLOW_ECS_DAGS_S3_URI="s3://dags/dags/")
    dagsync.sync_once(s, s3_env(moto.url), raw_env={})
    assert all_files(s.dags_dir) == {"ok.py": b"x"}
    assert not (tmp_path / "up.py").exists() and not Path("/absolute.py").exists()
    assert "3 object(s)" in caplog.text
    for key in ("'../up.py'", "'/absolute.py'", "'./dot.py'"):
        assert key in caplog.text


# --- S3: the published tree is the prefix's objects, nothing else ---------------------------
def test_s3_empty_prefix_refused_and_manifest_kept_beside_the_tree(moto, tmp_path):
    s3 = bucket(moto)
    s3.put_object(Bucket="dags", Key="other/x.py", Body=b"x")
    env = cli_env(tmp_path, AIRFLOW_ECS_DAGS_SOURCE="s3", AIRFLOW_ECS_DAGS_S3_URI=
                  "s3://dags/dags/", **s3_env(moto.url))
    empty = run_cli(env, "sync-dags")
    assert empty.returncode == 80
    assert "AIRFLOW_ECS_DAGS_S3_URI=s3://dags/dags/ holds no files" in empty.stderr
    assert not (tmp_path / "volume" / "dags").exists()
    allowed = run_cli({**env, "AIRFLOW_ECS_DAGS_ALLOW_SHRINK": "true"}, "sync-dags")
    assert allowed.returncode == 0, allowed.stderr
    assert all_files(tmp_path / "volume" / "dags") == {}

    # An object with the name the sync once used for its own manifest is a DAG file
    # like any other.
    s3.put_object(Bucket="dags", Key="dags/.airflow-ecs-manifest.json", Body=b"users' own")
    s3.put_object(Bucket="dags", Key="dags/a.py", Body=b"A")
    s = settings_for(tmp_path / "s", AIRFLOW_ECS_DAGS_SOURCE="s3",
                     AIRFLOW_ECS_DAGS_S3_URI="s3://dags/dags/")
    assert dagsync.sync_once(s, s3_env(moto.url), raw_env={}).files == 2
    expected = {".airflow-ecs-manifest.json": b"users' own", "a.py": b"A"}
    assert all_files(s.dags_dir) == expected
    s3.put_object(Bucket="dags", Key="dags/b.py", Body=b"B")
    again = dagsync.sync_once(s, s3_env(moto.url), raw_env={})
    assert again.fetched == 1  # the state beside the old tree let the rest be linked
    assert all_files(s.dags_dir) == {**expected, "b.py": b"B"}
    trees = s.dags_state_dir / "trees"
    assert sorted(p.name for p in trees.iterdir()) == sorted(
        [s.dags_dir.resolve().name, s.dags_dir.resolve().name + ".manifest.json"])


# --- S3: the sync timeout bounds everything -----------------------------------------------
def test_s3_endpoint_that_never_answers_is_bounded_by_the_sync_timeout(silent_server,
                                                                      tmp_path):
    port, held = silent_server
    s = settings_for(tmp_path, AIRFLOW_ECS_DAGS_SOURCE="s3",
                     AIRFLOW_ECS_DAGS_S3_URI="s3://dags/dags/",
                     AIRFLOW_ECS_DAGS_SYNC_TIMEOUT="2")
    started = time.monotonic()
    with pytest.raises(DagSyncError, match="not done within AIRFLOW_ECS_DAGS_SYNC_TIMEOUT=2s"):
        dagsync.sync_once(s, s3_env(f"http://127.0.0.1:{port}"), raw_env={})
    took = time.monotonic() - started
    assert 2 <= took < 3, took
    assert held  # the listing did connect
    assert "not done within" in publish.read_status(s).last_error


class _HangingObjects(http.server.ThreadingHTTPServer):
    """Forwards listings to moto; object GETs get no answer at all."""

    daemon_threads = True

    def __init__(self, upstream: str):
        self.release = threading.Event()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                if "list-type" not in self.path:
                    outer.release.wait(30)
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                with urllib.request.urlopen(urllib.request.Request(
                        upstream + self.path, headers=headers), timeout=10) as answer:
                    body = answer.read()
                    self.send_response(answer.status)
                    for key, value in answer.headers.items():
                        if key.lower() not in ("content-length", "transfer-encoding",
                                               "connection"):
                            self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server_address[1]}"

    def close(self):
        self.release.set()
        self.shutdown()
        self.server_close()


def test_s3_downloads_that_never_finish_are_bounded_by_the_sync_timeout(moto, tmp_path):
    s3 = bucket(moto)
    for i in range(5):
        s3.put_object(Bucket="dags", Key=f"dags/{i}.py", Body=b"x")
    proxy = _HangingObjects(moto.url)
    try:
        s = settings_for(tmp_path, AIRFLOW_ECS_DAGS_SOURCE="s3",
                         AIRFLOW_ECS_DAGS_S3_URI="s3://dags/dags/",
                         AIRFLOW_ECS_DAGS_SYNC_TIMEOUT="2")
        started = time.monotonic()
        with pytest.raises(DagSyncError, match=r"downloading 5 objects: not done within"):
            dagsync.sync_once(s, s3_env(proxy.url), raw_env={})
        took = time.monotonic() - started
        assert 2 <= took < 3, took
        assert not s.dags_dir.exists()
        trees = s.dags_state_dir / "trees"
        assert not trees.exists() or not list(trees.iterdir())
    finally:
        proxy.close()


def sigterm_once_held(argv, env, held, reaching):
    """Start argv, wait until the silent server holds its connection (`reaching` names
    what connects), send SIGTERM; return the process, its stderr and the seconds from the
    signal to its exit."""
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        wait_until(lambda: held, f"{reaching} to reach the silent server", timeout=20,
                   interval=0.05)
        time.sleep(0.3)
        signalled = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
        return proc, err, time.monotonic() - signalled
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("loop", [False, True], ids=["once", "loop"])
def test_s3_sigterm_during_a_hanging_sync_ends_it_promptly(silent_server, tmp_path, loop):
    port, held = silent_server
    env = cli_env(tmp_path, AIRFLOW_ECS_DAGS_SOURCE="s3", AIRFLOW_ECS_DAGS_S3_URI=
                  "s3://dags/dags/", AIRFLOW_ECS_DAGS_SYNC_TIMEOUT="60",
                  AIRFLOW_ECS_DAGS_REFRESH_SECONDS="60", **s3_env(f"http://127.0.0.1:{port}"))
    proc, err, took = sigterm_once_held([BIN, "sync-dags", *(["--loop"] if loop else [])],
                                        env, held, "the sync")
    assert took < 1.5
    assert proc.returncode == (0 if loop else 143), err
    assert "Traceback" not in err


# --- git: the published folder and its links stay inside the repository --------------------
def test_git_subdir_that_is_a_symlink_is_refused(tmp_path):
    repo = Repo(tmp_path / "src")
    repo.commit({"dags/a.py": "A", "dags/b.py": "B"})
    s = settings_for(tmp_path, AIRFLOW_ECS_DAGS_SOURCE="git", AIRFLOW_ECS_DAGS_GIT_SUBDIR="dags",
                     AIRFLOW_ECS_DAGS_GIT_URL=f"file://{repo.bare}")
    dagsync.sync_once(s, {}, first=True, raw_env={})
    before = tree_files(s)
    published = s.dags_dir.resolve()

    git("rm", "-q", "-r", "dags", cwd=repo.work)
    (repo.work / "dags").symlink_to("/etc")
    repo.commit({})
    with pytest.raises(DagSyncError, match=r"AIRFLOW_ECS_DAGS_GIT_SUBDIR='dags': dags is a "
                                           r"symbolic link"):
        dagsync.sync_once(s, {}, raw_env={})
    assert s.dags_dir.resolve() == published and tree_files(s) == before
    etc = {os.stat(p).st_ino for p in Path("/etc").iterdir() if p.is_file()
           and not p.is_symlink()}
    for path in s.dags_state_dir.rglob("*"):
        if path.is_file() and not path.is_symlink():
            assert path.stat().st_ino not in etc, path

    fresh = settings_for(tmp_path / "fresh", AIRFLOW_ECS_DAGS_SOURCE="git",
                         AIRFLOW_ECS_DAGS_GIT_SUBDIR="dags",
                         AIRFLOW_ECS_DAGS_GIT_URL=f"file://{repo.bare}")
    with pytest.raises(DagSyncError, match="AIRFLOW_ECS_DAGS_GIT_SUBDIR"):
        dagsync.sync_once(fresh, {}, first=True, raw_env={})
    assert not fresh.dags_dir.exists()


@pytest.mark.parametrize("subdir", ["", "dags"])
def test_git_links_leaving_the_published_folder_are_left_out(tmp_path, caplog, subdir):
    repo = Repo(tmp_path / "src")
    base = repo.work / subdir if subdir else repo.work
    repo.commit({f"{subdir}/a.py".lstrip("/"): "A", "outside.py": "O",
                 f"{subdir}/sub/c.py".lstrip("/"): "C"})
    links = {"ok.py": "a.py", "sub/up.py": "../a.py", "etc": "/etc", "passwd": "/etc/passwd",
             "up": "../..", "parent": "..", "via": "sub/../../..", "folder": "sub",
             "sub/chained": "../up/etc"}
    for name, target in links.items():
        (base / name).symlink_to(target)
    repo.commit({})
    s = settings_for(tmp_path / (subdir or "root"), AIRFLOW_ECS_DAGS_SOURCE="git",
                     AIRFLOW_ECS_DAGS_GIT_SUBDIR=subdir,
                     AIRFLOW_ECS_DAGS_GIT_URL=f"file://{repo.bare}")
    dagsync.sync_once(s, {}, first=True, raw_env={})
    kept = {"ok.py", "sub/up.py", "folder"}
    dropped = set(links) - kept
    for name in kept:
        assert os.readlink(s.dags_dir / name) == links[name]
    for name in dropped:
        assert not os.path.lexists(s.dags_dir / name), name
    assert "point outside the published folder" in caplog.text
    assert "'passwd'" in caplog.text

    # The next commit's tree links unchanged files from this one: still nothing outside.
    repo.commit({f"{subdir}/new.py".lstrip("/"): "N"})
    result = dagsync.sync_once(s, {}, raw_env={})
    assert result.fetched == 1
    assert tree_files(s)["new.py"] == "N" and tree_files(s)["ok.py"] == "A"
    for name in dropped:
        assert not os.path.lexists(s.dags_dir / name), name


# --- git: helper processes never outlive a sync --------------------------------------------
def _leftovers(port: int, secret: str) -> list[str]:
    """Processes (other than this one) naming the port or carrying the secret."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        if str(port).encode() in cmdline.split(b"\0") or f":{port}".encode() in cmdline \
                or secret.encode() in environ:
            found.append(f"{pid}: {cmdline!r}")
    return found


def _git_source(tmp_path, scheme: str, port: int) -> tuple[dict, dict, str]:
    """(settings, credentials env, secret) for a git source on the silent server."""
    if scheme == "http":
        secret = "helper-env-token-4242"
        return ({"AIRFLOW_ECS_DAGS_GIT_URL": f"http://127.0.0.1:{port}/dags.git"},
                {"AIRFLOW_ECS_DAGS_GIT_TOKEN": secret}, secret)
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)],
                   check=True, capture_output=True)
    return ({"AIRFLOW_ECS_DAGS_GIT_URL": f"ssh://git@127.0.0.1:{port}/dags.git",
             "AIRFLOW_ECS_DAGS_GIT_KNOWN_HOSTS": f"[127.0.0.1]:{port} ssh-ed25519 "
             "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"},
            {"AIRFLOW_ECS_DAGS_GIT_SSH_KEY": key.read_text()}, key.read_text().split()[3])


@pytest.mark.parametrize("scheme", ["http", "ssh"])
def test_git_helpers_never_outlive_a_timeout(silent_server, tmp_path, scheme):
    port, held = silent_server
    source, creds, secret = _git_source(tmp_path, scheme, port)
    s = settings_for(tmp_path, AIRFLOW_ECS_DAGS_SOURCE="git", AIRFLOW_ECS_DAGS_SYNC_TIMEOUT="1",
                     **source)
    started = time.monotonic()
    with pytest.raises(DagSyncError, match="no answer within AIRFLOW_ECS_DAGS_SYNC_TIMEOUT=1s"):
        dagsync.sync_once(s, creds, raw_env={})
    assert time.monotonic() - started < 3
    assert held  # the helper did connect
    assert _leftovers(port, secret) == []


@pytest.mark.parametrize("scheme", ["http", "ssh"])
def test_git_helpers_never_outlive_a_sigterm(silent_server, tmp_path, scheme):
    port, held = silent_server
    source, creds, secret = _git_source(tmp_path, scheme, port)
    env = cli_env(tmp_path, AIRFLOW_ECS_DAGS_SOURCE="git", AIRFLOW_ECS_DAGS_SYNC_TIMEOUT="60",
                  **source, **creds)
    proc, err, took = sigterm_once_held([BIN, "sync-dags"], env, held,
                                        "git")
    assert took < 2.5
    assert proc.returncode == 143, err
    assert _leftovers(port, secret) == []


# --- credentials never written anywhere ----------------------------------------------------
@pytest.mark.parametrize("url", [
    "git://user:{token}@127.0.0.1:{port}/dags.git",
    "https://user:{token}@127.0.0.1:{port}/dags.git",
    "ssh://user:{token}@127.0.0.1:{port}/dags.git",
    "user:{token}@127.0.0.1:dags.git",
])
def test_password_in_git_url_is_refused_and_never_written(tmp_path, url):
    token = "PLANTED-url-token-7788"
    url = url.format(token=token, port=1)
    env = cli_env(tmp_path, AIRFLOW_ECS_DAGS_SOURCE="git", AIRFLOW_ECS_DAGS_GIT_URL=url)
    result = run_cli(env, "sync-dags")
    assert result.returncode == 78, result.stderr
    assert "AIRFLOW_ECS_DAGS_GIT_URL" in result.stderr and "must not carry credentials" in \
        result.stderr
    assert token not in result.stdout + result.stderr
    state = tmp_path / "volume" / ".dags-sync"
    text = (state / "status.json").read_text()
    assert "must not carry credentials" in text and token not in text
    assert stat.S_IMODE((state / "status.json").stat().st_mode) == 0o600
    shown = run_cli(env, "sync-dags", "--status")
    assert "must not carry credentials" in shown.stdout and token not in shown.stdout

    problems = dagsync.problems(settings_for(tmp_path, AIRFLOW_ECS_DAGS_SOURCE="git",
                                             AIRFLOW_ECS_DAGS_GIT_URL=url))
    assert len(problems) == 1 and token not in problems[0]


def test_status_holding_an_error_is_private(tmp_path):
    from tests.support.servers import free_port

    s = settings_for(tmp_path, AIRFLOW_ECS_DAGS_SOURCE="git",
                     AIRFLOW_ECS_DAGS_GIT_URL=f"git://127.0.0.1:{free_port()}/dags.git")
    with pytest.raises(DagSyncError, match="unreachable host"):
        dagsync.sync_once(s, {}, raw_env={})
    path = s.dags_state_dir / "status.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "unreachable host" in json.loads(path.read_text())["last_error"]


# --- a status file that isn't one; settings no request can carry ----------------------------
@pytest.mark.parametrize("content", [
    b"[]", b"{not json", b"\xff\xfe", b'{"last_success": "yesterday"}',
    b'{"source": "git", "last_success": 1e999}', b'{"files": -3, "last_success": 1}',
    b'{"consecutive_failures": 1e400, "last_success": 1}', b"[" * 100000,
    b'{"last_success": 100000000000000000000000000000000000000000000000000000000000000000'
    b'00000000000000000000000000000000000000000000000000000000000000000000000000000000000'
    b'00000000000000000000000000000000000000000000000000000000000000000000000000000000000'
    b'00000000000000000000000000000000000000000000000000000000000000000000000000000000000'
    b'0000000000000000000000000000000000000000000000000000000000000000000000000000}',
], ids=["list", "not-json", "not-utf8", "str-time", "inf", "negative", "huge-float",
        "deep", "huge-int"])
def test_corrupt_status_is_reported_never_fatal(tmp_path, content):
    env = cli_env(tmp_path, AIRFLOW_ECS_DAGS_SOURCE="s3",
                  AIRFLOW_ECS_DAGS_S3_URI="s3://dags/dags/")
    state = tmp_path / "volume" / ".dags-sync"
    state.mkdir(parents=True)
    (state / "status.json").write_bytes(content)
    shown = run_cli(env, "sync-dags", "--status")
    assert shown.returncode == 1, shown.stderr
    assert "corrupt" in shown.stdout and str(state / "status.json") in shown.stdout
    assert "Traceback" not in shown.stderr
    result = health._dag_sync(env)
    assert not result.healthy
    assert result.reason.startswith("DAG sync status unknown: ")
    assert str(state / "status.json") in result.reason


def test_s3_uri_that_is_not_utf8_is_a_configuration_error(tmp_path):
    env = {k.encode(): v.encode() for k, v in cli_env(
        tmp_path, AIRFLOW_ECS_DAGS_SOURCE="s3").items()}
    env[b"AIRFLOW_ECS_DAGS_S3_URI"] = b"s3://dags/d\xffags/"
    result = subprocess.run([BIN, "sync-dags"], env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 78, result.stderr
    assert "AIRFLOW_ECS_DAGS_S3_URI" in result.stderr and "not UTF-8" in result.stderr
    assert "Traceback" not in result.stderr


def test_problems_names_what_the_sync_would_refuse(tmp_path):
    def problems(**env):
        return dagsync.problems(settings_for(tmp_path, **env))

    assert problems(AIRFLOW_ECS_DAGS_SOURCE="git",
                    AIRFLOW_ECS_DAGS_GIT_URL="https://github.com/acme/dags.git") == []
    assert problems(AIRFLOW_ECS_DAGS_SOURCE="s3", AIRFLOW_ECS_DAGS_S3_URI="s3://dags/x/") == []
    (bad_ref,) = problems(AIRFLOW_ECS_DAGS_SOURCE="git", AIRFLOW_ECS_DAGS_GIT_REF="main.lock",
                          AIRFLOW_ECS_DAGS_GIT_URL="https://github.com/acme/dags.git")
    assert "AIRFLOW_ECS_DAGS_GIT_REF" in bad_ref
    (helper,) = problems(AIRFLOW_ECS_DAGS_SOURCE="git", AIRFLOW_ECS_DAGS_GIT_URL="ext::sh -c x")
    assert "AIRFLOW_ECS_DAGS_GIT_URL" in helper
    with pytest.raises(ConfigError, match="AIRFLOW_ECS_DAGS_GIT_REF"):
        dagsync.sync_once(settings_for(tmp_path, AIRFLOW_ECS_DAGS_SOURCE="git",
                                       AIRFLOW_ECS_DAGS_GIT_REF="main.lock",
                                       AIRFLOW_ECS_DAGS_GIT_URL="file:///nonexistent"),
                          {}, raw_env={})
