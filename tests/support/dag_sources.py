"""DAG sources for the DAG sync tests: git repositories on disk, the settings that point the
sync at them, the published tree as a dict, and the environment that points it at S3."""

from __future__ import annotations

import subprocess
from pathlib import Path

from entrypoint import config


def git(*args, cwd=None):
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                          text=True).stdout.strip()


class Repo:
    def __init__(self, root: Path):
        self.bare = root / "dags.git"
        self.work = root / "work"
        git("init", "-q", "--bare", "-b", "main", str(self.bare))
        git("init", "-q", "-b", "main", str(self.work))

    def commit(self, files: dict[str, str | bytes | None], message="change",
               branch="main") -> str:
        for name, content in files.items():
            path = self.work / name
            if content is None:
                path.unlink()
            elif isinstance(content, bytes):
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(content)
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(content)
        git("add", "-A", cwd=self.work)
        git("-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q",
            "--allow-empty", "-m", message, cwd=self.work)
        git("push", "-q", "-f", str(self.bare), f"HEAD:{branch}", cwd=self.work)
        return git("rev-parse", "HEAD", cwd=self.work)


def settings_for(tmp_path, **env):
    base = {"AIRFLOW_ECS_DAGS_DIR": str(tmp_path / "volume" / "dags"),
            "AIRFLOW_ECS_DAGS_KEEP_SECONDS": "0"}
    return config.load({**base, **env})


def tree_files(settings):
    root = settings.dags_dir
    return {str(p.relative_to(root)): p.read_text() for p in root.rglob("*") if p.is_file()
            and not p.name.startswith(".airflow-ecs")}


def s3_env(url):
    return {"AWS_ENDPOINT_URL": url, "AWS_REGION": "eu-west-1"}
