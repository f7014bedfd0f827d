"""The local stack's parts: secrets generated once, the compose file wired the ECS way,
the Redis and PostgreSQL stand-ins, pushing to a registry, and the ECR login helper."""

from __future__ import annotations

import base64
import json
import os
import shutil
import stat
import subprocess
import sys
import urllib.request
from pathlib import Path

import psycopg2
import pytest
import redis

from tests.support.images import POSTGRES_IMAGE, REDIS_IMAGE, ROOT, TAG, VERSION, docker, running
from tests.support.servers import free_port
from tests.support.waiting import wait_until

AIRFLOW_SERVICES = ("migrate", "scheduler", "webserver", "worker-1", "worker-2")
SECRET_KEYS = ("AIRFLOW__CORE__FERNET_KEY", "AIRFLOW__API_AUTH__JWT_SECRET",
               "AIRFLOW__API__SECRET_KEY", "AIRFLOW_ECS_ADMIN_PASSWORD",
               "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__CELERY__BROKER_URL",
               "AIRFLOW__CELERY__RESULT_BACKEND")


def read_env(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines()
                if line and not line.startswith("#"))


# A project of its own: a stack of the machine's own (and its volumes) stays out of it.
SECRETS_PROJECT = "airflow-ecs-secrets-test"


def make_secrets(directory: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(ROOT / "scripts/local-secrets.sh")], capture_output=True,
                          text=True, timeout=60, env={**os.environ,
                                                      "COMPOSE_PROJECT_NAME": SECRETS_PROJECT,
                                                      "LOCAL_SECRETS_DIR": str(directory)})


# --- local secrets ------------------------------------------------------------------

def test_local_secrets_are_generated_once_private_and_strong(tmp_path):
    directory = tmp_path / "local"
    first = make_secrets(directory)
    assert first.returncode == 0, first.stderr
    secrets = read_env(directory / "secrets.env")
    assert set(SECRET_KEYS) <= set(secrets)
    for name in ("secrets.env", "postgres.env", "redis.env"):
        assert stat.S_IMODE((directory / name).stat().st_mode) == 0o600, name
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    # Nothing generated is printed.
    printed = first.stdout + first.stderr
    assert not [v for v in secrets.values() if v in printed]

    from cryptography.fernet import Fernet
    Fernet(secrets["AIRFLOW__CORE__FERNET_KEY"].encode())  # raises on a malformed key
    assert len(secrets["AIRFLOW__API_AUTH__JWT_SECRET"].encode()) >= 64
    db_password = read_env(directory / "postgres.env")["POSTGRES_PASSWORD"]
    redis_password = read_env(directory / "redis.env")["REDIS_PASSWORD"]
    assert f":{db_password}@postgres:" in secrets["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert secrets["AIRFLOW__CELERY__RESULT_BACKEND"] == f"redis://:{redis_password}@redis:6379/1"
    assert f":{redis_password}@redis:" in secrets["AIRFLOW__CELERY__BROKER_URL"]

    before = {n: (directory / n).read_bytes() for n in ("secrets.env", "postgres.env",
                                                         "redis.env")}
    again = make_secrets(directory)
    assert again.returncode == 0, again.stderr
    assert {n: (directory / n).read_bytes() for n in before} == before

    other = tmp_path / "other"
    assert make_secrets(other).returncode == 0
    assert read_env(other / "secrets.env") != secrets  # no fixed values


def test_local_secrets_refuse_a_partial_set(tmp_path):
    directory = tmp_path / "local"
    assert make_secrets(directory).returncode == 0
    (directory / "postgres.env").unlink()
    result = make_secrets(directory)
    assert result.returncode == 1
    assert "make down VOLUMES=1" in result.stderr
    assert not (directory / "postgres.env").exists()


def test_local_secrets_refuse_new_passwords_for_an_existing_database_volume(tmp_path):
    """Lost secrets beside a kept volume: PostgreSQL would refuse every new password."""
    volume = f"{SECRETS_PROJECT}_postgres-data"
    assert subprocess.run(["docker", "volume", "create", volume], capture_output=True,
                          timeout=60).returncode == 0
    try:
        result = make_secrets(tmp_path / "local")
    finally:
        subprocess.run(["docker", "volume", "rm", volume], capture_output=True, timeout=60)
    assert result.returncode == 1
    assert volume in result.stderr
    assert "make down VOLUMES=1" in result.stderr
    assert not (tmp_path / "local").exists()


# --- compose file -------------------------------------------------------------------

@pytest.fixture(scope="module")
def compose_config(compose_plugin, tmp_path_factory) -> dict:
    """`docker compose config` of the real compose file, with generated secrets."""
    workdir = tmp_path_factory.mktemp("compose")
    shutil.copy(ROOT / "compose.yaml", workdir / "compose.yaml")
    assert make_secrets(workdir / ".local").returncode == 0
    env = {k: v for k, v in os.environ.items()
           if k not in ("IMAGE_PREFIX", "TAG", "REDIS_IMAGE", "POSTGRES_IMAGE", "WEB_PORT")}
    result = subprocess.run(["docker", "compose", "-f", "compose.yaml", "config", "--format",
                             "json"], cwd=workdir, capture_output=True, text=True, timeout=60,
                            env=env)
    assert result.returncode == 0, result.stderr
    config = json.loads(result.stdout)
    config["_secrets"] = read_env(workdir / ".local" / "secrets.env")
    return config


def test_compose_runs_the_airflow_services_the_ecs_way(compose_config):
    services = compose_config["services"]
    assert set(AIRFLOW_SERVICES) | {"redis", "postgres"} <= set(services)
    for name in AIRFLOW_SERVICES:
        service = services[name]
        assert service["user"] == "50000:0", name
        assert service["read_only"] is True, name
        mounts = [t.split(":")[0] for t in service["tmpfs"]]
        assert {"/tmp", "/opt/airflow/logs"} <= set(mounts), name
        env = service["environment"]
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
        assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == \
            "http://webserver:8080/execution/"
        for key in SECRET_KEYS:  # from the generated env file, not from the compose file
            assert env[key] == compose_config["_secrets"][key], (name, key)
        assert service.get("volumes", []) == [], name  # nothing but env and the image
        if name != "migrate":
            assert service["depends_on"]["migrate"]["condition"] == \
                "service_completed_successfully", name
    assert services["migrate"]["command"] == ["run", "migrate"]


def test_compose_defaults_match_the_built_images(compose_config):
    services = compose_config["services"]
    for name, role in (("migrate", "base"), ("scheduler", "scheduler"),
                       ("webserver", "webserver"), ("worker-1", "worker"),
                       ("worker-2", "worker")):
        assert services[name]["image"] == f"airflow-ecs/{role}:{VERSION}", name
    assert services["redis"]["image"] == REDIS_IMAGE
    assert services["postgres"]["image"] == POSTGRES_IMAGE
    ports = services["webserver"]["ports"]
    assert [p["host_ip"] for p in ports] == ["127.0.0.1"]


def test_compose_file_holds_no_secret_value(compose_config):
    text = (ROOT / "compose.yaml").read_text()
    assert "PASSWORD=" not in text and "requirepass " not in text.replace(
        "requirepass $$REDIS_PASSWORD", "")
    for value in compose_config["_secrets"].values():
        assert value not in text


# --- stand-ins (or the upstream images, where they could be pulled) -----------------

def test_redis_needs_the_password_given_on_stdin():
    password = base64.b16encode(os.urandom(12)).decode()
    port = free_port()
    script = f"exec redis-server - <<EOF\nrequirepass {password}\nEOF\n"
    with running("-p", f"127.0.0.1:{port}:6379", "-e", "UNUSED=1", REDIS_IMAGE,
                 "sh", "-c", script) as name:
        client = redis.Redis(host="127.0.0.1", port=port, password=password,
                             socket_timeout=2)
        wait_until(client.ping, "redis to answer", timeout=30, interval=0.5, ignoring=Exception)
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(host="127.0.0.1", port=port, password="wrong", socket_timeout=2).ping()
        top = docker("top", name).stdout
        assert password not in top


def test_postgres_initialises_a_utf8_database_with_password_auth():
    password = base64.b16encode(os.urandom(12)).decode()
    port = free_port()
    with running("-p", f"127.0.0.1:{port}:5432", "-e", "POSTGRES_USER=airflow",
                 "-e", "POSTGRES_DB=airflow", "-e", f"POSTGRES_PASSWORD={password}",
                 POSTGRES_IMAGE):
        def connect():
            return psycopg2.connect(host="127.0.0.1", port=port, user="airflow",
                                    password=password, dbname="airflow", connect_timeout=2)
        connection = wait_until(connect, "postgres to accept the password", timeout=60,
                                interval=0.5, ignoring=Exception)
        with connection, connection.cursor() as cursor:
            cursor.execute("SHOW server_encoding")
            assert cursor.fetchone()[0] == "UTF8"
        connection.close()
        with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
            psycopg2.connect(host="127.0.0.1", port=port, user="airflow", password="wrong",
                             dbname="airflow", connect_timeout=2)


def test_postgres_refuses_to_start_without_a_password():
    result = docker("run", "--rm", POSTGRES_IMAGE, check=False, timeout=120)
    assert result.returncode != 0
    assert "POSTGRES_PASSWORD" in result.stdout + result.stderr


# --- registry -----------------------------------------------------------------------

@pytest.fixture
def local_registry(tmp_path):
    binary = shutil.which("docker-registry")
    if not binary:
        pytest.fail("Debian's docker-registry package is not installed; `make test` installs it "
                    "(scripts/machine-deps.sh test)")
    port = free_port()
    config = tmp_path / "registry.yml"
    config.write_text(f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {tmp_path}/data\n"
                      f"http:\n  addr: 127.0.0.1:{port}\nlog:\n  level: warn\n")
    process = subprocess.Popen([binary, "serve", str(config)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=2),
                   "docker-registry to answer", timeout=30, interval=0.5, ignoring=Exception)
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_push_to_a_registry(local_registry):
    result = subprocess.run(["make", "-s", "push", f"REGISTRY={local_registry}",
                             "ECR_PREFIX=team/airflow-", "ROLES=worker"], cwd=ROOT,
                            capture_output=True, text=True, timeout=900)
    try:
        assert result.returncode == 0, result.stdout + result.stderr
        assert "logging in" not in result.stdout  # REGISTRY given: no ECR login
        for role in ("base", "worker"):
            with urllib.request.urlopen(f"http://{local_registry}/v2/team/airflow-{role}/"
                                        "tags/list", timeout=10) as response:
                assert TAG in json.load(response)["tags"], role
    finally:
        for role in ("base", "worker"):
            docker("rmi", f"{local_registry}/team/airflow-{role}:{TAG}", check=False)


def test_push_says_what_is_missing():
    env = {k: v for k, v in os.environ.items() if k not in ("AWS_ACCOUNT_ID", "REGISTRY")}
    result = subprocess.run(["make", "-s", "push"], cwd=ROOT, capture_output=True, text=True,
                            timeout=60, env=env)
    assert result.returncode != 0
    assert "AWS_ACCOUNT_ID" in result.stderr and "REGISTRY" in result.stderr


def test_ecr_login_prints_only_the_registry_password(moto):
    env = {**os.environ, "AWS_ENDPOINT_URL": moto.url}
    result = subprocess.run([sys.executable, "scripts/ecr_login.py", "--region", "eu-west-1"],
                            cwd=ROOT, capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 0, result.stderr
    import boto3
    token = boto3.client("ecr", region_name="eu-west-1", endpoint_url=moto.url) \
        .get_authorization_token()["authorizationData"][0]["authorizationToken"]
    assert result.stdout == base64.b64decode(token).decode().split(":", 1)[1]
    assert result.stderr == ""


def test_ecr_login_names_the_failure_without_a_reachable_endpoint():
    env = {**os.environ, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}",
           "AWS_MAX_ATTEMPTS": "1"}
    result = subprocess.run([sys.executable, "scripts/ecr_login.py", "--region", "eu-west-1"],
                            cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 1
    assert result.stdout == ""
    assert "ecr:GetAuthorizationToken" in result.stderr
