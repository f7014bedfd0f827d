"""The 20-task fan-out DAG on the local compose stack: our tuned defaults against Airflow's,
with and without Airflow's example DAGs.

The stack is the one `make up` starts (compose.yaml: Redis, PostgreSQL, scheduler,
webserver, two Celery workers), under its own compose project name and web port so
that a stack started with `make up` is left alone. It runs three times, each time from
empty volumes:
- ours: exactly as `make up` runs it, the entrypoint filling in its tuned defaults
  (entrypoint/defaults.py);
- Airflow's: a compose override file sets each of those tuned variables to Airflow
  3.3's own default, read from the Airflow installed in the image
  (`conf.get_default_value`). Variables compose.yaml sets itself are the user's
  settings in all runs and are left as they are;
- Airflow's with the examples off: the same, and AIRFLOW__CORE__LOAD_EXAMPLES=False.

In each, example_fanout (20 mapped tasks, then one that gathers them) is triggered
through the REST API, one run after another. Wall time is from the trigger request
to the last task instance's end (its end_date, same host clock). Every task
instance must end in success on its first try, none missing.

Each configuration's stack is started STARTS times, the configurations taking turns
(ours, Airflow's, Airflow's without examples, then again), so that a slow spell of
the machine falls on all of them. A start gives one first run, and the first runs
of one configuration differ by seconds from one start to the next: the first run's
figure is the median over the starts, the median's over every run of every start.
CPU, memory and database connections are read in the first start only.
"""

from __future__ import annotations

import collections
import functools
import json
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

from demo import Client, read_env_file, wait_for  # noqa: E402

from entrypoint.config import SCHEDULER_BUSY_HOLD_SECONDS, load  # noqa: E402
from entrypoint.defaults import tuned  # noqa: E402
from entrypoint.tools import cost  # noqa: E402
from tests.support import pg_activity  # noqa: E402

# BENCH_PROJECT: another compose project name, so two checkouts can run this side by side.
PROJECT = os.environ.get("BENCH_PROJECT", "airflow-ecs-bench-fanout")
DAG_ID = "example_fanout"
TASKS = 21  # 20 mapped "work" tasks and "gather"
RUNS = 5
STARTS = 3  # stack starts per configuration, from empty volumes each time
RUN_TIMEOUT = 600
IDLE_SECONDS = 30  # CPU of the idle stack is measured over this long after the runs
# ...from this long after the runs, in every configuration: the stack at rest, once our
# scheduler's short pause after its last work has ended (entrypoint.scheduler.pacing)
# and the last run's stragglers (log uploads, heartbeats) have settled.
SETTLE_SECONDS = SCHEDULER_BUSY_HOLD_SECONDS + 5
# A scheduler started anew parses the DAG folder and finds its place first.
RESTART_SETTLE_SECONDS = 60
VERSION = re.search(r'(?m)^version = "(.*)"', (ROOT / "pyproject.toml").read_text()).group(1)
SERVICES = ("migrate", "scheduler", "webserver", "worker-1", "worker-2")

# Airflow's own default for each variable, from the Airflow in the image (AIRFLOW_HOME
# there is /opt/airflow). visibility_timeout has none in config.yml: the Celery provider
# then picks one for brokers that support it, which DEFAULT_CELERY_CONFIG shows.
DEFAULTS_SCRIPT = """
import json, sys
from airflow.configuration import conf
out = {}
for name in sys.argv[1:]:
    section, key = name.removeprefix("AIRFLOW__").lower().split("__", 1)
    value = conf.get_default_value(section, key)
    if value is None and (section, key) == ("celery_broker_transport_options",
                                            "visibility_timeout"):
        from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG
        value = DEFAULT_CELERY_CONFIG["broker_transport_options"]["visibility_timeout"]
    out[name] = None if value is None else str(value)
print(json.dumps(out))
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Stack:
    def __init__(self, port: int, override: Path | None):
        self.port = port
        self.files = ["-f", str(ROOT / "compose.yaml"), "-f", str(postgres_logging())]
        if override:
            self.files += ["-f", str(override)]
        self.env = {**os.environ, "IMAGE_PREFIX": os.environ.get("IMAGE_PREFIX", "airflow-ecs/"),
                    "TAG": os.environ.get("TAG", VERSION), "WEB_PORT": str(port)}

    def compose(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        return subprocess.run(["docker", "compose", "-p", PROJECT, *self.files, *args],
                              cwd=ROOT, env=self.env, capture_output=True, text=True,
                              timeout=timeout)

    def up(self) -> float:
        started = time.monotonic()
        result = self.compose("up", "-d", "--wait", "--wait-timeout", "400", timeout=900)
        if result.returncode != 0 and "is unhealthy" in result.stderr:
            # On a loaded machine a service can miss its start period and be marked
            # unhealthy, then pass: Docker keeps probing. Wait for that, within the bound.
            if self.healthy_by(started + 400):
                return time.monotonic() - started
        if result.returncode != 0:
            ps = self.compose("ps", "-a").stdout
            logs = self.compose("logs", "--tail", "30").stdout
            raise RuntimeError(f"the stack did not become healthy:\n{result.stderr[-2000:]}\n"
                               f"{ps}\n{logs[-6000:]}")
        return time.monotonic() - started

    def healthy_by(self, deadline: float) -> bool:
        """Whether every service with a health check is healthy before deadline (monotonic),
        and none has exited with an error."""
        while time.monotonic() < deadline:
            out = self.compose("ps", "-a", "--format", "json").stdout
            rows = [json.loads(line) for line in out.splitlines() if line.strip()]
            if any(r.get("State") == "exited" and r.get("ExitCode") for r in rows):
                return False
            if rows and all(r.get("Health") in ("", "healthy") for r in rows):
                return True
            time.sleep(5)
        return False

    def down(self) -> None:
        self.compose("down", "--volumes", "--remove-orphans", timeout=300)

    def recreate(self, service: str, override: Path | None) -> None:
        """Start service anew, with override's settings added, and wait for it to be healthy."""
        files = [*self.files, *(["-f", str(override)] if override else [])]
        result = subprocess.run(["docker", "compose", "-p", PROJECT, *files, "up", "-d",
                                 "--force-recreate", "--no-deps", "--wait", "--wait-timeout",
                                 "400", service], cwd=ROOT, env=self.env, capture_output=True,
                                text=True, timeout=600)
        if result.returncode != 0:
            raise RuntimeError(f"{service} did not become healthy again:\n"
                               f"{result.stderr[-2000:]}")

    def database_log(self) -> str:
        return self.compose("logs", "--no-log-prefix", "postgres").stdout

    def environment(self, service: str) -> dict[str, str]:
        config = json.loads(self.compose("config", "--format", "json").stdout)
        return {k: str(v) for k, v in config["services"][service]["environment"].items()}


def airflow_defaults(names: list[str]) -> dict[str, str | None]:
    image = f"{os.environ.get('IMAGE_PREFIX', 'airflow-ecs/')}base:{VERSION}"
    result = subprocess.run(["docker", "run", "--rm", "--entrypoint", "python", "-e",
                             "AIRFLOW__CELERY__BROKER_URL=redis://redis:6379/0", image, "-c",
                             DEFAULTS_SCRIPT, *names], capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def compose_override(path: Path, services: dict[str, dict]) -> Path:
    """A compose override file at path setting services' keys; JSON is YAML."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"services": services}, indent=2))
    return path


def override_file(directory: Path, values: dict[str, str]) -> Path:
    """One environment block per Airflow service, values quoted."""
    return compose_override(directory / "airflow-defaults.yaml",
                            {s: {"environment": values} for s in SERVICES})


@functools.cache
def postgres_logging() -> Path:
    """Every stack's PostgreSQL logs each session's start and end (pg_activity.LOGGING): the
    connections each service held at once are counted from that log."""
    return compose_override(Path(tempfile.gettempdir()) / f"{PROJECT}-postgres-logging.yaml",
                            {"postgres": {"command": ["postgres", *pg_activity.LOGGING]}})


def cpu_seconds() -> dict[str, float]:
    """CPU seconds used so far by each container of the bench's compose project."""
    import docker

    client = docker.from_env()
    try:
        out = {}
        for container in client.containers.list(
                filters={"label": f"com.docker.compose.project={PROJECT}"}):
            service = container.labels.get("com.docker.compose.service", container.name)
            usage = container.stats(stream=False)["cpu_stats"]["cpu_usage"]["total_usage"]
            out[service] = usage / 1e9
        return out
    finally:
        client.close()


def cpu_since(before: dict[str, float]) -> dict[str, float]:
    after = cpu_seconds()
    return {name: after[name] - before.get(name, 0.0) for name in sorted(after)}


# Where the kernel keeps a container's peak memory, seen from the host: cgroup v2's
# memory.peak (systemd and cgroupfs drivers), then cgroup v1's max_usage_in_bytes. Both count
# the page cache the container's files occupy, as the ECS task's memory limit does.
PEAK_FILES = (
    ("cgroup v2 memory.peak", "/sys/fs/cgroup/system.slice/docker-{id}.scope/memory.peak"),
    ("cgroup v2 memory.peak", "/sys/fs/cgroup/docker/{id}/memory.peak"),
    ("cgroup v1 memory.max_usage_in_bytes",
     "/sys/fs/cgroup/memory/docker/{id}/memory.max_usage_in_bytes"),
    ("cgroup v1 memory.max_usage_in_bytes",
     "/sys/fs/cgroup/memory/system.slice/docker-{id}.scope/memory.max_usage_in_bytes"),
)
STATS_SOURCE = "largest `docker stats` memory usage sampled every second"


def peak_bytes(container) -> tuple[int, str]:
    """The container's peak memory so far and where it was read; `docker stats`' current
    usage where no cgroup file is readable (the sampler then keeps the largest)."""
    for source, pattern in PEAK_FILES:
        try:
            return int(Path(pattern.format(id=container.id)).read_text()), source
        except (OSError, ValueError):
            continue
    return int(container.stats(stream=False)["memory_stats"].get("usage", 0)), STATS_SOURCE


class PeakSampler:
    """Samples every container of the bench's project once a second, from before the stack
    starts until stop(): the migrate container exits during `up`, its cgroup with it, so
    its figure is the last sample before it ended (within a second of its end)."""

    def __init__(self) -> None:
        self.peaks: dict[str, int] = {}
        self.sources: set[str] = set()
        # Each address a container of the stack had: the containers (id: service) that had
        # it. Docker hands a stopped container's address (migrate's) to the next it starts.
        self.addresses: dict[str, dict[str, str]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.sample()
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            try:
                self.sample()
            except Exception:  # a container that left between list and read
                continue

    def sample(self) -> None:
        import docker

        client = docker.from_env()
        try:
            containers = client.containers.list(
                filters={"label": f"com.docker.compose.project={PROJECT}"})
            for container in containers:
                service = container.labels.get("com.docker.compose.service", container.name)
                try:
                    value, source = peak_bytes(container)
                except Exception:  # stopped between list and read
                    continue
                self.peaks[service] = max(self.peaks.get(service, 0), value)
                self.sources.add(source)
                for address in pg_activity.addresses(container.attrs):
                    self.addresses.setdefault(address, {})[container.id] = service
        finally:
            client.close()


def database_connections(log: str, addresses: dict[str, dict[str, str]]) -> dict[str, int]:
    """The most connections to the stack's PostgreSQL each compose service held at once,
    from the server's log and the containers' addresses (PeakSampler.addresses). A session
    is the service's whose container had its address when it began: Docker's record of
    each container's start and end tells the holders of one address apart. One from an
    address no container had, or from none at that time, is an error (it would go
    uncounted)."""
    import docker

    client = docker.from_env()
    lives: dict[str, list[tuple[float, float, str]]] = {}
    try:
        for address, holders in addresses.items():
            for container_id, service in holders.items():
                state = client.api.inspect_container(container_id)["State"]
                ended = (epoch(state["FinishedAt"]) if not state["Running"]
                         else time.time())
                lives.setdefault(address, []).append((epoch(state["StartedAt"]), ended,
                                                      service))
    finally:
        client.close()

    def name_of(address: str, when: float) -> str:
        for started, ended, service in lives.get(address, []):
            if started <= when <= ended:
                return service
        return f"{address} at {datetime.fromtimestamp(when).isoformat()}"

    peaks = pg_activity.peaks_from_log(log, name_of)
    services = {s for holders in addresses.values() for s in holders.values()}
    strangers = sorted(set(peaks) - services)
    if strangers:
        raise RuntimeError(f"connections to PostgreSQL from {', '.join(strangers)}, which no "
                           "container of the stack had then")
    if not peaks:
        raise RuntimeError("PostgreSQL's log names no connection: is log_connections on?\n"
                           + log[-2000:])
    return peaks


def role_of(service: str) -> str:
    """compose.yaml's service name as a role: worker-1 and worker-2 are workers."""
    return re.sub(r"-\d+$", "", service)


def epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def login(port: int) -> Client:
    secrets = read_env_file(ROOT / ".local" / "secrets.env")
    api = Client(f"http://127.0.0.1:{port}")
    deadline = time.monotonic() + 120
    answer = wait_for("a token", deadline, lambda: api.call(
        "POST", "/auth/token", {"username": "admin",
                                "password": secrets["AIRFLOW_ECS_ADMIN_PASSWORD"]})[1])
    api.token = answer["access_token"]
    return api


def fanout_runs(api: Client) -> tuple[list[dict], float]:
    """Wait for the DAG, then trigger it RUNS times in a row; one record per run."""
    started = time.monotonic()
    wait_for(f"{DAG_ID} to be parsed", time.monotonic() + 600,
             lambda: api.call("GET", f"/api/v2/dags/{DAG_ID}", ok=(200, 404))[0] == 200)
    parsed = time.monotonic() - started
    api.call("PATCH", f"/api/v2/dags/{DAG_ID}", {"is_paused": False})
    records = []
    for _ in range(RUNS):
        triggered = time.time()
        _, dag_run = api.call("POST", f"/api/v2/dags/{DAG_ID}/dagRuns", {"logical_date": None})
        path = f"/api/v2/dags/{DAG_ID}/dagRuns/{urllib.parse.quote(dag_run['dag_run_id'], safe='')}"

        def ended(path=path):
            state = api.call("GET", path)[1]["state"]
            return state if state in ("success", "failed") else None

        state = wait_for(f"run {dag_run['dag_run_id']}", time.monotonic() + RUN_TIMEOUT, ended,
                         interval=0.5)
        tis = api.call("GET", f"{path}/taskInstances?limit=100")[1]["task_instances"]
        ends = [epoch(ti["end_date"]) for ti in tis if ti.get("end_date")]
        records.append({
            "state": state,
            "wall": max(ends) - triggered if ends else float("nan"),
            "count": len(tis),
            "success": sum(ti.get("state") == "success" for ti in tis),
            "retried": sum((ti.get("try_number") or 1) > 1 for ti in tis),
            "hosts": collections.Counter(ti.get("hostname") or "?" for ti in tis),
        })
    return records, parsed


def idle_after_recreating(stack: Stack, override: Path | None) -> dict[str, float]:
    """The stack's CPU at rest once its scheduler has started anew (with override's
    settings) and has parsed the DAG folder again."""
    stack.recreate("scheduler", override)
    time.sleep(RESTART_SETTLE_SECONDS)
    before = cpu_seconds()
    time.sleep(IDLE_SECONDS)
    return cpu_since(before)


def measure(name: str, port: int, override: Path | None,
            short_pause: Path | None = None) -> dict:
    """Start the stack, run the fan-outs, read its CPU at rest; with short_pause, also
    the CPU at rest of a scheduler started anew without, then with, those settings."""
    stack = Stack(port, override)
    stack.down()
    try:
        with PeakSampler() as sampler:
            startup = stack.up()
            api = login(port)
            before, started = cpu_seconds(), time.monotonic()
            records, parsed = fanout_runs(api)
            busy, busy_wall = cpu_since(before), time.monotonic() - started
        connections = database_connections(stack.database_log(), sampler.addresses)
        time.sleep(SETTLE_SECONDS)
        before = cpu_seconds()
        time.sleep(IDLE_SECONDS)
        idle = cpu_since(before)
        pacing = ({"paced": idle_after_recreating(stack, None),
                   "short": idle_after_recreating(stack, short_pause)} if short_pause else {})
        return {"name": name, "override": override, "startup": startup, "parsed": parsed,
                "runs": records, "starts": [{"startup": startup, "runs": records}],
                "busy": busy, "busy_wall": busy_wall, "idle": idle, "pacing": pacing,
                "peaks": sampler.peaks, "peak_sources": sorted(sampler.sources),
                "connections": connections}
    finally:
        stack.down()


def start_again(port: int, result: dict) -> None:
    """One more start of result's configuration from empty volumes, with its fan-out runs
    only; added to result["starts"]."""
    stack = Stack(port, result["override"])
    stack.down()
    try:
        startup = stack.up()
        records, _ = fanout_runs(login(port))
        result["starts"].append({"startup": startup, "runs": records})
    finally:
        stack.down()


LOAD_EXAMPLES = "AIRFLOW__CORE__LOAD_EXAMPLES"
IDLE_SLEEP = "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME"
MEDIAN_GOAL = 2.0  # ours at least this many times as fast, median of the runs
FIRST_GOAL = 1.5  # and the first run after the stack starts (a new worker's first tasks)


def run() -> str:
    subprocess.run(["make", "-s", "build", "compose-plugin", "secrets"], cwd=ROOT, check=True,
                   capture_output=True)
    port = free_port()
    plain = Stack(port, None)
    compose_env = plain.environment("scheduler")
    names = [d.name for d in tuned(load(compose_env))]
    users = [n for n in names if n in compose_env]
    theirs = airflow_defaults([n for n in names if n not in users])
    missing = [n for n, v in theirs.items() if v is None]
    values = {n: v for n, v in theirs.items() if v is not None}
    ours = {d.name: d.value for d in tuned(load(compose_env))}
    short = load(compose_env).scheduler_busy_sleep_seconds
    # Nobody runs production with Airflow's 56 example DAGs: the user's real alternative
    # is Airflow's defaults with the examples off.
    no_examples = {**values, LOAD_EXAMPLES: "False"}

    with tempfile.TemporaryDirectory(prefix="bench-fanout-") as tmp:
        # The scheduler's pacing (entrypoint.scheduler.pacing) against its short pause all
        # the time: Airflow's own setting at the short pause.
        short_pause = override_file(Path(tmp) / "short", {IDLE_SLEEP: f"{short:g}"})
        results = [
            measure("ours (as `make up`)", port, None, short_pause),
            measure("Airflow's defaults", port, override_file(Path(tmp) / "a", values)),
            measure("Airflow's defaults, examples off", port,
                    override_file(Path(tmp) / "b", no_examples)),
        ]
        for _ in range(STARTS - 1):
            for result in results:
                start_again(port, result)

    def every_run(result: dict) -> list[dict]:
        return [r for start in result["starts"] for r in start["runs"]]

    def median(result: dict) -> float:
        return statistics.median(r["wall"] for r in every_run(result))

    def first(result: dict) -> float:
        return statistics.median(start["runs"][0]["wall"] for start in result["starts"])

    def lost(result: dict) -> int:
        return sum(TASKS - r["success"] for r in every_run(result))

    rows = []
    for result in results:
        for i, start in enumerate(result["starts"], 1):
            runs = start["runs"]
            hosts = sum((r["hosts"] for r in runs), collections.Counter())
            rows.append(
                f"| {result['name']} | {i} | {start['startup']:.0f} s | "
                + ", ".join(f"{r['wall']:.1f}" for r in runs) + " s | "
                f"{sum(r['state'] == 'success' for r in runs)} of {len(runs)} | "
                f"{sum(r['success'] for r in runs)} of {sum(r['count'] for r in runs)} "
                f"(expected {TASKS * len(runs)}) | {sum(r['retried'] for r in runs)} | "
                + ", ".join(f"{h} {n}" for h, n in sorted(hosts.items())) + " |")
    totals = []
    for result in results:
        firsts = ", ".join(f"{s['runs'][0]['wall']:.1f}" for s in result["starts"])
        totals.append(f"- {result['name']}: median {median(result):.1f} s over "
                      f"{len(every_run(result))} runs, first run {first(result):.1f} s (median "
                      f"of {firsts} s); DAG parsed {result['parsed']:.0f} s after the first "
                      "start's stack was healthy")
    services = sorted(set().union(*(r["busy"] for r in results)))
    cpu_rows = []
    for result in results:
        busy = " | ".join(f"{result['busy'].get(s, 0):.1f} s" for s in services)
        idle = " | ".join(f"{100 * result['idle'].get(s, 0) / IDLE_SECONDS:.1f}%"
                          for s in services)
        cpu_rows.append(f"| {result['name']}: CPU during the runs ({result['busy_wall']:.0f} s, "
                        f"DAG wait included) | {busy} | {sum(result['busy'].values()):.1f} s |")
        cpu_rows.append(f"| {result['name']}: CPU while idle ({IDLE_SECONDS} s, from "
                        f"{SETTLE_SECONDS} s after the runs), share of one CPU | {idle} | "
                        f"{100 * sum(result['idle'].values()) / IDLE_SECONDS:.1f}% |")
    setting_rows = [f"| `{n}` | `{ours[n]}` | `{values[n]}` |" for n in values]
    no_loss = all(lost(r) == 0 and all(x["retried"] == 0 and x["count"] == TASKS
                                       for x in every_run(r)) for r in results)

    memory = memory_section(results[0])
    pacing = pacing_lines(results[0], short)

    def verdicts(other: dict) -> list[str]:
        by_median = median(other) / median(results[0])
        by_first = first(other) / first(results[0])
        return [
            f"- Against {other['name']}: median {median(results[0]):.1f} s against "
            f"{median(other):.1f} s, {by_median:.2f}x (goal: at least {MEDIAN_GOAL:g}x): "
            f"**{'met' if by_median >= MEDIAN_GOAL else 'missed'}**; first run "
            f"{first(results[0]):.1f} s against {first(other):.1f} s, {by_first:.2f}x "
            f"(goal: at least {FIRST_GOAL:g}x): "
            f"**{'met' if by_first >= FIRST_GOAL else 'missed'}**.",
        ]

    return "\n".join([
        "## Fan-out of 20 tasks on the local stack: our defaults against Airflow's",
        "",
        "compose.yaml's stack (2 Celery workers, on the same 2 CPUs as everything else), "
        f"started {STARTS} times for each configuration from empty volumes, the three "
        "configurations taking turns, all in the same run; after each start example_fanout is "
        f"triggered through the REST API, {RUNS} runs in a row. Wall time: trigger request to "
        "the last task instance's end. The first run is the first work of freshly started "
        "workers, what every scale-out meets; one start gives one such sample, so its figure "
        f"is the median of the {STARTS} starts' first runs, and the median is over all "
        f"{STARTS * RUNS} runs.",
        "",
        "The Airflow-defaults runs set these variables (compose override) to Airflow's own "
        "default, read from the Airflow in the image; the examples-off run also sets "
        f"`{LOAD_EXAMPLES}=False` (nobody runs production with the 56 example DAGs):",
        "",
        "| variable | ours | Airflow's default |",
        "| --- | --- | --- |",
        *setting_rows,
        "",
        f"Left as compose.yaml sets them in all runs (the user's settings): "
        f"{', '.join(f'`{n}`' for n in users) or 'none'}."
        + (f" No Airflow default found for: {', '.join(missing)}." if missing else ""),
        "",
        "| configuration | start | stack healthy after | wall of runs 1 to "
        f"{RUNS} | DAG runs success | task instances success | retried | tasks per worker |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
        *rows,
        "",
        *totals,
        "",
        "CPU by service in each configuration's first start (Docker's accounting; the "
        "scheduler service runs scheduler, dag-processor and triggerer):",
        "",
        "| | " + " | ".join(services) + " | all |",
        "| --- |" + " --- |" * (len(services) + 1),
        *cpu_rows,
        "",
        *verdicts(results[1]),
        *verdicts(results[2]),
        f"- No task lost (every one of the {TASKS} task instances of every run in success, "
        f"none retried): **{'met' if no_loss else 'missed'}**.",
        "",
        *pacing,
        *memory,
    ])


def pacing_lines(ours: dict, short: float) -> list[str]:
    """The scheduler's pacing at rest against its short pause all the time, same run."""
    if not ours["pacing"]:
        return []

    def share(cpu: dict[str, float], service: str) -> float:
        return 100 * cpu.get(service, 0.0) / IDLE_SECONDS

    paced, always = ours["pacing"]["paced"], ours["pacing"]["short"]
    parts = []
    for service in ("postgres", "scheduler"):
        a, b = share(paced, service), share(always, service)
        parts.append(f"{service} {a:.1f}% against {b:.1f}%"
                     + (f" ({b / a:.1f}x)" if a > 0 else ""))
    return [
        f"The scheduler at rest, {ours['name']}, after the runs: the scheduler service "
        f"started anew, {RESTART_SETTLE_SECONDS} s of rest, then its CPU and the others' over "
        f"{IDLE_SECONDS} s, once as it is (the short pause after an idle loop only while "
        "tasks are queued or running, entrypoint.scheduler.pacing) and once with "
        f"`{IDLE_SLEEP}` set to that short pause, "
        f"{short:g} s, so that it applies all the time: " + "; ".join(parts) + ".",
        "",
    ]


def memory_section(ours: dict) -> list[str]:
    """Peak memory per role in our configuration's runs: BENCHMARKS.md's table, and
    cost.PEAKS_FILE, which `airflow-ecs cost` compares with the task sizes."""
    from entrypoint.tools.ecs.render import render

    services = {s: b for s, b in ours["peaks"].items() if role_of(s) in cost.ROLES}
    roles: dict[str, int] = {}
    for service, value in services.items():
        roles[role_of(service)] = max(roles.get(role_of(service), 0), value)
    mib = {role: round(value / 2**20, 1) for role, value in sorted(roles.items())}
    held = {s: n for s, n in ours["connections"].items() if role_of(s) in cost.ROLES}
    connections: dict[str, int] = {}
    for service, count in held.items():
        connections[role_of(service)] = max(connections.get(role_of(service), 0), count)
    for role in cost.ROLES:  # a role that never connected held none
        connections.setdefault(role, 0)
    connections = dict(sorted(connections.items()))
    machine = (f"{platform.machine()}, {os.cpu_count()} CPUs, "
               f"{round(os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30)} GiB, "
               f"Linux {platform.release()}")
    record = {
        "measured": time.strftime("%Y-%m-%d"),
        "machine": machine,
        "source": ", ".join(ours["peak_sources"]),
        "stack": f"compose.yaml, {ours['name']}: start from empty volumes, then {RUNS} runs "
                 f"of {DAG_ID} ({TASKS} task instances each)",
        "peak_mib": mib,
        "containers_mib": {s: round(b / 2**20, 1) for s, b in sorted(services.items())},
        # The most metadata-database connections one task of each role held at once, and
        # the database's CPU while the stack (one scheduler task) idles: `airflow-ecs cost`
        # sizes the RDS instance from them.
        "peak_connections": connections,
        "containers_connections": dict(sorted(held.items())),
        "database_idle_cpu": round(ours["idle"].get("postgres", 0.0) / IDLE_SECONDS, 4),
        # PostgreSQL's CPU seconds during the runs (the DAG's first parse included) for
        # each task instance they ran.
        "database_cpu_per_task": round(ours["busy"].get("postgres", 0.0)
                                       / sum(r["count"] for r in ours["runs"]), 4),
    }
    cost.PEAKS_FILE.parent.mkdir(parents=True, exist_ok=True)
    cost.PEAKS_FILE.write_text(json.dumps(record, indent=2) + "\n")

    settings = sorted((ROOT / "task-definitions" / "settings").glob("*.json"))
    sizes = {path.stem: cost.task_memory(render(path, {}).stack) for path in settings}
    rows = []
    for role, peak in mib.items():
        cells = []
        for name in sizes:
            size = sizes[name].get(role)
            if size is None:
                cells.append("-")
                continue
            spare = size / peak - 1
            flag = "" if spare >= cost.HEADROOM else " (**below**)"
            cells.append(f"{size:,} MiB, {spare:+.0%}{flag}")
        rows.append(f"| {role} | {peak:,.1f} MiB | " + " | ".join(cells) + " |")
    per_container = ", ".join(f"{s} {v:,.1f} MiB" for s, v in record["containers_mib"].items())
    return [
        f"### Peak memory by role, {ours['name']}",
        "",
        f"Read from the host, each container's {record['source']} (the figure includes the "
        "page cache of the files the container read, which the ECS task's memory limit also "
        "counts), sampled every second from before `up` to the end of the runs: start-up, "
        f"the DAG's first parse and {RUNS} fan-out runs. The migrate container exits during "
        "`up`: its figure is the last sample before it ended. A worker's figure is the "
        f"larger of the two workers'. Per container: {per_container}. Written to "
        f"`{cost.PEAKS_FILE.relative_to(ROOT)}`, which `airflow-ecs cost` compares with the "
        "task sizes.",
        "",
        "Task memory each settings file gives the role (from its rendered CloudFormation "
        f"template), and the headroom above the peak (wanted: at least {cost.HEADROOM:.0%}):",
        "",
        "| role | peak | " + " | ".join(f"{name}.json" for name in sizes) + " |",
        "| --- | --- |" + " --- |" * len(sizes),
        *rows,
        "",
        f"### Metadata-database connections by role, {ours['name']}",
        "",
        "The most connections to PostgreSQL each container held at once, from start-up to "
        "the end of the runs, counted from the server's log of every session's start and end "
        "(`log_connections` and `log_disconnections` on in every configuration), so that a "
        "session shorter than any sampling interval counts too: "
        + ", ".join(f"{s} {n}" for s, n in record["containers_connections"].items())
        + ". A worker's figure is the larger of the two workers'. Celery's results go to "
        "Redis here (the local stack's secrets, scripts/local-secrets.sh), so a worker "
        "holds none once it has started (entrypoint.worker.orm_release); a database result "
        "backend adds one per worker "
        "process. PostgreSQL's own CPU while the stack idled, one scheduler task: "
        f"{100 * record['database_idle_cpu']:.1f}% of a CPU; during the runs, "
        f"{1000 * record['database_cpu_per_task']:.0f} ms for each task instance. "
        "`airflow-ecs cost` sizes the RDS "
        "instance of each settings file from these figures (docs/cost.md).",
        "",
        "| role | connections |",
        "| --- | ---: |",
        *(f"| {role} | {n} |" for role, n in connections.items()),
    ]


if __name__ == "__main__":
    print(run())
