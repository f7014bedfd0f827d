"""The end-to-end stack: our images wired the ECS way on one Docker network.

Redis, PostgreSQL, moto's server (SSM, Secrets Manager, S3) and a git server
run beside the scheduler group, the webserver and two workers. The Airflow
containers get only what an ECS task definition gives them: the SSM path,
the region and endpoint, and the DAG source settings. Every secret comes
from SSM or Secrets Manager. Every container runs with a read-only root
filesystem, tmpfs scratch, and an arbitrary UID with GID 0.

Ports are published on 127.0.0.1 only.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import boto3
from testcontainers.core.container import DockerContainer
from testcontainers.core.network import Network

from tests.support import pg_activity
from tests.support.http import http_json
from tests.support.images import ROOT, docker, image
from tests.support.waiting import wait_until

CONTAINERS = Path(__file__).resolve().parent / "containers"
BASE_OS = os.environ.get("E2E_BASE_OS_IMAGE", "debian:trixie-slim")
REDIS_IMAGE = "airflow-ecs-test/redis:e2e"
VALKEY_IMAGE = "airflow-ecs-test/valkey:e2e"
# The broker's server and its two commands, by the engine ElastiCache would run.
BROKERS = {"redis": (REDIS_IMAGE, "redis-server", "redis-cli"),
           "valkey": (VALKEY_IMAGE, "valkey-server", "valkey-cli")}
POSTGRES_IMAGE = "airflow-ecs-test/postgres:e2e"
MOTO_IMAGE = "airflow-ecs-test/moto:e2e"
GIT_IMAGE = "airflow-ecs-test/git:e2e"
AGENT_IMAGE = "airflow-ecs-test/agent:e2e"
REGION = "eu-west-1"
SSM_PATH = "/airflow/e2e/"
DAGS_BUCKET = "e2e-dags"
DAGS_PREFIX = "dags/"
LOGS_BUCKET = "e2e-logs"
# Versioned mode's S3 manifests: outside the DAG prefix, or each would change the version.
MANIFEST_URI = f"s3://{DAGS_BUCKET}/dag-versions/"
GIT_URL = "http://git:8000/dags.git"
GIT_TOKEN_SECRET = "e2e/git-token"
REFRESH_SECONDS = 10
HEARTBEAT_TIMEOUT = 30
QUEUED_TIMEOUT = 90
UID = "12345:0"  # an arbitrary UID with GID 0, as OpenShift-style platforms run images
TMPFS = {"/tmp": "size=256m", "/opt/airflow/logs": "size=256m",
         "/opt/airflow/dags-data": "size=256m"}


def build_test_images() -> None:
    ca_dir = CONTAINERS / "moto" / "ca"
    bundle = next((os.environ[v] for v in ("CA_BUNDLE", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE",
                                           "PIP_CERT") if os.environ.get(v)), None)
    target = ca_dir / "ca-bundle.crt"
    if bundle and Path(bundle).is_file():
        target.write_bytes(Path(bundle).read_bytes())
    agent = CONTAINERS / "agent" / "fake_agent.py"
    agent.write_bytes((ROOT / "tests" / "support" / "fake_agent.py").read_bytes())
    try:
        for name, tag, base, extra in (
                ("moto", MOTO_IMAGE, BASE_OS, ()), ("git", GIT_IMAGE, BASE_OS, ()),
                ("redis", REDIS_IMAGE, BASE_OS, ()),
                ("redis", VALKEY_IMAGE, BASE_OS, ("--build-arg", "SERVER=valkey")),
                ("postgres", POSTGRES_IMAGE, BASE_OS, ()),
                ("agent", AGENT_IMAGE, MOTO_IMAGE, ())):
            result = docker("build", "-q", "--build-arg", f"BASE_IMAGE={base}", *extra, "-t", tag,
                            str(CONTAINERS / name), check=False, timeout=1800)
            if result.returncode != 0:
                raise RuntimeError(f"building {tag} failed:\n{result.stdout}\n{result.stderr}")
    finally:
        target.unlink(missing_ok=True)
        agent.unlink(missing_ok=True)


@dataclass
class Secrets:
    fernet: str = field(default_factory=lambda: base64.urlsafe_b64encode(
        secrets.token_bytes(32)).decode())
    jwt: str = field(default_factory=lambda: secrets.token_urlsafe(64))
    api_key: str = field(default_factory=lambda: secrets.token_hex(32))
    db_password: str = field(default_factory=lambda: secrets.token_hex(16))
    redis_password: str = field(default_factory=lambda: secrets.token_hex(16))
    admin_password: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    git_token: str = field(default_factory=lambda: secrets.token_hex(20))
    rotated: list[str] = field(default_factory=list)  # earlier values, no less secret

    def values(self) -> list[str]:
        return [self.fernet, self.jwt, self.api_key, self.db_password, self.redis_password,
                self.admin_password, self.git_token, *self.rotated]


def published_port(container: DockerContainer, port: int) -> int:
    return int(container.get_exposed_port(port))


class Stack:
    """`versioned`: the DAG readers run with AIRFLOW_ECS_DAGS_VERSIONED (the DAGs as an
    Airflow versioned bundle); `workers`: how many workers start; `project` prefixes the
    containers' names; `broker`: the server behind the broker and result URLs (a key of
    BROKERS), on the network as "redis" either way."""

    def __init__(self, workdir: Path, versioned: bool = False, workers: int = 2,
                 project: str = "e2e", broker: str = "redis"):
        self.workdir = workdir
        self.versioned = versioned
        self.broker = broker
        self.workers = tuple(f"worker{n}" for n in range(1, workers + 1))
        self.project = project
        self.secrets = Secrets()
        self.network = Network()
        self.containers: dict[str, DockerContainer] = {}
        self.removed_logs: dict[str, str] = {}
        self.api_url = ""
        self.moto_url = ""
        self._token = ""
        self._replacements = 0

    # --- containers -------------------------------------------------------------------
    def _start(self, name: str, container: DockerContainer,
               aliases: tuple[str, ...] = ()) -> DockerContainer:
        container.with_network(self.network).with_network_aliases(name, *aliases)
        container.with_name(f"{self.project}-{name}-{os.getpid()}")
        container.start()
        self.containers[name] = container
        return container

    def _publish(self, container: DockerContainer, port: int) -> DockerContainer:
        # docker-py: publish on the loopback address only, on a free host port.
        container.ports[f"{port}/tcp"] = ("127.0.0.1", None)
        return container

    def airflow_env(self, source: str = "git", **extra: str) -> dict[str, str]:
        """What an ECS task definition gives a container: no secret values, only where
        to find them, the DAG source, and plain settings."""
        env = {
            "AIRFLOW_ECS_SSM_PATH": SSM_PATH,
            "AWS_REGION": REGION,
            "AWS_ENDPOINT_URL": "http://moto:5000",
            # On ECS the task role provides credentials; moto accepts any.
            "AWS_ACCESS_KEY_ID": "e2e",
            "AWS_SECRET_ACCESS_KEY": "e2e",
            "AIRFLOW_ECS_WAIT_TIMEOUT": "180",
            "AIRFLOW_ECS_STOP_TIMEOUT": "120",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": "http://webserver:8080/execution/",
            # Task logs go to S3: workers come and go, their disks with them.
            "AIRFLOW__LOGGING__REMOTE_LOGGING": "True",
            "AIRFLOW__LOGGING__REMOTE_BASE_LOG_FOLDER": f"s3://{LOGS_BUCKET}/task-logs",
            "AIRFLOW__LOGGING__REMOTE_LOG_CONN_ID": "aws_default",
            "AIRFLOW_CONN_AWS_DEFAULT": json.dumps({"conn_type": "aws"}),
            # A burst of 50 tasks queues at once (Airflow's default is 32).
            "AIRFLOW__CORE__PARALLELISM": "64",
            # Bounds the worker-loss scenario; the images' default is 120 s.
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": str(HEARTBEAT_TIMEOUT),
            # Bounds the broker scenario, where a message can be lost between Redis and a
            # worker (kombu's Redis transport pops it before the worker records it): Airflow
            # requeues a task queued this long; the images' default is 300 s, checked
            # every 120 s.
            "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": str(QUEUED_TIMEOUT),
            "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT_CHECK_INTERVAL": "15",
        }
        if source == "git":
            env.update({
                "AIRFLOW_ECS_DAGS_SOURCE": "git",
                "AIRFLOW_ECS_DAGS_GIT_URL": GIT_URL,
                "AIRFLOW_ECS_DAGS_GIT_REF": "main",
                "AIRFLOW_ECS_DAGS_GIT_TOKEN": f"secretsmanager:{GIT_TOKEN_SECRET}",
            })
        elif source == "s3":
            env.update({
                "AIRFLOW_ECS_DAGS_SOURCE": "s3",
                "AIRFLOW_ECS_DAGS_S3_URI": f"s3://{DAGS_BUCKET}/{DAGS_PREFIX}",
            })
        else:
            env["AIRFLOW_ECS_DAGS_SOURCE"] = "image"
        if source in ("git", "s3"):
            env["AIRFLOW_ECS_DAGS_DIR"] = "/opt/airflow/dags-data/dags"
            env["AIRFLOW_ECS_DAGS_REFRESH_SECONDS"] = str(REFRESH_SECONDS)
            if self.versioned:
                env["AIRFLOW_ECS_DAGS_VERSIONED"] = "true"
            if self.versioned and source == "s3":
                env["AIRFLOW_ECS_DAGS_S3_MANIFEST_URI"] = MANIFEST_URI
        env.update(extra)
        return env

    def airflow(self, name: str, role_image: str, command: str,
                env: dict[str, str] | None = None, publish: int | None = None,
                aliases: tuple[str, ...] = ()) -> DockerContainer:
        """Start an Airflow container hardened as the task definitions run it: read-only
        root filesystem, tmpfs scratch, an arbitrary UID with GID 0."""
        container = DockerContainer(role_image)
        container.with_command(command)
        container.with_envs(**(env or self.airflow_env()))
        container.with_kwargs(user=UID, read_only=True, hostname=name, stop_signal="SIGTERM")
        for path, options in TMPFS.items():
            container.with_tmpfs_mount(path, options)
        if publish:
            self._publish(container, publish)
        return self._start(name, container, aliases)

    def start(self) -> Stack:
        s = self.secrets
        self.network.create()
        # Passwords never go on a command line or into an environment: docker inspect
        # shows both. Redis and Postgres read theirs from files copied in.
        broker_image, server, cli = BROKERS[self.broker]  # cli: the wait's $0
        redis = DockerContainer(broker_image).with_command(
            ["sh", "-c", "while [ ! -s /tmp/redis.conf ]; do sleep 0.1; done; "
                         f"exec {server} /tmp/redis.conf"])
        redis.with_copy_into_container(
            f"bind 0.0.0.0\nprotected-mode no\ndir /tmp\nrequirepass {s.redis_password}\n"
            .encode(), "/tmp/redis.conf", 0o444)
        self._start("redis", redis)
        self._wait_exec("redis", ["sh", "-c", f"{self._cli_line()} | grep -q PONG", cli,
                                  "ping"])
        pg = DockerContainer(POSTGRES_IMAGE).with_envs(
            POSTGRES_USER="airflow", POSTGRES_DB="airflow",
            POSTGRES_PASSWORD_FILE="/tmp/postgres-password")
        pg.with_copy_into_container(s.db_password.encode(), "/tmp/postgres-password", 0o444)
        self._start("postgres", pg)
        moto = self._publish(DockerContainer(MOTO_IMAGE), 5000)
        self._start("moto", moto)
        git = DockerContainer(GIT_IMAGE)
        self._start("git", git)
        self.moto_url = f"http://127.0.0.1:{published_port(moto, 5000)}"
        self._wait_http(self.moto_url + "/moto-api/", "moto")
        self.seed_aws()
        self.seed_git()
        self._wait_postgres()
        migrate = self.airflow("migrate", image("base"), "run migrate",
                               env=self.airflow_env(source="image"))
        code = migrate.get_wrapped_container().wait(timeout=300)["StatusCode"]
        if code != 0:
            raise RuntimeError(f"migrate exited {code}:\n{self.logs('migrate')}")
        self.start_scheduler()
        self.start_webserver()
        for name in self.workers:
            self.start_worker(name)
        self.use_webserver("webserver")
        self._wait_http(self.api_url + "/api/v2/monitor/health", "webserver", timeout=300)
        for name in ("scheduler", "webserver", *self.workers):
            self.wait_healthy(name)
        return self

    def start_scheduler(self, source: str = "git", name: str = "scheduler") -> DockerContainer:
        return self.airflow(name, image("scheduler"),
                            "run scheduler+dag-processor+triggerer", env=self.airflow_env(source))

    def start_webserver(self, name: str = "webserver") -> DockerContainer:
        """A webserver that also answers to "webserver", the name in the workers' execution
        API URL, as every webserver task does behind one load balancer or Service Connect
        name. The api-server reads DAGs from the database: it needs no DAG source."""
        return self.airflow(name, image("webserver"), "run webserver",
                            env=self.airflow_env(source="image"), publish=8080,
                            aliases=("webserver",) if name != "webserver" else ())

    def use_webserver(self, name: str) -> None:
        """Send the test's API calls to this webserver (a login made on one is valid on
        all: they share the JWT secret)."""
        self.api_url = f"http://127.0.0.1:{published_port(self.containers[name], 8080)}"

    def start_worker(self, name: str, source: str = "git") -> DockerContainer:
        return self.airflow(name, image("worker"), "run worker", env=self.airflow_env(source))

    def replace(self, name: str, start) -> None:
        """Replace a container as an ECS rolling deployment (minimumHealthyPercent 100,
        maximumPercent 200) does: the new one first, healthy, then the old one stopped
        with SIGTERM and its stop timeout. `start(new_name)` starts the new container, under
        a name no container of this stack has had (Docker refuses a name in use)."""
        self._replacements += 1
        new = f"{name}-{self._replacements}"
        start(new)
        self.wait_healthy(new)
        docker("stop", "-t", "60", self.containers[name].get_wrapped_container().id,
               timeout=120)
        self.remove(name)
        self.containers[name] = self.containers.pop(new)

    def remove(self, name: str) -> None:
        container = self.containers.pop(name, None)
        if container is not None:
            self.removed_logs[name] = self.logs_of(container)
            with contextlib.suppress(Exception):
                container.get_wrapped_container().remove(force=True, v=True)

    def wait_healthy(self, name: str, timeout: float = 240) -> None:
        """Until Docker's HEALTHCHECK (`airflow-ecs health ROLE`) reports healthy; a
        container that stops fails at once."""
        def healthy(state: dict) -> bool:
            return state.get("Health", {}).get("Status") == "healthy"

        state = wait_until(lambda: self.inspect(name)["State"], f"{name} to be healthy",
                           timeout=timeout, interval=2,
                           accept=lambda state: healthy(state) or not state.get("Running"),
                           details=lambda: self.logs(name)[-5000:])
        if not healthy(state):
            health = state.get("Health", {}).get("Status")
            raise AssertionError(f"{name} not healthy ({state.get('Status')}, {health}):\n"
                                 f"{self.logs(name)[-5000:]}")

    def wait_exit(self, name: str, timeout: float) -> int:
        return self.containers[name].get_wrapped_container().wait(timeout=timeout)["StatusCode"]

    # --- seeding --------------------------------------------------------------------------
    def aws(self, service: str):
        return boto3.client(service, endpoint_url=self.moto_url, region_name=REGION,
                            aws_access_key_id="e2e", aws_secret_access_key="e2e")

    def seed_aws(self) -> None:
        s = self.secrets
        ssm = self.aws("ssm")
        params = {
            "AIRFLOW__CORE__FERNET_KEY": s.fernet,
            "AIRFLOW__API_AUTH__JWT_SECRET": s.jwt,
            "AIRFLOW__API__SECRET_KEY": s.api_key,
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN":
                f"postgresql+psycopg2://airflow:{s.db_password}@postgres:5432/airflow",
            "AIRFLOW__CELERY__RESULT_BACKEND": f"redis://:{s.redis_password}@redis:6379/1",
            "AIRFLOW__CELERY__BROKER_URL": f"redis://:{s.redis_password}@redis:6379/0",
            "AIRFLOW_ECS_ADMIN_PASSWORD": s.admin_password,
        }
        for name, value in params.items():
            ssm.put_parameter(Name=SSM_PATH + name, Value=value, Type="SecureString",
                              Overwrite=True)
        self.aws("secretsmanager").create_secret(Name=GIT_TOKEN_SECRET,
                                                 SecretString=s.git_token)
        s3 = self.aws("s3")
        for bucket in (DAGS_BUCKET, LOGS_BUCKET):
            s3.create_bucket(Bucket=bucket,
                             CreateBucketConfiguration={"LocationConstraint": REGION})
        for path in sorted((ROOT / "dags").glob("*.py")):
            self.put_s3_file(path.name, path.read_text())

    def put_s3_file(self, name: str, text: str) -> None:
        self.aws("s3").put_object(Bucket=DAGS_BUCKET, Key=DAGS_PREFIX + name,
                                  Body=text.encode())

    def git_exec(self, script: str) -> str:
        result = self.containers["git"].exec(["sh", "-ec", script])
        if result.exit_code != 0:
            raise RuntimeError(f"git server: {result.output.decode(errors='replace')}")
        return result.output.decode(errors="replace")

    def seed_git(self) -> None:
        token = self.secrets.git_token
        self.git_exec(
            f"printf %s '{token}' > /srv/token; git init -q --bare -b main /srv/git/dags.git; "
            "git init -q -b main /srv/work")
        for path in sorted((ROOT / "dags").glob("*.py")):
            self.put_git_file(path.name, path.read_text())
        self.git_commit("example DAGs")

    def publish_dag(self, name: str, text: str) -> None:
        """Add a DAG file to both DAG sources (the git repository and the S3 prefix)."""
        self.put_git_file(name, text)
        self.git_commit(f"add {name}")
        self.put_s3_file(name, text)

    def put_git_file(self, name: str, text: str) -> None:
        encoded = base64.b64encode(text.encode()).decode()
        self.git_exec(f"echo {encoded} | base64 -d > /srv/work/{name}")

    def git_commit(self, message: str) -> None:
        self.git_exec(
            "cd /srv/work && git add -A && git -c user.name=e2e -c user.email=e2e@example.com "
            f"commit -q -m '{message}' && git push -q /srv/git/dags.git HEAD:main")

    # --- waiting --------------------------------------------------------------------------
    def _wait_http(self, url: str, what: str, timeout: float = 120) -> None:
        def status() -> int:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.status

        wait_until(status, f"{what} to answer at {url}", timeout=timeout, interval=1,
                   accept=lambda code: code < 500, ignoring=(OSError, urllib.error.URLError),
                   details=self.all_logs)

    def _wait_postgres(self, timeout: float = 60) -> None:
        self._wait_exec("postgres", ["sh", "-c", "/usr/lib/postgresql/*/bin/pg_isready -h "
                                     "127.0.0.1 -U airflow"], timeout)

    def _wait_exec(self, name: str, command: list[str], timeout: float = 60) -> None:
        wait_until(lambda: self.containers[name].exec(command).exit_code == 0,
                   f"{name} to be ready", timeout=timeout, interval=0.5,
                   details=lambda: self.logs(name))

    # --- API ------------------------------------------------------------------------------
    def token(self, password: str | None = None) -> tuple[int, str]:
        code, body = http_json("POST", self.api_url + "/auth/token",
                               {"username": "admin",
                                "password": password or self.secrets.admin_password})
        return code, body.get("access_token", "")

    def api(self, method: str, path: str, body: dict | None = None) -> dict:
        if not self._token:
            code, self._token = self.token()
            assert code in (200, 201), f"login failed: HTTP {code}"
        code, reply = http_json(method, self.api_url + "/api/v2" + path, body, self._token)
        if code == 401:
            self._token = ""
        if code >= 400:
            raise RuntimeError(f"{method} {path}: HTTP {code}: {reply}")
        return reply

    def api_text(self, path: str) -> tuple[int, str]:
        """GET a streamed reply (task logs, one JSON object per line) with the admin's token."""
        if not self._token:
            _, self._token = self.token()
        request = urllib.request.Request(self.api_url + "/api/v2" + path, headers={
            "Authorization": f"Bearer {self._token}", "Accept": "application/x-ndjson"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, response.read().decode(errors="replace")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(errors="replace")

    def wait_for_dag(self, dag_id: str, timeout: float) -> dict:
        return wait_until(lambda: self.api("GET", f"/dags/{dag_id}"), f"DAG {dag_id} to appear",
                          timeout=timeout, interval=2, accept=lambda _: True,
                          ignoring=RuntimeError)

    def trigger(self, dag_id: str, conf: dict | None = None) -> str:
        self.api("PATCH", f"/dags/{dag_id}", {"is_paused": False})
        return self.api("POST", f"/dags/{dag_id}/dagRuns", {"logical_date": None,
                                                             "conf": conf or {}})["dag_run_id"]

    def run_dag(self, dag_id: str, timeout: float = 300, conf: dict | None = None) -> dict:
        return self.wait_run(dag_id, self.trigger(dag_id, conf), timeout)

    def wait_run(self, dag_id: str, run_id: str, timeout: float) -> dict:
        return wait_until(lambda: self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}"),
                          f"run {run_id} of {dag_id} to finish", timeout=timeout, interval=2,
                          accept=lambda run: run["state"] in ("success", "failed"))

    def wait_running(self, dag_id: str, run_id: str, task_id: str, timeout: float) -> dict:
        """The task instance once it runs on a worker (its hostname names the worker)."""
        return wait_until(
            lambda: self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}"),
            f"{dag_id}.{task_id} to run on a worker", timeout=timeout, interval=1,
            accept=lambda ti: ti["state"] == "running" and ti.get("hostname"))

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        return self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances")[
            "task_instances"]

    def _cli_line(self) -> str:
        """The broker's CLI with the password from its config file (never in an argument
        docker inspect would show), its arguments from the shell's "$@"."""
        cli = BROKERS[self.broker][2]
        return (f"{cli} --no-auth-warning -a \"$(sed -n 's/^requirepass //p' "
                "/tmp/redis.conf)\" \"$@\"")

    def broker_cli(self, *args: str) -> str:
        """What the broker's CLI prints for args, run in the broker's container."""
        out = self.containers["redis"].exec(["sh", "-c", self._cli_line(),
                                             BROKERS[self.broker][2], *args])
        assert out.exit_code == 0, out.output.decode(errors="replace")
        return out.output.decode()

    def db_connections(self) -> dict[str, int]:
        """Open connections to the metadata database, by the container holding them (the
        database's own sessions are not counted)."""
        names = {address: name for name in self.containers
                 for address in pg_activity.addresses(self.inspect(name))}
        counts = pg_activity.connections(self.containers["postgres"].get_wrapped_container(),
                                         names)
        assert counts is not None, "psql in the postgres container failed"
        return counts

    # --- diagnostics and clean-up ---------------------------------------------------------
    def logs(self, name: str) -> str:
        container = self.containers.get(name)
        if container is None:
            return self.removed_logs.get(name, "")
        return self.logs_of(container)

    @staticmethod
    def logs_of(container: DockerContainer) -> str:
        try:
            out, err = container.get_logs()
        except Exception as exc:  # diagnostics must not hide the failure
            return f"(no logs: {exc})"
        return (out + err).decode(errors="replace")

    def inspect(self, name: str) -> dict:
        return json.loads(docker("inspect", self.containers[name].get_wrapped_container().id)
                          .stdout)[0]

    def all_logs(self, tail: int = 150) -> str:
        parts = []
        for name in [*self.containers, *self.removed_logs]:
            lines = self.logs(name).splitlines()[-tail:]
            parts.append(f"----- {name} (last {len(lines)} lines) -----\n" + "\n".join(lines))
        return "\n".join(parts)

    def stop(self) -> None:
        for container in reversed(list(self.containers.values())):
            with contextlib.suppress(Exception):
                container.get_wrapped_container().remove(force=True, v=True)
        with contextlib.suppress(Exception):
            self.network.remove()
