"""Child processes of the start-up phases, and prompt termination.

Start-up runs a few children (git, `airflow db migrate`). A SIGTERM during
start-up raises `Terminated` in the main thread; `terminate_children()` then
stops and reaps every child still running, so the entrypoint ends within
seconds and leaves no orphan behind.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from entrypoint.errors import Terminated

if TYPE_CHECKING:
    # Imported where a child is started: every start-up installs the signal handlers
    # below, and most start no child.
    import subprocess
    from types import FrameType

_children: set[subprocess.Popen[bytes]] = set()
_lock = threading.Lock()


def _start(argv: Sequence[str], env: Mapping[str, str] | None, cwd: str | None,
           input_bytes: bytes | None) -> subprocess.Popen[bytes]:
    """argv in a session (and process group) of its own, output captured."""
    import subprocess

    return subprocess.Popen(
        list(argv), env=dict(env) if env is not None else None, cwd=cwd,
        stdin=subprocess.PIPE if input_bytes is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
    )


def run(argv: Sequence[str], env: Mapping[str, str] | None = None, timeout: float | None = None,
        cwd: str | None = None,
        input_bytes: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    """Run argv (never through a shell), capturing output; the child is reaped on TERM."""
    import subprocess

    proc = _start(argv, env, cwd, input_bytes)
    with _lock:
        _children.add(proc)
    try:
        out, err = proc.communicate(input=input_bytes, timeout=timeout)
    except subprocess.TimeoutExpired:
        _stop(proc)
        raise
    finally:
        with _lock:
            _children.discard(proc)
        if proc.poll() is None:
            _stop(proc)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _stop(proc: subprocess.Popen[bytes], grace: float = 3.0) -> None:
    import subprocess

    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait()


def terminate_children() -> None:
    with _lock:
        children = list(_children)
    for proc in children:
        _stop(proc)
    terminate_groups()


def _raise_terminated(signum: int, _frame: FrameType | None) -> None:
    raise Terminated(f"received {signal.Signals(signum).name} during start-up")


def install_signal_handlers() -> None:
    signal.signal(signal.SIGTERM, _raise_terminated)
    signal.signal(signal.SIGINT, _raise_terminated)


def restore_signal_handlers() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_group(argv: Sequence[str], env: Mapping[str, str] | None = None,
              timeout: float | None = None, cwd: str | None = None,
              input_bytes: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    """As `run`, for a child that starts helpers of its own (git starts `git remote-http`
    and `ssh`, which carry its credentials in their environment): the child leads a new
    process group, and the whole group is stopped when the child ends, times out, or a
    SIGTERM interrupts the wait, so no helper outlives it."""
    import subprocess

    proc = _start(argv, env, cwd, input_bytes)
    with _lock:
        _groups.add(proc)
    try:
        out, err = proc.communicate(input=input_bytes, timeout=timeout)
    finally:
        try:
            stop_group(proc)
        finally:
            with _lock:
                _groups.discard(proc)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


_groups: set[subprocess.Popen[bytes]] = set()


def stop_group(proc: subprocess.Popen[bytes], grace: float = 1.0) -> None:
    """Stop every process of the group proc leads: TERM, then KILL after grace seconds
    for whatever is left (the group outlives its leader while any helper runs)."""
    import os
    import subprocess

    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
    # The leader's id stays the group's id while any member lives, so this reaches only
    # the leader's own helpers.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    if proc.poll() is None:
        proc.wait()
    _await_group_gone(proc.pid, grace)
    for stream in (proc.stdout, proc.stderr, proc.stdin):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()


def _await_group_gone(pgid: int, limit: float) -> None:
    """Return once no member of the group is still running, or after limit seconds.

    A killed helper is not gone when `killpg` returns: on a busy machine it can still be
    exiting, its command line and environment (which carry a token) readable in /proc.
    A member that has exited but waits for PID 1 to reap it holds nothing: it is not
    waited for (tini, PID 1 in the images, reaps at once; another init may reap late)."""
    import os
    import time

    deadline = time.monotonic() + limit
    while True:
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return  # no member at all (or the id names another user's group now)
        # Only a group with a member left gets here (rare: a helper still exiting), so
        # every git command's start-up path does without importing psutil.
        if not _has_running_member(pgid) or time.monotonic() >= deadline:
            return
        time.sleep(0.005)


def _has_running_member(pgid: int) -> bool:
    """Whether a process of group pgid is neither a zombie nor dead."""
    import os

    import psutil

    for process in psutil.process_iter():
        try:
            if os.getpgid(process.pid) == pgid and process.status() not in (
                    psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD):
                return True
        except (ProcessLookupError, psutil.Error):
            continue
    return False


def terminate_groups() -> None:
    """Stop every group started by `run_group` that is still running."""
    with _lock:
        groups = list(_groups)
    for proc in groups:
        stop_group(proc)
