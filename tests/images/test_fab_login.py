"""The webserver image with FAB, the default auth manager: the admin account the
entrypoint writes at start logs in through FAB's token endpoint, a wrong password
does not. The containers run as the task definitions run them (read-only root,
tmpfs scratch, UID 50000 with GID 0)."""

from __future__ import annotations

import base64
import os
import secrets
import socket
import uuid

import pytest

from tests.support.http import http_json
from tests.support.images import POSTGRES_IMAGE, docker, image, running
from tests.support.waiting import wait_until

HARDENED = ("--user", "50000:0", "--read-only", "--tmpfs", "/tmp",
            "--tmpfs", "/opt/airflow/logs:uid=50000,gid=0,mode=0770")


def wait_for_webserver(url: str, container: str, timeout: float = 300) -> None:
    """Until the api-server at url answers its health check; fails at once, with its log,
    if the container stops."""
    def healthy() -> bool:
        running_state = docker("inspect", "-f", "{{.State.Running}}", container).stdout.strip()
        assert running_state == "true", f"the webserver stopped:\n{logs()}"
        try:
            return call("GET", url + "/api/v2/monitor/health")[0] == 200
        except OSError:
            return False

    def logs() -> str:
        out = docker("logs", container, check=False)
        return out.stdout[-4000:] + "\n" + out.stderr[-4000:]

    wait_until(healthy, "the webserver's health check", timeout=timeout, interval=2,
               details=logs)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(method: str, url: str, body: dict | None = None,
         token: str = "") -> tuple[int, dict]:
    return http_json(method, url, body, token, timeout=30)


@pytest.fixture
def network():
    name = f"images-fab-{uuid.uuid4().hex[:8]}"
    docker("network", "create", name)
    try:
        yield name
    finally:
        docker("network", "rm", name, check=False)


def test_fab_admin_gets_a_token_and_lists_dags_and_a_wrong_password_is_refused(
        network, tmp_path):
    db_password = secrets.token_hex(16)
    admin_password = secrets.token_urlsafe(18)
    env_file = tmp_path / "airflow.env"
    env_file.write_text("\n".join(f"{k}={v}" for k, v in {
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN":
            f"postgresql+psycopg2://airflow:{db_password}@postgres:5432/airflow",
        "AIRFLOW__CORE__FERNET_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode(),
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(64),
        "AIRFLOW__API__SECRET_KEY": secrets.token_hex(32),
        "AIRFLOW_ECS_ADMIN_PASSWORD": admin_password,
        "AIRFLOW_ECS_CHECK_FINGERPRINTS": "false",
        "AIRFLOW_ECS_WAIT_TIMEOUT": "120",
    }.items()) + "\n")
    with running("--network", network, "--network-alias", "postgres",
                 "-e", "POSTGRES_USER=airflow", "-e", "POSTGRES_DB=airflow",
                 "-e", f"POSTGRES_PASSWORD={db_password}", POSTGRES_IMAGE):
        migrate = docker("run", "--rm", "--network", network, "--env-file", str(env_file),
                         *HARDENED, image("base"), "run", "migrate", check=False, timeout=600)
        assert migrate.returncode == 0, migrate.stdout + migrate.stderr
        port = free_port()
        with running("--network", network, "--env-file", str(env_file), *HARDENED,
                     "-p", f"127.0.0.1:{port}:8080", image("webserver")) as webserver:
            url = f"http://127.0.0.1:{port}"
            wait_for_webserver(url, webserver)

            code, body = call("POST", url + "/auth/token",
                              {"username": "admin", "password": admin_password})
            assert code == 201 and body.get("access_token"), (code, body)
            code, dags = call("GET", url + "/api/v2/dags", token=body["access_token"])
            assert code == 200 and "dags" in dags, (code, dags)

            code, body = call("POST", url + "/auth/token",
                              {"username": "admin", "password": admin_password + "x"})
            assert code == 401 and "access_token" not in body, (code, body)
            # Airflow answers a token it did not sign with 403.
            code, _ = call("GET", url + "/api/v2/dags", token="not-a-token")
            assert code in (401, 403)

            logs = docker("logs", webserver)
            output = logs.stdout + logs.stderr
            assert "FAB logins: created the admin account 'admin'" in output, output[-3000:]
            assert admin_password not in output and db_password not in output
