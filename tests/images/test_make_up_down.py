"""`make up` then `make down`, as a newcomer runs them: a quiet healthy start, and
nothing left behind but the data volumes (which `make down VOLUMES=1` removes)."""

from __future__ import annotations

import os
import socket
import subprocess

from tests.support.images import PREFIX, ROOT, TAG, docker

PROJECT = "airflow-ecs-updown-test"


def make(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "COMPOSE_PROJECT_NAME": PROJECT}
    return subprocess.run(["make", "-s", *args, f"IMAGE_PREFIX={PREFIX}", f"TAG={TAG}",
                           f"WEB_PORT={port}"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def volumes() -> set[str]:
    return set(docker("volume", "ls", "-q").stdout.split())


def dangling() -> set[str]:
    return set(docker("image", "ls", "-q", "--filter", "dangling=true").stdout.split())


def logs(service: str) -> str:
    result = subprocess.run(["docker", "compose", "-p", PROJECT, "-f", "compose.yaml", "logs",
                             "--no-color", service], cwd=ROOT, capture_output=True, text=True,
                            timeout=60)
    return result.stdout + result.stderr


def test_make_up_is_quiet_and_make_down_leaves_nothing_behind(compose_plugin):
    """Expected exit code 0 for each make; no ERROR in PostgreSQL's log; afterwards no
    anonymous volume, no dangling image, and with VOLUMES=1 no volume at all."""
    # What an earlier run that stopped halfway left behind would hold other passwords.
    assert make("down", "VOLUMES=1").returncode == 0
    volumes_before, dangling_before = volumes(), dangling()
    try:
        up = make("up")
        assert up.returncode == 0, (up.stdout[-3000:] + up.stderr[-3000:]
                                    + "\nmigrate's log:\n" + logs("migrate")[-3000:])
        postgres = logs("postgres")
        assert "ERROR" not in postgres, postgres[-3000:]
        for service in ("scheduler", "webserver", "worker-1"):
            text = logs(service)
            assert "Traceback" not in text, text[-3000:]
            assert "the migrations at" not in text, text[-3000:]
    finally:
        down = make("down")
    assert down.returncode == 0, down.stdout + down.stderr
    left = volumes() - volumes_before
    assert left == {f"{PROJECT}_postgres-data", f"{PROJECT}_redis-data"}
    assert dangling() - dangling_before == set()
    down = make("down", "VOLUMES=1")
    assert down.returncode == 0, down.stdout + down.stderr
    assert volumes() - volumes_before == set()
