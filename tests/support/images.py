"""What the image and end-to-end tests share: the images' names, `docker` calls, and
containers that are removed whatever happens to the test."""

from __future__ import annotations

import contextlib
import os
import subprocess
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VERSION = next(line.split('"')[1] for line in (ROOT / "pyproject.toml").read_text().splitlines()
               if line.startswith("version = "))
PREFIX = os.environ.get("IMAGE_PREFIX", "airflow-ecs/")
TAG = os.environ.get("TAG", VERSION)
REDIS_IMAGE = os.environ.get("REDIS_IMAGE", "redis:8.0")
POSTGRES_IMAGE = os.environ.get("POSTGRES_IMAGE", "postgres:17")

os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")
os.environ.setdefault("TESTCONTAINERS_CONNECTION_MODE", "docker_host")


def image(role: str) -> str:
    return f"{PREFIX}{role}:{TAG}"


def docker(*args: str, check: bool = True, timeout: float = 600,
           input: str | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout,
                            input=input)
    if check and result.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} exited {result.returncode}:\n"
                             f"{result.stdout}\n{result.stderr}")
    return result


@contextlib.contextmanager
def running(*run_args: str, prefix: str = "images-test"):
    """`docker run -d` a container named prefix-RANDOM; yield its name; remove it whatever
    happens."""
    name = f"{prefix}-{uuid.uuid4().hex[:10]}"
    try:
        docker("run", "-d", "--name", name, *run_args)
        yield name
    finally:
        docker("rm", "-f", "-v", name, check=False)


