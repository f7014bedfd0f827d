"""The built images: user, Airflow version, dependencies, init, role defaults, labels,
hardening, and nothing of the build host (proxy CA, tests, caches) inside.

The session fixture in conftest.py builds them once (`make build`, layer cache reused).
"""

import json
import tempfile
from pathlib import Path

import pytest

from tests.support.images import ROOT, VERSION, docker, image

ROLES = {
    "scheduler": (["run", "scheduler+dag-processor+triggerer"],
                  ["CMD", "airflow-ecs", "health", "scheduler+dag-processor+triggerer"]),
    "worker": (["run", "worker"], ["CMD", "airflow-ecs", "health", "worker"]),
    "webserver": (["run", "webserver"], ["CMD", "airflow-ecs", "health", "webserver"]),
}


def run_in(role: str, *command: str, user: str | None = None, read_only: bool = False,
           entrypoint: str | None = None):
    args = ["run", "--rm"]
    if user:
        args += ["--user", user]
    if read_only:
        args += ["--read-only", "--tmpfs", "/tmp", "--tmpfs", "/opt/airflow/logs"]
    if entrypoint:
        args += ["--entrypoint", entrypoint]
    return docker(*args, image(role), *command, check=False)


def inspect(role: str) -> dict:
    return json.loads(docker("image", "inspect", image(role)).stdout)[0]


def test_default_user_is_50000_with_group_0():
    """Expected exit code 0; prints uid 50000 gid 0."""
    result = run_in("base", "-c", "import os; print(os.getuid(), os.getgid())",
                    entrypoint="python3")
    assert result.stdout.split() == ["50000", "0"], result.stderr


def test_airflow_3_3_runs_as_an_arbitrary_uid_on_a_read_only_root():
    """Expected exit code 0, `airflow version` 3.3.x, with --user 12345:0 --read-only."""
    result = run_in("base", "exec", "--", "airflow", "version", user="12345:0", read_only=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1].startswith("3.3.")
    assert "airflow.cfg" not in result.stderr  # no attempt to write a config file


def test_celery_executor_imports_and_dependencies_are_consistent():
    """Expected exit code 0: the Celery executor loads (celery < 5.7 from the lock)."""
    result = run_in("base", "-c", "from airflow.providers.celery.executors.celery_executor "
                    "import CeleryExecutor; import celery; print(celery.__version__)",
                    entrypoint="python3")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1].startswith("5.6.")
    # pip check, in the build stage that holds the very same venv (the final image has no pip).
    # The stage is a parent of the build stage `make build` keeps: removing the tag
    # afterwards untags it, and a later lock change leaves no unnamed copy behind.
    tag = "airflow-ecs-test/deps:check"
    try:
        docker("build", "-q", "--target", "deps", "-f", "images/base/Dockerfile", "-t", tag,
               "--build-arg", "BASE_IMAGE=debian:trixie-slim", str(ROOT))
        check = docker("run", "--rm", tag, "python3", "-m", "pip",
                       "--python", "/opt/airflow/venv/bin/python", "check", check=False)
    finally:
        docker("image", "rm", tag, check=False)
    assert check.returncode == 0, check.stdout + check.stderr


def test_supervisor_fixes_apply_to_the_airflow_in_the_image():
    """Expected exit code 0: the worker's fixes to Airflow's task supervisor find the shape
    they were written for (each changes nothing, and says so, when Airflow changes), and
    the worker's Celery configuration installs them, and preloads the code every task
    needs, when the worker starts."""
    script = ("from entrypoint.worker import celery_config; "
              "from celery.signals import worker_init; worker_init.send(sender=None); "
              "from airflow.sdk.execution_time.supervisor import ActivitySubprocess as A; "
              "print(A._service_subprocess.__module__, A._on_child_started.__module__); "
              "import sys; print('airflow.dag_processing.dagbag' in sys.modules)")
    result = run_in("worker", "-c", script, entrypoint="python3")
    assert result.returncode == 0, result.stderr
    modules, preloaded = result.stdout.strip().splitlines()[-2:]
    assert modules == "entrypoint.worker.task_exit entrypoint.worker.first_heartbeat"
    assert preloaded == "True", result.stderr  # entrypoint.worker.preload, before the pool forks


def test_tini_is_pid_1():
    """Expected exit code 0; PID 1's command is tini."""
    result = run_in("base", "exec", "--", "python3", "-c",
                    "print(open('/proc/1/cmdline').read().split(chr(0))[0])")
    assert result.stdout.strip() == "/usr/bin/tini", result.stderr


@pytest.mark.parametrize("role", sorted(ROLES))
def test_role_defaults_and_health_check(role):
    """Each role image: its default command, a HEALTHCHECK calling airflow-ecs health."""
    config = inspect(role)["Config"]
    cmd, healthcheck = ROLES[role]
    assert config["Cmd"] == cmd
    assert config["Entrypoint"] == ["/usr/bin/tini", "--", "airflow-ecs"]
    assert config["Healthcheck"]["Test"] == healthcheck
    assert config["User"] == "50000"


def test_health_probe_answers_unhealthy_without_services():
    """Expected exit code 1 and one line naming why."""
    result = run_in("worker", "health", "worker")
    assert result.returncode == 1
    assert result.stdout.startswith("unhealthy: worker: required setting: "
                                    "AIRFLOW__CELERY__BROKER_URL")


def test_role_images_add_little_over_the_base():
    base = inspect("base")["Size"]
    for role in ROLES:
        assert inspect(role)["Size"] - base < 5 * 1024 * 1024, role


def test_labels():
    labels = inspect("base")["Config"]["Labels"]
    for key in ("version", "revision", "source", "created"):
        assert labels.get(f"org.opencontainers.image.{key}"), key
    assert labels["org.opencontainers.image.version"] == VERSION


def _proxy_certificates() -> list[str]:
    bodies = []
    for path in Path("/usr/local/share/ca-certificates").glob("**/*.crt"):
        text = path.read_text(errors="ignore")
        lines = [ln for ln in text.splitlines() if ln and not ln.startswith("-----")]
        if lines:
            bodies.append("".join(lines)[:64])
    return bodies


def test_no_proxy_ca_or_build_secret_in_the_final_image():
    history = docker("history", "--no-trunc", image("base")).stdout
    assert "ca-bundle" not in history and "/tmp/ca" not in history
    listing = run_in("base", "-c", "import os; print(os.path.exists('/tmp/ca'))",
                     entrypoint="python3")
    assert listing.stdout.strip() == "False"
    certs = _proxy_certificates()
    if certs:  # this host sits behind a TLS-inspecting proxy: its CA must not be inside
        bundle = run_in("base", "-c", "print(open('/etc/ssl/certs/ca-certificates.crt')"
                        ".read().replace(chr(10), ''))", entrypoint="python3").stdout
        for body in certs:
            assert body not in bundle
    env = inspect("base")["Config"]["Env"]
    assert not [e for e in env if e.startswith(("PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA"))]


def test_build_context_keeps_tests_and_caches_out():
    with tempfile.TemporaryDirectory() as tmp:
        dockerfile = Path(tmp) / "Dockerfile"
        dockerfile.write_text("FROM debian:trixie-slim\nCOPY . /ctx\n"
                              "RUN find /ctx -maxdepth 2 | sort\n")
        iidfile = Path(tmp) / "image-id"
        try:
            out = docker("build", "--no-cache", "--iidfile", str(iidfile), "-f",
                         str(dockerfile), str(ROOT))
        finally:  # the listing image is of no use afterwards: none is left behind
            if iidfile.exists():
                docker("image", "rm", "--force", iidfile.read_text().strip())
    text = out.stdout + out.stderr
    for unwanted in ("/ctx/tests", "/ctx/.venv", "/ctx/.git", "__pycache__", "/ctx/bench",
                     "/ctx/.local", "/ctx/build/logs", "/ctx/compose.yaml"):
        assert unwanted not in text, unwanted
    assert "/ctx/entrypoint" in text and "/ctx/requirements" in text


def test_airflow_does_not_write_its_own_config_file():
    """Expected: after an Airflow CLI call the shipped placeholder airflow.cfg is unchanged."""
    shipped = (ROOT / "images/base/airflow.cfg").read_text()
    result = run_in("base", "exec", "--", "sh", "-c",
                    "airflow version >/dev/null && cat /opt/airflow/airflow.cfg")
    assert result.returncode == 0, result.stderr
    assert result.stdout == shipped


def test_example_dags_are_baked_in():
    result = run_in("base", "-c", "import os; print(sorted(os.listdir('/opt/airflow/dags')))",
                    entrypoint="python3")
    names = result.stdout.strip()
    assert "example_fanout.py" in names and "sleep_task.py" in names, result.stderr


def test_an_arbitrary_uid_with_group_0_can_write_airflow_home():
    """Expected exit code 0: AIRFLOW_HOME, logs and dags-data are group-writable (g=u).
    (The baked DAGs are not meant to change at run time.)"""
    result = run_in("base", "-c", "import pathlib; "
                    "[pathlib.Path(d, 'probe').write_text('x') for d in "
                    "('/opt/airflow', '/opt/airflow/logs', '/opt/airflow/dags-data')]; print('ok')",
                    user="12345:0", entrypoint="python3")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_scratch_volumes_are_writable_by_the_image_user_on_a_read_only_root():
    """Expected exit code 0: with --read-only and no tmpfs, the volumes Docker creates
    from the image's VOLUME paths (as Fargate fills its bind mounts) are writable by
    UID 50000: /tmp, the logs and the synced DAGs."""
    volumes = inspect("base")["Config"]["Volumes"] or {}
    assert set(volumes) == {"/tmp", "/opt/airflow/logs", "/opt/airflow/dags-data"}
    result = docker("run", "--rm", "--read-only", "--entrypoint", "python3", image("worker"),
                    "-c", "import pathlib; [pathlib.Path(d, 'probe').write_text('x') for d in "
                    "('/tmp', '/opt/airflow/logs', '/opt/airflow/dags-data')]; print('ok')",
                    check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
