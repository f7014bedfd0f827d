"""Versioned DAG bundles (entrypoint.bundles) against real servers: a git daemon and
moto's S3 (through a proxy that records every request), with Airflow's own bundle
base class and its usage tracking.

Every git command the bundles run goes through a wrapper on PATH that records each
fetch (with its process id), so the tests count fetches rather than trust timings."""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import boto3
import pytest
from airflow.dag_processing.bundles.base import BundleVersionLock

from entrypoint import config
from entrypoint.bundles.git import GitDagBundle, browse_template
from entrypoint.bundles.s3 import S3DagBundle
from entrypoint.dagsync.versions import VersionStore
from entrypoint.errors import DagSyncError
from tests.support.aws_proxy import AwsProxy
from tests.support.dag_sources import Repo
from tests.support.servers import free_port, wait_port

NAME = "dags-folder"


@pytest.fixture
def repo(tmp_path):
    return Repo(tmp_path / "src")


@pytest.fixture
def git_daemon(repo):
    port = free_port()
    proc = subprocess.Popen(["git", "daemon", "--reuseaddr", "--export-all",
                             f"--base-path={repo.bare.parent}", "--listen=127.0.0.1",
                             f"--port={port}", str(repo.bare.parent)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    yield port
    proc.terminate()
    proc.wait()


@pytest.fixture
def fetches(tmp_path, monkeypatch):
    """The git wrapper on PATH; returns a function giving the fetches recorded so far
    as (pid, arguments)."""
    wrapper = tmp_path / "bin"
    wrapper.mkdir()
    log = tmp_path / "git-fetches.log"
    real = subprocess.run(["sh", "-c", "command -v git"], capture_output=True, text=True,
                          check=True).stdout.strip()
    (wrapper / "git").write_text(
        "#!/bin/sh\n"
        f'case " $* " in *" fetch "*) echo "$$ $*" >> {log} ;; esac\n'
        f'exec {real} "$@"\n')
    (wrapper / "git").chmod(0o755)
    monkeypatch.setenv("PATH", f"{wrapper}:{os.environ['PATH']}")

    def recorded():
        if not log.exists():
            return []
        return [tuple(line.split(" ", 1)) for line in log.read_text().splitlines()]

    return recorded


def environment(monkeypatch, tmp_path, machine="machine", **settings):
    """The bundle's process environment: our settings, and Airflow's storage path (one
    per machine)."""
    for name in [n for n in os.environ if n.startswith("AIRFLOW_ECS_")]:
        monkeypatch.delenv(name)
    values = {"AIRFLOW_ECS_DAGS_DIR": str(tmp_path / machine / "volume" / "dags"),
              "AIRFLOW_ECS_DAGS_VERSIONED": "true",
              "AIRFLOW_ECS_DAGS_KEEP_SECONDS": "0",
              **settings}
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_STORAGE_PATH",
                       str(tmp_path / machine / "bundles"))
    config.load(os.environ)  # the test's settings are valid ones


def files(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*"))
            if p.is_file()}


# --- git -----------------------------------------------------------------------------------
def test_a_version_is_built_with_the_long_lived_objects_out_of_full_collections(
        repo, git_daemon, tmp_path, monkeypatch):
    import gc

    a = repo.commit({"dags/a.py": "A1"})
    environment(monkeypatch, tmp_path, AIRFLOW_ECS_DAGS_SOURCE="git",
                AIRFLOW_ECS_DAGS_GIT_URL=f"git://127.0.0.1:{git_daemon}/dags.git")
    pinned = GitDagBundle(name=NAME, version=a)
    frozen = []
    build = pinned._build

    def recording(folder):
        frozen.append(gc.get_freeze_count())
        build(folder)

    monkeypatch.setattr(pinned, "_build", recording)
    assert gc.get_freeze_count() == 0
    pinned.initialize()
    assert len(frozen) == 1 and frozen[0] > 10_000, frozen
    assert gc.get_freeze_count() == 0
    assert files(pinned.path) == {"dags/a.py": "A1"}


def test_git_version_a_materialises_while_the_tracking_bundle_shows_b(repo, git_daemon,
                                                                       fetches, tmp_path,
                                                                       monkeypatch):
    a = repo.commit({"dags/a.py": "A1", "dags/common/util.py": "U", "README": "r"})
    url = f"git://127.0.0.1:{git_daemon}/dags.git"
    environment(monkeypatch, tmp_path, AIRFLOW_ECS_DAGS_SOURCE="git",
                AIRFLOW_ECS_DAGS_GIT_URL=url, AIRFLOW_ECS_DAGS_GIT_SUBDIR="dags")
    tracking = GitDagBundle(name=NAME)
    tracking.initialize()
    assert tracking.get_current_version().version == a
    b = repo.commit({"dags/a.py": "A2", "dags/b.py": "B"})
    tracking.refresh()
    assert tracking.get_current_version().version == b
    assert files(tracking.path) == {"a.py": "A2", "b.py": "B", "common/util.py": "U"}

    pinned = GitDagBundle(name=NAME, version=a)
    assert pinned.get_current_version().version == a
    before = len(fetches())
    pinned.initialize()
    assert files(pinned.path) == {"a.py": "A1", "common/util.py": "U"}
    assert pinned.path == Path(pinned.base_dir) / "versions" / a / "dags"
    assert len(fetches()) == before + 1
    assert a in fetches()[-1][1] and "--depth=1" in fetches()[-1][1]
    # The tracking bundle still shows B; a second task at A reuses the version.
    assert files(tracking.path)["a.py"] == "A2"
    again = GitDagBundle(name=NAME, version=a)
    again.initialize()
    assert again.path == pinned.path and len(fetches()) == before + 1

    # B as a version: files unchanged since A are linked from A's folder, not written.
    at_b = GitDagBundle(name=NAME, version=b)
    at_b.initialize()
    assert files(at_b.path) == {"a.py": "A2", "b.py": "B", "common/util.py": "U"}
    assert ((at_b.path / "common" / "util.py").stat().st_ino
            == (pinned.path / "common" / "util.py").stat().st_ino)
    assert files(pinned.path)["a.py"] == "A1"

    with pytest.raises(DagSyncError) as unknown:
        GitDagBundle(name=NAME, version="f" * 40).initialize()
    assert f"version {'f' * 40} of {url} could not be fetched" in str(unknown.value)
    assert not (Path(pinned.base_dir) / "versions" / ("f" * 40)).exists()
    with pytest.raises(DagSyncError, match="not a full commit sha"):
        GitDagBundle(name=NAME, version="main").initialize()
    with pytest.raises(DagSyncError, match="only the tracking bundle"):
        pinned.refresh()


def test_git_view_url_template():
    assert (browse_template("https://github.com/acme/dags.git", "")
            == "https://github.com/acme/dags/tree/{version}")
    assert (browse_template("git@gitlab.com:acme/dags.git", "dags")
            == "https://gitlab.com/acme/dags/-/tree/{version}/dags")
    assert browse_template("git://127.0.0.1:9418/dags.git", "") is None


def _initialise(version, barrier, results):
    """One task process: initialise the bundle at version, then read its whole tree."""
    barrier.wait(30)
    try:
        bundle = GitDagBundle(name=NAME, version=version)
        bundle.initialize()
        results.put((os.getpid(), files(bundle.path)))
    except BaseException as exc:
        results.put((os.getpid(), f"{type(exc).__name__}: {exc}"))


def test_git_twenty_processes_one_fetch_every_reader_sees_the_whole_version(
        repo, git_daemon, fetches, tmp_path, monkeypatch):
    content = {f"dags/team{i % 4}/dag_{i}.py": f"# dag {i}\n" * 50 for i in range(300)}
    a = repo.commit(content)
    repo.commit({"dags/team0/dag_0.py": "# newer\n"})  # the branch has moved past a
    environment(monkeypatch, tmp_path, AIRFLOW_ECS_DAGS_SOURCE="git",
                AIRFLOW_ECS_DAGS_GIT_URL=f"git://127.0.0.1:{git_daemon}/dags.git",
                AIRFLOW_ECS_DAGS_GIT_SUBDIR="dags")
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(20)
    results = context.Queue()
    children = [context.Process(target=_initialise, args=(a, barrier, results))
                for _ in range(20)]
    for child in children:
        child.start()
    seen = [results.get(timeout=120) for _ in children]
    for child in children:
        child.join(30)
    expected = {k.removeprefix("dags/"): v for k, v in content.items()}
    assert [s for _, s in seen if s != expected] == []
    assert len({pid for pid, _ in seen}) == 20
    assert len(fetches()) == 1, fetches()
    versions = Path(tmp_path / "machine" / "bundles" / NAME / "versions")
    assert sorted(p.name for p in versions.iterdir()) == [a]


class SlowRelay:
    """A TCP relay to 127.0.0.1:port that passes the server's answer on slowly, so a
    fetch through it is still running when the test kills it."""

    def __init__(self, port: int, rate: int = 64 * 1024):
        self.upstream = port
        self.rate = rate
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closed:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream))
            threading.Thread(target=self._pump, args=(client, upstream, None),
                             daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, self.rate),
                             daemon=True).start()

    @staticmethod
    def _pump(source, target, rate):
        try:
            while data := source.recv(4096):
                target.sendall(data)
                if rate:
                    time.sleep(len(data) / rate)
        except OSError:
            pass
        finally:
            for sock in (source, target):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self):
        self.closed = True
        self.server.close()


def test_git_fetch_killed_halfway_leaves_the_cache_usable(repo, git_daemon, fetches,
                                                         tmp_path, monkeypatch):
    rng = random.Random(7)
    big = {f"data/blob{i}.bin": rng.randbytes(200_000) for i in range(10)}
    a = repo.commit({**big, "a.py": "A"})
    relay = SlowRelay(git_daemon)
    try:
        environment(monkeypatch, tmp_path, AIRFLOW_ECS_DAGS_SOURCE="git",
                    AIRFLOW_ECS_DAGS_GIT_URL=f"git://127.0.0.1:{relay.port}/dags.git")
        context = multiprocessing.get_context("fork")
        results = context.Queue()
        child = context.Process(target=_initialise, args=(a, context.Barrier(1), results))
        child.start()
        deadline = time.monotonic() + 30
        while not fetches() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert fetches(), "the child never started its fetch"
        time.sleep(1.0)  # well inside the transfer (about 30 s at the relay's rate)
        git_pid = int(fetches()[0][0])
        cache = tmp_path / "machine" / "bundles" / NAME / "repo.git"
        assert (cache / "shallow.lock").exists()  # killed while git holds the cache
        os.kill(child.pid, signal.SIGKILL)
        os.killpg(git_pid, signal.SIGKILL)  # git leads a process group of its own
        child.join(10)
        assert results.empty()
    finally:
        relay.close()
    versions = tmp_path / "machine" / "bundles" / NAME / "versions"
    assert not (versions / a).exists()
    assert [p.name for p in versions.iterdir() if p.name.startswith(f".{a}.")]  # left over

    # The next task (straight to the server now) builds the version from that cache.
    monkeypatch.setenv("AIRFLOW_ECS_DAGS_GIT_URL", f"git://127.0.0.1:{git_daemon}/dags.git")
    bundle = GitDagBundle(name=NAME, version=a)
    bundle.initialize()
    assert (bundle.path / "a.py").read_text() == "A"
    assert {p.name: p.read_bytes() for p in (bundle.path / "data").iterdir()} == {
        Path(k).name: v for k, v in big.items()}
    assert len(fetches()) >= 2
    assert sorted(p.name for p in versions.iterdir()) == [a]  # the leftover is gone


# --- removal -------------------------------------------------------------------------------
def test_unused_versions_are_removed_after_the_grace_period_used_ones_kept(
        repo, tmp_path, monkeypatch):
    shas = [repo.commit({"a.py": f"v{i}"}) for i in range(4)]
    environment(monkeypatch, tmp_path, AIRFLOW_ECS_DAGS_SOURCE="git",
                AIRFLOW_ECS_DAGS_GIT_URL=f"file://{repo.bare}",
                AIRFLOW_ECS_DAGS_VERSION_KEEP_SECONDS="60")
    bundles = [GitDagBundle(name=NAME, version=sha) for sha in shas]
    for bundle in bundles:
        bundle.initialize()
    store = bundles[0].store
    running, airflow_running, recent, unused = shas
    bundles[1]._use.release()  # Airflow's task lock alone holds this one
    bundles[2]._use.release()
    bundles[3]._use.release()
    old = time.time() - 3600
    for sha in (running, airflow_running, unused):
        os.utime(store.uses / sha, (old, old))
    with BundleVersionLock(bundle_name=NAME, bundle_version=airflow_running):
        removed = bundles[0].store.remove_unused(60, in_use=bundles[0]._airflow_in_use)
    assert removed == [unused]
    assert sorted(store.published()) == sorted([running, airflow_running, recent])
    assert not (store.versions / unused).exists() and not (store.uses / unused).exists()
    assert (bundles[0].path / "a.py").read_text() == "v0"

    # Once nothing holds them, the old ones go; the recently used one stays.
    bundles[0]._use.release()
    for sha in (running, airflow_running):
        os.utime(store.uses / sha, (old, old))
    assert sorted(store.remove_unused(60)) == sorted([running, airflow_running])
    assert store.published() == [recent]
    # A removed version is built again by the next task that needs it.
    again = GitDagBundle(name=NAME, version=unused)
    again.initialize()
    assert (again.path / "a.py").read_text() == "v3"


def test_a_reader_never_sees_a_version_half_removed(tmp_path):
    """Removals race with processes taking the version: each sees it whole or builds it."""
    sha = "0" * 40
    store = VersionStore(tmp_path / "store", "test", wait=30)
    built = []

    def build(folder):
        built.append(folder)
        for i in range(200):
            (folder / f"f{i}.py").write_text("x")

    problems = []
    removals = 0
    # Rounds until removals have raced with the reader a few times: a reader that holds
    # the version at the moment of a removal makes it skip that round, as it must.
    for _ in range(500):
        use, _ = store.acquire(sha, build)
        use.release()
        os.utime(store.uses / sha, (0, 0))
        stop = threading.Event()

        def reader(stop=stop):
            while not stop.is_set():
                use, _ = store.acquire(sha, build)
                count = len(list(use.path.iterdir()))
                use.release()
                if count != 200:
                    problems.append(count)
                time.sleep(0.0005)  # windows between uses, where a removal can start

        thread = threading.Thread(target=reader)
        thread.start()
        removals += len(store.remove_unused(0))
        stop.set()
        thread.join()
        if removals >= 5:
            break
    assert problems == []
    assert removals >= 5  # removals happened, racing the reader
    assert len(built) >= 2  # and the version was built again


# --- S3 ------------------------------------------------------------------------------------
@pytest.fixture
def s3(moto):
    client = boto3.client("s3", endpoint_url=moto.url, region_name="eu-west-1")
    client.create_bucket(Bucket="dags", CreateBucketConfiguration={"LocationConstraint":
                                                                   "eu-west-1"})
    proxy = AwsProxy(moto.url)
    proxy.moto = moto.url
    yield client, proxy
    proxy.close()


def s3_settings(monkeypatch, tmp_path, endpoint, machine, **extra):
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    environment(monkeypatch, tmp_path, machine, AIRFLOW_ECS_DAGS_SOURCE="s3",
                AIRFLOW_ECS_DAGS_S3_URI="s3://dags/prefix/", **extra)


def object_gets(proxy):
    return [path for method, path in proxy.paths
            if method == "GET" and "list-type=2" not in path and "/manifests/" not in path]


def test_s3_two_versions_by_digest_the_older_builds_while_its_objects_exist(
        s3, tmp_path, monkeypatch):
    client, proxy = s3
    client.put_object(Bucket="dags", Key="prefix/a.py", Body=b"A1")
    client.put_object(Bucket="dags", Key="prefix/lib/util.py", Body=b"U")
    # The dag-processor: tracks the prefix and keeps each version's manifest (straight to
    # the server: the recording proxy speaks HTTP/1.0, without the 100-continue of a PUT).
    s3_settings(monkeypatch, tmp_path, proxy.moto, "processor",
                AIRFLOW_ECS_DAGS_S3_MANIFEST_URI="s3://dags/manifests/")
    tracking = S3DagBundle(name=NAME)
    tracking.initialize()
    first = tracking.get_current_version().version
    client.put_object(Bucket="dags", Key="prefix/b.py", Body=b"B")
    tracking.refresh()
    second = tracking.get_current_version().version
    assert first != second and len(first) == 16
    assert files(tracking.path) == {"a.py": "A1", "b.py": "B", "lib/util.py": "U"}
    kept = {o["Key"] for o in client.list_objects_v2(Bucket="dags",
                                                    Prefix="manifests/")["Contents"]}
    assert kept == {f"manifests/{first}.json", f"manifests/{second}.json"}

    # A worker (its own machine): the older version, from its manifest.
    s3_settings(monkeypatch, tmp_path, proxy.url, "worker",
                AIRFLOW_ECS_DAGS_S3_MANIFEST_URI="s3://dags/manifests/")
    proxy.paths.clear()
    old = S3DagBundle(name=NAME, version=first)
    old.initialize()
    assert files(old.path) == {"a.py": "A1", "lib/util.py": "U"}
    assert len(object_gets(proxy)) == 2
    # The current one: only b.py is downloaded, the rest is linked from the older version.
    proxy.paths.clear()
    new = S3DagBundle(name=NAME, version=second)
    new.initialize()
    assert files(new.path) == {"a.py": "A1", "b.py": "B", "lib/util.py": "U"}
    gets = object_gets(proxy)
    assert len(gets) == 1 and gets[0].startswith("/dags/prefix/b.py?"), gets
    assert (new.path / "a.py").stat().st_ino == (old.path / "a.py").stat().st_ino

    # An object of the older version replaced: that version can't be built any more, and
    # the task fails naming the version, the source and the object.
    client.put_object(Bucket="dags", Key="prefix/lib/util.py", Body=b"U2")
    s3_settings(monkeypatch, tmp_path, proxy.url, "worker2",
                AIRFLOW_ECS_DAGS_S3_MANIFEST_URI="s3://dags/manifests/")
    with pytest.raises(DagSyncError) as replaced:
        S3DagBundle(name=NAME, version=first).initialize()
    message = str(replaced.value)
    assert f"version {first} of s3://dags/prefix/ could not be fetched" in message
    assert "s3://dags/prefix/lib/util.py was replaced after it was listed" in message
    assert not (tmp_path / "worker2" / "bundles" / NAME / "versions" / first).exists()
    # Without kept manifests, only the current version can be built.
    s3_settings(monkeypatch, tmp_path, proxy.url, "worker3")
    with pytest.raises(DagSyncError, match="no manifest of older versions is kept"):
        S3DagBundle(name=NAME, version=second).initialize()
    with pytest.raises(DagSyncError, match="not a listing digest"):
        S3DagBundle(name=NAME, version="../../etc").initialize()


def test_s3_twenty_threads_fetch_each_object_once(s3, tmp_path, monkeypatch):
    client, proxy = s3
    for i in range(50):
        client.put_object(Bucket="dags", Key=f"prefix/d{i}.py", Body=b"x" * 1000)
    s3_settings(monkeypatch, tmp_path, proxy.url, "worker")
    from entrypoint.dagsync import s3fetch, s3source

    settings = config.load(os.environ)
    listing = s3source.listing(s3source.filesystem(settings, os.environ), settings,
                               s3fetch.Deadline(30))
    version = s3source.revision(listing.objects)
    proxy.paths.clear()
    barrier = threading.Barrier(20)
    seen, errors = [], []

    def task():
        barrier.wait(30)
        try:
            bundle = S3DagBundle(name=NAME, version=version)
            bundle.initialize()
            seen.append(len(list(bundle.path.iterdir())))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=task) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    assert seen == [50] * 20
    gets = object_gets(proxy)
    assert len(gets) == 50 and len(set(gets)) == 50


def test_airflow_builds_the_bundle_from_the_list_the_entrypoint_sets(repo, tmp_path,
                                                                     monkeypatch):
    """The contract with Airflow: its bundle manager imports the class named by the
    defaults' dag_bundle_config_list, with its kwargs, tracking and at a version."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager

    from entrypoint import defaults

    a = repo.commit({"a.py": "A"})
    b = repo.commit({"a.py": "B"})
    environment(monkeypatch, tmp_path, AIRFLOW_ECS_DAGS_SOURCE="git",
                AIRFLOW_ECS_DAGS_GIT_URL=f"file://{repo.bare}",
                AIRFLOW_ECS_DAGS_REFRESH_SECONDS="45")
    env = defaults.apply("dag-processor", config.load(os.environ), {})
    monkeypatch.setenv("AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST",
                       env["AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST"])
    monkeypatch.setenv("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    manager = DagBundlesManager()
    tracking = next(iter(manager.get_all_dag_bundles()))
    assert isinstance(tracking, GitDagBundle) and tracking.refresh_interval == 45
    tracking.initialize()
    assert tracking.get_current_version().version == b
    assert (tracking.path / "a.py").read_text() == "B"
    at_a = manager.get_bundle(NAME, version=a)
    at_a.initialize()
    assert (at_a.path / "a.py").read_text() == "A"
