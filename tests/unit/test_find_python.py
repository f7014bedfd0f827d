"""scripts/find-python.sh: the development venv's Python is found among those installed
(uv can't download one where only the package registries answer)."""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "find-python.sh"


def fake_python(path: Path, version: str, works: bool = True) -> Path:
    """An executable that answers the script's version question as that Python would (or
    fails, as a pyenv shim does when no pyenv version selects it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\necho {version}\n" if works else "#!/bin/sh\nexit 127\n")
    path.chmod(0o755)
    return path


def find(version: str, path_dirs: list[Path], pyenv_root: Path):
    env = {"PATH": ":".join([*map(str, path_dirs), "/usr/bin", "/bin"]),
           "PYENV_ROOT": str(pyenv_root), "HOME": str(pyenv_root.parent)}
    return subprocess.run(["bash", str(SCRIPT), version], env=env, capture_output=True,
                          text=True, timeout=30)


def test_a_broken_shim_is_passed_over_for_the_newest_pyenv_version(tmp_path):
    shims = tmp_path / "shims"
    fake_python(shims / "python3.13", "3.13", works=False)
    fake_python(shims / "python3", "3.11")
    versions = tmp_path / "pyenv" / "versions"
    fake_python(versions / "3.13.0" / "bin" / "python3.13", "3.13")
    newest = fake_python(versions / "3.13.10" / "bin" / "python3.13", "3.13")
    fake_python(versions / "3.13.11t" / "bin" / "python3.13", "3.13t")  # free-threaded
    fake_python(versions / "3.12.4" / "bin" / "python3.12", "3.12")
    result = find("3.13", [shims], tmp_path / "pyenv")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(newest)


def test_path_comes_before_pyenv_and_python3_counts_when_it_is_that_version(tmp_path):
    bin_dir = tmp_path / "bin"
    python3 = fake_python(bin_dir / "python3", "3.13")
    fake_python(tmp_path / "pyenv" / "versions" / "3.13.2" / "bin" / "python3.13", "3.13")
    result = find("3.13", [bin_dir], tmp_path / "pyenv")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(python3)


def test_none_found_says_what_to_install(tmp_path):
    bin_dir = tmp_path / "bin"
    fake_python(bin_dir / "python3", "3.11")
    result = find("3.13", [bin_dir], tmp_path / "pyenv")
    assert result.returncode == 1
    assert result.stdout == ""
    assert "no CPython 3.13" in result.stderr
    assert "pyenv install 3.13" in result.stderr


def test_the_venv_and_mypy_are_on_the_images_python():
    image = re.search(r"(?m)^ARG PYTHON_VERSION=(\S+)$",
                      (ROOT / "images" / "base" / "Dockerfile").read_text())
    venv = re.search(r"(?m)^PYTHON_VERSION := (\S+)$", (ROOT / "Makefile").read_text())
    mypy = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]
    assert image and venv
    assert venv.group(1) == image.group(1) == mypy["python_version"]
