"""A process group stopped by `procs.stop_group` has no running member when it returns."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from entrypoint import procs


def _members(pgid: int, running: bool = False) -> int:
    count = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.getpgid(int(pid)) != pgid:
                continue
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (ProcessLookupError, FileNotFoundError):
            continue
        if not running or state not in "ZX":
            count += 1
    return count


@pytest.mark.parametrize("attempt", range(20))
def test_no_member_of_a_stopped_group_is_left_not_even_dying(attempt):
    # The leader and its helper both ignore TERM, as a helper stuck in a read may; the
    # helper is orphaned when the leader dies and is then reaped by PID 1, not by us.
    proc = subprocess.Popen(["sh", "-c", "trap '' TERM; sleep 30 & sleep 30"],
                            start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 5
    while _members(proc.pid) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _members(proc.pid) == 3
    procs.stop_group(proc, grace=0.2)
    # Exited members that PID 1 has yet to reap hold nothing; no other may be left.
    assert _members(proc.pid, running=True) == 0
