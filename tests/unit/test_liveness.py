"""The worker's own pings: the record it writes, and the probe's reading of it."""

import json
import logging
import os
import stat
import subprocess
import sys
import threading

import pytest

from entrypoint.worker import liveness

NODE = "celery@test-node"


def env_for(tmp_path):
    return {"TMPDIR": str(tmp_path)}


def test_record_is_replaced_whole_and_private(tmp_path):
    path = liveness.record_path(env_for(tmp_path))
    assert path == str(tmp_path / "airflow-ecs" / "worker-liveness.json")
    stop = threading.Event()
    seen, bad = [0], []

    def read_all_the_time():
        while not stop.is_set():
            try:
                with open(path, "rb") as f:
                    data = f.read()
            except FileNotFoundError:
                continue
            try:
                assert json.loads(data)["pad"] == "x" * 5000
                seen[0] += 1
            except (ValueError, AssertionError, KeyError) as exc:
                bad.append(repr(exc))

    reader = threading.Thread(target=read_all_the_time)
    reader.start()
    try:
        for n in range(300):
            liveness.write_record(path, {"n": n, "pad": "x" * 5000})
    finally:
        stop.set()
        reader.join(10)
    assert not bad, bad[:3]  # a reader never saw a half-written record
    assert seen[0] > 0
    assert json.loads(open(path).read())["n"] == 299
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
    assert os.listdir(os.path.dirname(path)) == ["worker-liveness.json"]  # no temporary left


def test_a_failed_replace_leaves_the_old_record_and_no_temporary(tmp_path, monkeypatch):
    path = liveness.record_path(env_for(tmp_path))
    liveness.write_record(path, {"n": 1})

    def refuse(*_):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(liveness.os, "replace", refuse)
    with pytest.raises(OSError, match="No space left"):
        liveness.write_record(path, {"n": 2})
    assert json.loads(open(path).read()) == {"n": 1}
    assert os.listdir(os.path.dirname(path)) == ["worker-liveness.json"]


class Pings:
    """Answers, or fails with the error given, as a real ping would."""

    def __init__(self):
        self.error = None

    def __call__(self):
        if self.error:
            raise self.error


def test_pings_recorded_failures_masked_logged_once_and_backed_off(tmp_path, caplog):
    caplog.set_level(logging.INFO, "airflow-ecs.liveness")
    path = liveness.record_path(env_for(tmp_path))
    pings = Pings()
    worker = liveness.Liveness(pings, path, NODE, "redis://:hunter2-pw@broker:6379/0", 10.0)
    assert worker.step() == 10.0
    record = json.loads(open(path).read())
    assert record["pid"] == os.getpid() and record["node"] == NODE
    assert record["broker"] == "redis://:****@broker:6379/0"
    assert record["last_success"] >= record["last_attempt"]
    assert record["pings"] == record["answered"] == 1 and record["last_error"] is None
    assert record["thread_cpu"] > 0

    # A URL's password, and the password alone, as an error message may hold them.
    pings.error = ConnectionError("Error 111 connecting to redis://:hunter2-pw@broker:6379/0"
                                  " (AUTH hunter2-pw)")
    delays = [worker.step() for _ in range(5)]
    assert delays == [10.0 * liveness.BACKOFF_FACTOR] * 5
    record = json.loads(open(path).read())
    assert record["failures"] == 5 and record["pings"] == 6 and record["answered"] == 1
    assert "ConnectionError" in record["last_error"]
    assert "hunter2-pw" not in open(path).read() + caplog.text
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1  # the same error again is not logged at every ping

    pings.error = None
    assert worker.step() == 10.0
    record = json.loads(open(path).read())
    assert record["failures"] == 0 and record["last_error"] is None
    assert "answers its own pings again, after 5 failed" in caplog.text


def test_a_record_that_cannot_be_written_is_logged_and_the_pings_go_on(tmp_path, caplog):
    blocker = tmp_path / "airflow-ecs"
    blocker.write_text("a file where the folder should be")
    worker = liveness.Liveness(Pings(), liveness.record_path(env_for(tmp_path)), NODE,
                               "redis://broker", 1.0)
    assert worker.step() == 1.0 and worker.step() == 1.0
    assert worker.answered == 2
    assert caplog.text.count("cannot write") == 1


def test_a_record_that_can_no_longer_be_replaced_is_removed(tmp_path, monkeypatch):
    path = liveness.record_path(env_for(tmp_path))
    worker = liveness.Liveness(Pings(), path, NODE, "redis://broker", 1.0)
    worker.step()
    assert os.path.exists(path)

    def refuse(*_):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(liveness.os, "replace", refuse)
    worker.step()
    assert not os.path.exists(path)  # the probe pings the worker itself, not a stale record


def test_changing_errors_are_logged_once_a_minute_at_most(tmp_path, caplog):
    pings = Pings()
    worker = liveness.Liveness(pings, liveness.record_path(env_for(tmp_path)), NODE,
                               "redis://broker", 1.0)
    for n in range(20):
        pings.error = TimeoutError(f"attempt {n} timed out")
        worker.step()
    assert caplog.text.count("did not answer its own ping") == 1


def record(tmp_path, now, **fields):
    values = {"pid": os.getpid(), "pid_start": liveness.process_start(os.getpid()),
              "node": NODE, "broker": "redis://:****@broker:6379/0", "interval": 10.0,
              "timeout": 5.0, "started": now - 100, "last_attempt": now - 1,
              "last_success": now - 1, "last_error": None, "failures": 0, "pings": 9,
              "answered": 9, "thread_cpu": 0.01}
    values.update(fields)
    liveness.write_record(liveness.record_path(env_for(tmp_path)), values)


def test_judge_fresh_stale_and_failing(tmp_path):
    env, now = env_for(tmp_path), 1_800_000_000.0
    verdict = liveness.judge(env, NODE, now)
    assert (verdict.healthy, verdict.reason) == (None, "")  # no record: no verdict
    record(tmp_path, now)
    verdict = liveness.judge(env, NODE, now)
    assert verdict.healthy is True and "answered its own ping" in verdict.reason
    limit = liveness.stale_after(10.0, 5.0)
    assert limit == 35.0
    record(tmp_path, now, last_success=now - 30, last_attempt=now - 2, failures=3,
           last_error="ConnectionError: refused")
    verdict = liveness.judge(env, NODE, now)
    assert verdict.healthy is True and "the last one failed: ConnectionError" in verdict.reason
    record(tmp_path, now, last_success=now - 42, last_attempt=now - 2, failures=4,
           last_error="ConnectionError: refused by redis://:hunter2-pw@broker:6379/0")
    verdict = liveness.judge(env, NODE, now)
    assert verdict.healthy is False
    assert verdict.reason.startswith(f"no answer to {NODE}'s own pings through "
                                     "redis://:****@broker:6379/0 for 42s (limit 35s): "
                                     "ConnectionError: refused")
    assert "hunter2-pw" not in verdict.reason
    record(tmp_path, now, last_success=now - 50, last_attempt=now - 50)
    verdict = liveness.judge(env, NODE, now)
    assert verdict.healthy is False and "stopped or stuck" in verdict.reason
    # Not one answer yet: a young worker gets the direct ping, an old one is unhealthy.
    record(tmp_path, now, started=now - 3, last_success=None)
    verdict = liveness.judge(env, NODE, now)
    assert (verdict.healthy, verdict.reason) == (None, f"{NODE} has not answered its own "
                                                       "pings yet")
    record(tmp_path, now, started=now - 60, last_success=None, last_error="NoAnswer: none")
    verdict = liveness.judge(env, NODE, now)
    assert verdict.healthy is False and "since it started 60s ago" in verdict.reason


def test_judge_gives_no_verdict_for_a_record_that_cannot_speak(tmp_path):
    env, now = env_for(tmp_path), 1_800_000_000.0
    path = liveness.record_path(env)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    record(tmp_path, now, pid=gone.pid)
    verdict = liveness.judge(env, NODE, now)
    assert verdict.healthy is None and f"(pid {gone.pid}) is not running" in verdict.reason
    record(tmp_path, now, pid_start="1")  # this pid, but a process started at another time
    verdict = liveness.judge(env, NODE, now)
    assert verdict.healthy is None and "another process has that pid now" in verdict.reason
    record(tmp_path, now, node="celery@someone-else")
    verdict = liveness.judge(env, NODE, now)
    assert verdict.healthy is None and "celery@someone-else's, not" in verdict.reason
    for corrupt in (b"\x00\xff{not json", b"[1, 2]", b'{"pid": 0}', b'{"pid": "12"}',
                    b'{"pid": 1, "interval": "ten"}', b""):
        with open(path, "wb") as f:
            f.write(corrupt)
        verdict = liveness.judge(env, NODE, now)
        assert verdict.healthy is None and " is corrupt: " in verdict.reason, corrupt
