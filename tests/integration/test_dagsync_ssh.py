"""DAG sync over SSH against a real OpenSSH server on 127.0.0.1: the key is written
0600 in a private directory only while git runs, the host key is checked strictly
against AIRFLOW_ECS_DAGS_GIT_KNOWN_HOSTS, and the key reaches no error, argument
list, cache config or status file."""

import os
import pwd
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from entrypoint import dagsync
from entrypoint.dagsync import publish
from entrypoint.errors import ConfigError, DagSyncError
from tests.support.dag_sources import Repo, settings_for, tree_files
from tests.support.servers import free_port

SSHD = "/usr/sbin/sshd"  # sshd re-executes itself: it must be started by absolute path
KEY_VAR = "AIRFLOW_ECS_DAGS_GIT_SSH_KEY"


def keygen(path: Path) -> tuple[str, str]:
    """A new ed25519 key pair at path: (private key text, public key line)."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", path.name,
                    "-f", str(path)], check=True, capture_output=True)
    return path.read_text(), path.with_suffix(".pub").read_text().strip()


class Sshd:
    def __init__(self, root: Path):
        if not os.access(SSHD, os.X_OK):
            pytest.fail(f"{SSHD} not found: install Debian's openssh-server package "
                        "(make test installs it: scripts/machine-deps.sh test)",
                        pytrace=False)
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        _, host_pub = keygen(root / "host_ed25519")
        self.client_key, client_pub = keygen(root / "client")
        self.stranger_key, _ = keygen(root / "stranger")  # not in authorized_keys
        _, other_host_pub = keygen(root / "other_host")
        (root / "authorized_keys").write_text(client_pub + "\n")
        self.port = free_port()
        self.user = pwd.getpwuid(os.getuid()).pw_name
        self.known_hosts = f"[127.0.0.1]:{self.port} {' '.join(host_pub.split()[:2])}"
        self.wrong_known_hosts = (f"[127.0.0.1]:{self.port} "
                                  f"{' '.join(other_host_pub.split()[:2])}")
        config = root / "sshd_config"
        config.write_text(f"""\
Port {self.port}
ListenAddress 127.0.0.1
HostKey {root / "host_ed25519"}
PidFile {root / "sshd.pid"}
AuthorizedKeysFile {root / "authorized_keys"}
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PermitRootLogin prohibit-password
PrintMotd no
LogLevel VERBOSE
""")
        if os.geteuid() == 0:
            # The privilege-separation directory, which Debian's service unit creates.
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        self.log = root / "sshd.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)],
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        deadline = time.monotonic() + 10
        while "Server listening on 127.0.0.1" not in self.log.read_text(errors="replace"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"sshd did not start:\n{self.log.read_text(errors='replace')}",
                            pytrace=False)
            time.sleep(0.02)

    def url(self, repo: Repo) -> str:
        return f"ssh://{self.user}@127.0.0.1:{self.port}{repo.bare}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    server = Sshd(tmp_path_factory.mktemp("sshd"))
    yield server
    server.stop()


@pytest.fixture
def repo(tmp_path):
    return Repo(tmp_path / "src")


@pytest.fixture
def tmpdir_owned(tmp_path, monkeypatch):
    """The temporary directory of this process, so that leftovers can be looked for."""
    path = tmp_path / "tmp"
    path.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(path))
    return path


def leaked(key: str, text: str) -> list[str]:
    """The lines of the private key's body found in text."""
    return [line for line in key.splitlines() if line and "PRIVATE KEY" not in line
            and line in text]


def ssh_settings(tmp_path, sshd, repo, known_hosts):
    return settings_for(tmp_path, AIRFLOW_ECS_DAGS_SOURCE="git",
                        AIRFLOW_ECS_DAGS_GIT_URL=sshd.url(repo),
                        AIRFLOW_ECS_DAGS_GIT_KNOWN_HOSTS=known_hosts)


def failure(sshd, exc) -> str:
    return f"{exc}\n--- sshd log ---\n{sshd.log.read_text(errors='replace')[-3000:]}"


def test_ssh_sync_publishes_and_leaves_no_key_behind(sshd, repo, tmp_path, tmpdir_owned):
    first = repo.commit({"a.py": "A", "team/b.py": "B"})
    s = ssh_settings(tmp_path, sshd, repo, sshd.known_hosts)
    try:
        result = dagsync.sync_once(s, {KEY_VAR: sshd.client_key}, first=True, raw_env={})
    except DagSyncError as exc:
        pytest.fail(failure(sshd, exc))
    assert result.revision == first and result.changed
    assert tree_files(s) == {"a.py": "A", "team/b.py": "B"}
    assert list(tmpdir_owned.iterdir()) == []  # no airflow-ecs-git-* directory left

    # From a file (AIRFLOW_ECS_DAGS_GIT_SSH_KEY_FILE) too, on a refresh with the cache.
    key_file = tmp_path / "key-secret"
    key_file.write_text(sshd.client_key)
    second = repo.commit({"c.py": "C"})
    result = dagsync.sync_once(s, {}, raw_env={f"{KEY_VAR}_FILE": str(key_file)})
    assert result.revision == second
    assert tree_files(s) == {"a.py": "A", "team/b.py": "B", "c.py": "C"}
    assert list(tmpdir_owned.iterdir()) == []

    cache_config = s.dags_state_dir / "repo.git" / "config"
    status = publish.read_status(s)
    assert status.revision == second and status.last_error is None
    state_files = [p for p in (tmp_path / "volume").rglob("*") if p.is_file()]
    assert cache_config in state_files
    assert any(p.name == "status.json" for p in state_files)
    for path in state_files:
        assert not leaked(sshd.client_key, path.read_bytes().decode(errors="replace")), path
    assert "127.0.0.1" not in cache_config.read_text()  # the URL isn't stored either


WRAPPER = """\
#!/bin/sh
# Records ssh's arguments and the -i key file's mode and owner, then runs the real ssh.
key= prev=
for arg in "$@"; do
  [ "$prev" = -i ] && key=$arg
  prev=$arg
done
log={log}/ssh-$$
printf '%s\\0' "$@" >"$log.argv"
stat -c '%a|%u|%F|%n' "$key" "$(dirname "$key")" >"$log.stat"
exec /usr/bin/ssh "$@"
"""


def test_key_is_0600_in_a_0700_directory_and_never_in_ssh_argv(sshd, repo, tmp_path,
                                                                  tmpdir_owned):
    repo.commit({"a.py": "A"})
    bin_dir, log_dir = tmp_path / "bin", tmp_path / "ssh-log"
    bin_dir.mkdir()
    log_dir.mkdir()
    wrapper = bin_dir / "ssh"
    wrapper.write_text(WRAPPER.format(log=log_dir))
    wrapper.chmod(0o755)
    env = {"PATH": f"{bin_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}",
           KEY_VAR: sshd.client_key}
    s = ssh_settings(tmp_path, sshd, repo, sshd.known_hosts)
    try:
        dagsync.sync_once(s, env, first=True, raw_env={})
    except DagSyncError as exc:
        pytest.fail(failure(sshd, exc))
    assert tree_files(s) == {"a.py": "A"}

    runs = sorted(log_dir.glob("*.stat"))
    assert runs, "git did not run ssh through the wrapper"
    for run in runs:
        (key_line, dir_line) = run.read_text().splitlines()
        key_mode, key_uid, key_type, key_path = key_line.split("|", 3)
        dir_mode, dir_uid, dir_type, dir_path = dir_line.split("|", 3)
        assert (key_mode, key_type) == ("600", "regular file"), key_line
        assert (dir_mode, dir_type) == ("700", "directory"), dir_line
        assert key_uid == dir_uid == str(os.getuid())
        assert Path(key_path).parent == Path(dir_path) and Path(dir_path).parent == tmpdir_owned
        assert Path(dir_path).name.startswith("airflow-ecs-git-")
        argv = run.with_suffix(".argv").read_bytes().decode()
        assert f"{key_path}\0" in argv
        assert not leaked(sshd.client_key, argv)
    assert list(tmpdir_owned.iterdir()) == []


def test_wrong_host_key_is_refused_and_the_published_tree_stays(sshd, repo, tmp_path,
                                                                 tmpdir_owned):
    first = repo.commit({"a.py": "A"})
    good = ssh_settings(tmp_path, sshd, repo, sshd.known_hosts)
    dagsync.sync_once(good, {KEY_VAR: sshd.client_key}, first=True, raw_env={})
    published = good.dags_dir.resolve()
    repo.commit({"a.py": "A2", "b.py": "B"})
    wrong = ssh_settings(tmp_path, sshd, repo, sshd.wrong_known_hosts)
    with pytest.raises(DagSyncError) as err:
        dagsync.sync_once(wrong, {KEY_VAR: sshd.client_key}, raw_env={})
    message = str(err.value)
    assert "SSH host key not in AIRFLOW_ECS_DAGS_GIT_KNOWN_HOSTS" in message, message
    assert not leaked(sshd.client_key, message)
    assert good.dags_dir.resolve() == published and tree_files(good) == {"a.py": "A"}
    status = publish.read_status(good)
    assert status.revision == first and status.consecutive_failures == 1
    assert not leaked(sshd.client_key, status.last_error)
    assert list(tmpdir_owned.iterdir()) == []


def test_key_not_authorized_is_bad_credentials(sshd, repo, tmp_path, tmpdir_owned):
    repo.commit({"a.py": "A"})
    s = ssh_settings(tmp_path, sshd, repo, sshd.known_hosts)
    with pytest.raises(DagSyncError) as err:
        dagsync.sync_once(s, {KEY_VAR: sshd.stranger_key}, first=True, raw_env={})
    message = str(err.value)
    assert "bad credentials" in message, message
    assert not leaked(sshd.stranger_key, message)
    assert not s.dags_dir.exists()  # a failed first sync publishes nothing
    assert list(tmpdir_owned.iterdir()) == []


def test_ssh_key_without_known_hosts_is_a_config_error(sshd, repo, tmp_path, tmpdir_owned):
    repo.commit({"a.py": "A"})
    s = settings_for(tmp_path, AIRFLOW_ECS_DAGS_SOURCE="git",
                     AIRFLOW_ECS_DAGS_GIT_URL=sshd.url(repo))
    with pytest.raises(ConfigError, match="AIRFLOW_ECS_DAGS_GIT_KNOWN_HOSTS") as err:
        dagsync.sync_once(s, {KEY_VAR: sshd.client_key}, first=True, raw_env={})
    assert not leaked(sshd.client_key, str(err.value))
    assert not s.dags_dir.exists()
    assert list(tmpdir_owned.iterdir()) == []
