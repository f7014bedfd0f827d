"""Process groups under supervisord: a failing program stops the group non-zero; SIGTERM
stops every program."""

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.support.waiting import wait_until

RUNNER = textwrap.dedent("""
    import os, sys
    from entrypoint.group import run_group
    from entrypoint.roles import Program
    progs = [Program(n, tuple(a.split("|")), 5) for n, a in
             (p.split("=", 1) for p in sys.argv[1:])]
    raise SystemExit(run_group(progs, dict(os.environ)))
""")


def start(tmp_path: Path, *programs: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", RUNNER, *programs], cwd=tmp_path,
        env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, start_new_session=True,
    )


def finish(proc: subprocess.Popen, timeout: float = 30) -> str:
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"group did not stop:\n{out}")
    return out


def test_a_program_that_exits_stops_the_group_with_failure(tmp_path):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    proc = start(tmp_path, "long=sleep|60", "short=sh|-c|sleep 1; exit 3",
                 env={"TMPDIR": str(scratch)})
    out = finish(proc)
    assert proc.returncode == 1, out
    assert "short exited" in out
    assert "stopping the group" in out
    assert list(scratch.iterdir()) == []  # supervisord's folder is removed with the group


def test_sigterm_stops_every_program_and_exits_zero(tmp_path):
    marker = tmp_path / "stopped"
    script = (f"trap 'touch {marker}; exit 0' TERM; touch {tmp_path}/up-$$; "
              "while :; do sleep 0.1; done")
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    proc = start(tmp_path, f"a=sh|-c|{script}", f"b=sh|-c|{script}",
                 env={"TMPDIR": str(scratch)})
    wait_until(lambda: len(list(tmp_path.glob("up-*"))), "both programs to start", timeout=20,
               accept=lambda started: started >= 2)
    assert [p.name[:len("airflow-ecs-group-")] for p in scratch.iterdir()] == \
        ["airflow-ecs-group-"]  # supervisord's folder, while the group runs
    proc.send_signal(signal.SIGTERM)
    out = finish(proc)
    assert proc.returncode == 0, out
    assert marker.exists()
    assert list(scratch.iterdir()) == []


def test_programs_inherit_values_byte_exact(tmp_path):
    value = "it's \"quoted\" $(touch /tmp/pwned) `x` %(ENV_HOME)s\nline2 ünï"
    out_file = tmp_path / "value"
    proc = start(tmp_path, f"dump={sys.executable}|-c|import os; open('{out_file}', 'w', "
                 "encoding='utf-8').write(os.environ['TRICKY'])", env={"TRICKY": value})
    finish(proc)
    assert out_file.read_text(encoding="utf-8") == value
