"""Git submodules in the synced DAG tree (AIRFLOW_ECS_DAGS_GIT_SUBMODULES=true), against
real repositories over file://: nested, relative URLs, updates, unsafe URLs."""

import subprocess
from pathlib import Path

import pytest

from entrypoint import dagsync
from entrypoint.errors import DagSyncError
from tests.support.dag_sources import Repo, git, settings_for, tree_files

# The submodules here are file:// URLs, which git's transport policy refuses for submodules
# unless the user's git config allows them: as a user would, through git's environment.
ALLOW_FILE = {"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "protocol.file.allow",
              "GIT_CONFIG_VALUE_0": "always"}


def point(repo: Repo, path: str, url: str, sha: str, files: dict[str, str] | None = None,
          message: str = "submodule") -> str:
    """Commit a gitlink at path (recorded commit sha, URL in .gitmodules) and files."""
    for name, text in (files or {}).items():
        (repo.work / name).parent.mkdir(parents=True, exist_ok=True)
        (repo.work / name).write_text(text)
        git("add", name, cwd=repo.work)
    git("config", "-f", ".gitmodules", f"submodule.{path}.path", path, cwd=repo.work)
    git("config", "-f", ".gitmodules", f"submodule.{path}.url", url, cwd=repo.work)
    git("add", ".gitmodules", cwd=repo.work)
    git("update-index", "--add", "--cacheinfo", f"160000,{sha},{path}", cwd=repo.work)
    (repo.work / path).mkdir(parents=True, exist_ok=True)  # unpopulated: `add -A` keeps it
    git("-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", message,
        cwd=repo.work)
    git("push", "-q", "-f", str(repo.bare), "HEAD:main", cwd=repo.work)
    return git("rev-parse", "HEAD", cwd=repo.work)


@pytest.fixture
def repos(tmp_path):
    return Repo(tmp_path / "src"), Repo(tmp_path / "lib"), Repo(tmp_path / "deep")


def test_submodules_nested_relative_and_updated(repos, tmp_path):
    main, lib, deep = repos
    deep_first = deep.commit({"deep.py": "D1"})
    lib_first = point(lib, "vendor/deep", "../../deep/dags.git", deep_first,
                      {"helpers.py": "H1"})
    point(main, "plugins/lib", f"file://{lib.bare}", lib_first, {"dag.py": "DAG"})

    on = settings_for(tmp_path / "on", AIRFLOW_ECS_DAGS_SOURCE="git",
                      AIRFLOW_ECS_DAGS_GIT_URL=f"file://{main.bare}",
                      AIRFLOW_ECS_DAGS_GIT_SUBMODULES="true")
    first = dagsync.sync_once(on, ALLOW_FILE, first=True, raw_env={})
    files = {k: v for k, v in tree_files(on).items() if not k.endswith(".gitmodules")}
    assert files == {"dag.py": "DAG", "plugins/lib/helpers.py": "H1",
                     "plugins/lib/vendor/deep/deep.py": "D1"}
    assert "../../deep/dags.git" in tree_files(on)["plugins/lib/.gitmodules"]
    assert (first.files, first.fetched) == (5, 5)  # the two .gitmodules included

    off = settings_for(tmp_path / "off", AIRFLOW_ECS_DAGS_SOURCE="git",
                       AIRFLOW_ECS_DAGS_GIT_URL=f"file://{main.bare}")
    dagsync.sync_once(off, {}, first=True, raw_env={})
    assert set(tree_files(off)) == {"dag.py", ".gitmodules"}
    assert (off.dags_dir / "plugins" / "lib").is_dir()  # the gitlink, left empty

    # The library moves on twice; the DAG repository records the first of the two new
    # commits (not the library's tip): that exact commit is what gets synced.
    lib.commit({"helpers.py": "H2"})
    lib.commit({"helpers.py": "H3"})
    lib_second = git("rev-parse", "HEAD~1", cwd=lib.work)
    point(main, "plugins/lib", f"file://{lib.bare}", lib_second, message="bump lib")
    again = dagsync.sync_once(on, ALLOW_FILE, raw_env={})
    assert again.changed
    assert tree_files(on)["plugins/lib/helpers.py"] == "H2"
    assert tree_files(on)["plugins/lib/vendor/deep/deep.py"] == "D1"

    sub = settings_for(tmp_path / "sub", AIRFLOW_ECS_DAGS_SOURCE="git",
                       AIRFLOW_ECS_DAGS_GIT_URL=f"file://{main.bare}",
                       AIRFLOW_ECS_DAGS_GIT_SUBMODULES="true",
                       AIRFLOW_ECS_DAGS_GIT_SUBDIR="plugins")
    dagsync.sync_once(sub, ALLOW_FILE, first=True, raw_env={})
    assert tree_files(sub) == {"lib/helpers.py": "H2", "lib/vendor/deep/deep.py": "D1",
                               "lib/.gitmodules": tree_files(on)["plugins/lib/.gitmodules"]}


def test_unsafe_or_missing_submodule_url_refused_and_last_tree_kept(repos, tmp_path):
    main, lib, _ = repos
    lib_first = lib.commit({"helpers.py": "H1"})
    good = point(main, "lib", f"file://{lib.bare}", lib_first, {"dag.py": "DAG"})
    s = settings_for(tmp_path, AIRFLOW_ECS_DAGS_SOURCE="git",
                     AIRFLOW_ECS_DAGS_GIT_URL=f"file://{main.bare}",
                     AIRFLOW_ECS_DAGS_GIT_SUBMODULES="true")
    assert dagsync.sync_once(s, ALLOW_FILE, first=True, raw_env={}).revision == good

    marker = tmp_path / "ran"
    point(main, "lib", f"ext::sh -c touch% {marker}", lib_first, message="hostile")
    with pytest.raises(DagSyncError, match=r"submodule 'lib' .*transport helpers"):
        dagsync.sync_once(s, ALLOW_FILE, raw_env={})
    assert not marker.exists()
    point(main, "lib", "--upload-pack=touch /tmp/x", lib_first, message="option-like")
    with pytest.raises(DagSyncError, match="option-like"):
        dagsync.sync_once(s, ALLOW_FILE, raw_env={})

    git("rm", "-q", "-f", ".gitmodules", cwd=main.work)
    git("-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", "no urls",
        cwd=main.work)
    git("push", "-q", "-f", str(main.bare), "HEAD:main", cwd=main.work)
    with pytest.raises(DagSyncError, match=r"submodule .lib. .* has no URL in \.gitmodules"):
        dagsync.sync_once(s, ALLOW_FILE, raw_env={})
    assert {k: v for k, v in tree_files(s).items() if k != ".gitmodules"} == {
        "dag.py": "DAG", "lib/helpers.py": "H1"}  # the last good tree
    assert Path(s.dags_dir).resolve().name.startswith(good[:16])


def test_submodule_transport_follows_gits_policy(repos, tmp_path):
    """A file:// submodule is refused as `git clone --recurse-submodules` refuses it
    (protocol.file.allow defaults to "user"), while the repository itself may be file://;
    the user's git config opens it, or closes it for good."""
    main, lib, _ = repos
    lib_first = lib.commit({"helpers.py": "H1"})
    point(main, "lib", f"file://{lib.bare}", lib_first, {"dag.py": "DAG"})
    clone = subprocess.run(["git", "clone", "-q", "--recurse-submodules", f"file://{main.bare}",
                            str(tmp_path / "clone")], capture_output=True, text=True)
    assert "transport 'file' not allowed" in clone.stderr  # git's own verdict

    s = settings_for(tmp_path, AIRFLOW_ECS_DAGS_SOURCE="git",
                     AIRFLOW_ECS_DAGS_GIT_URL=f"file://{main.bare}",
                     AIRFLOW_ECS_DAGS_GIT_SUBMODULES="true")
    with pytest.raises(DagSyncError, match=r"submodule 'lib'.*protocol\.file\.allow") as err:
        dagsync.sync_once(s, {}, first=True, raw_env={})
    assert "transport 'file' not allowed" in str(err.value)
    assert not s.dags_dir.exists()  # nothing published
    assert not (s.dags_state_dir / "trees").exists() or not any(
        p.is_dir() for p in (s.dags_state_dir / "trees").iterdir())

    never = {"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "protocol.allow",
             "GIT_CONFIG_VALUE_0": "never"}
    with pytest.raises(DagSyncError, match="not allowed"):
        dagsync.sync_once(s, never, first=True, raw_env={})

    dagsync.sync_once(s, ALLOW_FILE, first=True, raw_env={})
    assert tree_files(s)["lib/helpers.py"] == "H1"
