"""The role's environment as probes find it under /proc."""

import os
import subprocess
import sys

import pytest

from entrypoint.running_env import MARKER, mark, running_env


def fake_proc(tmp_path, processes):
    for pid, env in processes.items():
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "environ").write_bytes(
            b"\0".join(f"{k}={v}".encode() for k, v in env.items()) + b"\0")
    (tmp_path / "self").mkdir()
    return tmp_path


def test_oldest_marked_process_wins_and_overlays_own(tmp_path):
    proc = fake_proc(tmp_path, {
        1: {"PATH": "/bin"},                                  # tini: unresolved
        7: {MARKER: "1", "SECRET": "from-ssm", "A": "role"},
        9: {MARKER: "1", "SECRET": "newer"},
    })
    env = running_env({"A": "own", "B": "own"}, proc)
    assert env == {MARKER: "1", "SECRET": "from-ssm", "A": "role", "B": "own"}


def test_own_environment_when_marked_or_nothing_found(tmp_path):
    proc = fake_proc(tmp_path, {3: {"SECRET": "x"}})
    assert running_env({"A": "1"}, proc) == {"A": "1"}
    assert running_env(mark({"A": "1"}), proc) == mark({"A": "1"})
    assert running_env({"A": "1"}, tmp_path / "missing") == {"A": "1"}


def test_values_with_equals_signs_and_unreadable_entries(tmp_path):
    proc = fake_proc(tmp_path, {4: {MARKER: "1", "URL": "redis://:p=w@h:6379/0"}})
    (tmp_path / "5").mkdir()  # no environ file: a process that went away
    assert running_env({}, proc)["URL"] == "redis://:p=w@h:6379/0"


@pytest.mark.skipif(os.getuid() != 0, reason="giving a file to another user needs root")
def test_another_users_processes_are_ignored(tmp_path):
    proc = fake_proc(tmp_path, {4: {MARKER: "1", "SECRET": "theirs"}})
    assert running_env({}, proc)["SECRET"] == "theirs"
    os.chown(proc / "4", 12345, 0)
    assert running_env({}, proc) == {}


def test_the_marker_is_no_unknown_setting():
    from entrypoint import config

    assert config.load(mark({})).ssm_path is None


def test_a_role_that_sets_its_process_title_keeps_its_environment_readable(tmp_path):
    """Celery's worker names its processes with setproctitle, whose long titles are
    written over the environment block /proc shows."""
    script = ("import setproctitle, sys; setproctitle.setproctitle('[celeryd: celery@worker1:"
              "MainProcess] -active- (celery worker) ' + 'x' * 200); print('titled', "
              "flush=True); sys.stdin.read()")
    env = mark({"PATH": os.environ["PATH"], "SECRET": "from-ssm"})
    role = subprocess.Popen([sys.executable, "-c", script], env=env, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert role.stdout is not None and role.stdout.readline().strip() == "titled"
        assert b"celeryd" in open(f"/proc/{role.pid}/cmdline", "rb").read()
        # Only this process: other marked processes of the machine's user don't count.
        (tmp_path / str(role.pid)).symlink_to(f"/proc/{role.pid}")
        assert running_env({}, tmp_path)["SECRET"] == "from-ssm"
    finally:
        role.communicate("", timeout=30)
