"""The start-up sequence through the real `airflow-ecs` command, in subprocesses."""

import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.support.waiting import wait_until

BIN = str(Path(sys.executable).parent / "airflow-ecs")
CLEAN = {k: v for k, v in os.environ.items()
         if not k.startswith(("AIRFLOW", "AWS_ENDPOINT"))}


def run(*args, env=None, timeout=60):
    return subprocess.run([BIN, *args], env={**CLEAN, **(env or {})}, capture_output=True,
                          text=True, timeout=timeout)


def test_exec_passes_values_byte_exact(tmp_path):
    value = "it's \"q\" $(touch /tmp/pwned) `id` ${HOME} %s \\n\nline2 ünïcödé 🚀"
    out = tmp_path / "out"
    result = run("exec", "--", sys.executable, "-c",
                 f"import os; open({str(out)!r}, 'w', encoding='utf-8')"
                 ".write(os.environ['AIRFLOW_VAR_TRICKY'])",
                 env={"AIRFLOW_VAR_TRICKY": value})
    assert result.returncode == 0, result.stderr
    assert out.read_text(encoding="utf-8") == value


def test_exec_replaces_the_entrypoint_process(tmp_path):
    out = tmp_path / "pid"
    code = f"import os; open({str(out)!r}, 'w').write(str(os.getpid()))"
    proc = subprocess.Popen([BIN, "exec", "--", sys.executable, "-c", code], env=CLEAN)
    assert proc.wait(60) == 0
    assert int(out.read_text()) == proc.pid


def test_exec_unknown_command_exits_127():
    result = run("exec", "--", "no-such-command-xyz")
    assert result.returncode == 127
    assert "command not found: no-such-command-xyz" in result.stderr


def test_exec_without_a_command_is_a_usage_error():
    result = run("exec")
    assert result.returncode == 78
    assert "no command given" in result.stderr


def test_unknown_role_is_a_usage_error():
    result = run("run", "schedular")
    assert result.returncode == 2
    assert "unknown role 'schedular'" in result.stderr


def test_every_configuration_problem_at_once():
    result = run("exec", "--", "true", env={"AIRFLOW_ECS_WAIT_TIMEOUT": "soon",
                                            "AIRFLOW_ECS_DAGS_SOURCE": "ftp"})
    assert result.returncode == 78
    assert "AIRFLOW_ECS_WAIT_TIMEOUT='soon'" in result.stderr
    assert "AIRFLOW_ECS_DAGS_SOURCE='ftp'" in result.stderr


def test_check_reports_problems_for_the_role_without_values():
    secret = "short-jwt-secret-value"
    result = run("check", "worker", env={"AIRFLOW__API_AUTH__JWT_SECRET": secret})
    assert result.returncode == 78
    assert "required setting: AIRFLOW__CORE__EXECUTION_API_SERVER_URL" in result.stderr
    assert "AIRFLOW__API_AUTH__JWT_SECRET is 22 bytes long" in result.stderr
    assert secret not in result.stderr + result.stdout


def test_start_up_refuses_a_misconfigured_role():
    result = run("run", "worker", env={"AIRFLOW__CELERY__BROKER_URL": "redis://r:6379/0"})
    assert result.returncode == 78
    assert "required setting: AIRFLOW__DATABASE__SQL_ALCHEMY_CONN" in result.stderr


class BlackHole:
    """A TCP server on 127.0.0.1 that accepts connections and never answers."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)

    def close(self):
        for conn in self.conns:
            conn.close()
        self.sock.close()


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


@pytest.mark.parametrize("phase", ["secrets", "dags"])
def test_sigterm_during_a_start_up_phase_ends_promptly(phase, tmp_path):
    hole = BlackHole()
    if phase == "secrets":
        env = {"AIRFLOW_ECS_SSM_PATH": "/airflow/test/", "AWS_REGION": "eu-west-1",
               "AWS_ENDPOINT_URL": f"http://127.0.0.1:{hole.port}",
               "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y"}
    else:
        env = {"AIRFLOW_ECS_DAGS_SOURCE": "git",
               "AIRFLOW_ECS_DAGS_GIT_URL": f"http://127.0.0.1:{hole.port}/dags.git",
               "AIRFLOW_ECS_DAGS_DIR": str(tmp_path / "dags")}
    proc = subprocess.Popen([BIN, "exec", "--", "true"], env={**CLEAN, **env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        def reached():
            if hole.conns:
                return True
            assert proc.poll() is None, proc.communicate()
            return False

        wait_until(reached, "the phase to reach the server", timeout=30, interval=0.05)
        kids = children_of(proc.pid)
        proc.send_signal(signal.SIGTERM)
        # A correctness bound (ECS gives the container 30-120 s), not a speed claim.
        _, err = proc.communicate(timeout=5)
    finally:
        if proc.poll() is None:
            proc.kill()
        hole.close()
    assert proc.returncode == 143, err
    assert "SIGTERM" in err
    for kid in kids:
        assert not Path(f"/proc/{kid}").exists() or \
            "Z" in Path(f"/proc/{kid}/stat").read_text().rsplit(")", 1)[1].split()[0]
