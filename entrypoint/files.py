"""Files that other processes read while they are rewritten.

The DAG sync's status, the generated webserver_config.py and the worker's liveness
record are each read by another process (a probe, Airflow) at any moment; each is
rewritten whole, mode 0600, since each can name hosts, users or errors.
"""

from __future__ import annotations

import contextlib
import os


def replace_private(path: str | os.PathLike[str], text: str) -> None:
    """Replace path's content with text at once, mode 0600.

    Written to a temporary file beside it and renamed into place (os.replace is
    atomic within one filesystem): a reader sees the old content or the new one,
    never half of either. One writer per process: the temporary file is named after
    the process. No fsync: the readers share this kernel. Raises OSError (the
    temporary file removed); the folder must exist.
    """
    target = os.fspath(path)
    folder, name = os.path.split(target)
    temporary = os.path.join(folder, f".{name}.{os.getpid()}")
    try:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)  # left by a process of this pid that died halfway
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            os.fchmod(handle.fileno(), 0o600)  # whatever the umask
            handle.write(text)
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
