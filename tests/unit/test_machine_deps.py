"""The Debian packages the project needs are listed and installed in one place."""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "machine-deps.sh"
# Installing inside an image (a Dockerfile's RUN) is the image's business, not the machine's.
_INSTALL = re.compile(r"apt-get\s+(-\S+\s+)*install|apt\s+install|dpkg\s+-i|pip\s+install\s+[^-]")


def tracked_files():
    names = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.split()
    return [ROOT / n for n in names if "Dockerfile" not in n and (ROOT / n).is_file()]


def test_only_one_script_installs_debian_packages():
    installing = []
    for path in tracked_files():
        if path == Path(__file__):
            continue  # this test names the commands it looks for
        if path.suffix not in (".sh", ".py", "") and path.name != "Makefile":
            continue
        text = path.read_text(errors="replace")
        if _INSTALL.search(text) and "apt-get" in text:
            installing.append(path.relative_to(ROOT).as_posix())
    assert installing == ["scripts/machine-deps.sh"]


def test_ci_runs_the_readmes_commands_and_nothing_else():
    readme = (ROOT / "README.md").read_text()
    commands = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()
                if line.strip() and not line.lstrip().startswith(("#", "echo", "set ", "cd ",
                                                                    "started="))]
    assert commands, "no command in .ci/run"
    for command in commands:
        base = command.split(" PYTEST_ARGS=")[0]
        assert f"\n{base}\n" in readme, f".ci/run runs {command!r}, which the README doesn't"


def test_not_root_says_what_to_install_and_stops():
    # A dpkg-query that reports nothing installed, run as an unprivileged user (in a
    # folder that user can read: pytest's own tmp_path is private to root).
    with tempfile.TemporaryDirectory(dir="/tmp") as scratch:
        fake = Path(scratch) / "bin"
        fake.mkdir()
        (fake / "dpkg-query").write_text("#!/bin/sh\nexit 1\n")
        (fake / "dpkg-query").chmod(0o755)
        Path(scratch).chmod(0o755)
        env = {"PATH": f"{fake}:/usr/bin:/bin", "HOME": scratch}
        command = ["bash", str(SCRIPT), "test"]
        if os.getuid() == 0:
            command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *command]
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 1, result.stderr
    assert "apt-get install -y --no-install-recommends" in result.stderr
    for package in ("redis-server", "postgresql", "openssh-server", "docker-registry"):
        assert package in result.stderr


def test_unknown_group_is_named():
    result = subprocess.run(["bash", str(SCRIPT), "nope"], capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 2
    assert "unknown group 'nope'" in result.stderr
