"""Process groups under supervisord, run in this process so the exit code means something.

supervisord itself always exits 0, so it runs in-process (`supervisord.main`)
and an event listener records any program that exits on its own. Such an
exit stops the whole group: on ECS a container whose scheduler died must
fail and be replaced, not limp on with the triggerer alone. A SIGTERM to
the group stops every program (SIGTERM, then SIGKILL after the program's
stop time) and exits 0 unless a program had failed.

The generated configuration holds program names and fixed commands only;
values reach the programs through the inherited environment, never through
the file or a shell.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from entrypoint.log import log

if TYPE_CHECKING:
    from entrypoint.roles import Program

FAILED_FILE = "failed"


def render_config(programs: Sequence[Program], rundir: Path) -> str:
    lines = [
        "[supervisord]",
        "nodaemon=true",
        "logfile=/dev/stdout",
        "logfile_maxbytes=0",
        "loglevel=info",
        f"pidfile={rundir / 'supervisord.pid'}",
        f"childlogdir={rundir}",
        "",
        "[eventlistener:group-watch]",
        f"command={shlex.quote(sys.executable)} -m entrypoint.group listen "
        f"{shlex.quote(str(rundir / FAILED_FILE))}",
        "events=PROCESS_STATE_EXITED,PROCESS_STATE_FATAL",
        "autorestart=true",
        "stdout_logfile=NONE",
        "stderr_logfile=/dev/stderr",
        "stderr_logfile_maxbytes=0",
        "",
    ]
    for program in programs:
        # supervisord expands %(...)s in commands: escape '%' in arguments.
        command = " ".join(shlex.quote(arg).replace("%", "%%") for arg in program.argv)
        lines += [
            f"[program:{program.name}]",
            f"command={command}",
            "autostart=true",
            "autorestart=false",
            "startsecs=0",
            "stopsignal=TERM",
            # Signal the program only, never its process group: Celery's pool
            # children must not get SIGTERM directly (WorkerLostError).
            "stopasgroup=false",
            "killasgroup=true",
            f"stopwaitsecs={program.stop_seconds}",
            "stdout_logfile=/dev/stdout",
            "stdout_logfile_maxbytes=0",
            "stderr_logfile=/dev/stderr",
            "stderr_logfile_maxbytes=0",
            "",
        ]
    return "\n".join(lines)


def run_group(programs: Sequence[Program], env: Mapping[str, str]) -> int:
    """Run programs under supervisord until it stops; 0 unless a program failed."""
    from supervisor import supervisord

    rundir = Path(tempfile.mkdtemp(prefix="airflow-ecs-group-"))
    try:
        conf = rundir / "supervisord.conf"
        conf.write_text(render_config(programs, rundir))
        os.environ.clear()
        os.environ.update(env)
        log.info("starting process group %s under supervisord",
                 "+".join(p.name for p in programs))
        supervisord.main(["-c", str(conf)])
        failed = rundir / FAILED_FILE
        if failed.exists():
            log.error("process group stopped because a program failed: %s",
                      failed.read_text().strip())
            return 1
        return 0
    finally:
        shutil.rmtree(rundir, ignore_errors=True)


def listen(failed_file: str) -> int:
    """supervisord event listener: on a program's own exit, record it and stop the group."""
    from supervisor import childutils

    while True:
        headers, payload = childutils.listener.wait(sys.stdin, sys.stdout)
        fields = childutils.get_headers(payload.split("\n", 1)[0])
        name = fields.get("processname", "?")
        if headers["eventname"] == "PROCESS_STATE_EXITED":
            what = f"{name} exited (expected={fields.get('expected')})"
        else:
            what = f"{name} could not be started (FATAL)"
        with open(failed_file, "a") as handle:
            handle.write(what + "\n")
        sys.stderr.write(f"airflow-ecs ERROR {what}; stopping the group\n")
        sys.stderr.flush()
        os.kill(os.getppid(), signal.SIGTERM)
        childutils.listener.ok(sys.stdout)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "listen":
        raise SystemExit(listen(sys.argv[2]))
    raise SystemExit("usage: python -m entrypoint.group listen FAILED_FILE")
