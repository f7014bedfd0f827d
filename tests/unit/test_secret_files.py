"""NAME_FILE reads are bounded: only regular files of UTF-8 text up to a cap, and every
refusal is a secrets error (exit 79) naming the variable and the path, never the content."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from entrypoint import config, secrets
from entrypoint.errors import SecretsError

BIN = str(Path(sys.executable).parent / "airflow-ecs")
NAME = "AIRFLOW__CORE__FERNET_KEY_FILE"


def resolve(path):
    return secrets.resolve({NAME: str(path)}, config.load({}))


def test_largest_allowed_file_is_read(tmp_path):
    path = tmp_path / "big"
    path.write_text("x" * secrets.FILE_MAX_BYTES)
    assert len(resolve(path).env["AIRFLOW__CORE__FERNET_KEY"]) == secrets.FILE_MAX_BYTES


def test_symlink_to_a_regular_file_is_read(tmp_path):
    (tmp_path / "real").write_text("linked-value\n")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    assert resolve(tmp_path / "link").env["AIRFLOW__CORE__FERNET_KEY"] == "linked-value"


@pytest.mark.parametrize("content,words", [
    (b"y" * (200 * 1024), "larger than 64 KiB"),
    (b"y" * (secrets.FILE_MAX_BYTES + 1), "larger than 64 KiB"),
    (b"planted\0secret", "NUL byte"),
    (b"planted\xff\xfesecret", "not UTF-8"),
])
def test_bad_content_is_a_secrets_error(tmp_path, content, words):
    path = tmp_path / "secret"
    path.write_bytes(content)
    with pytest.raises(SecretsError) as err:
        resolve(path)
    message = str(err.value)
    assert words in message and NAME in message and str(path) in message
    assert "planted" not in message and "yyyy" not in message


@pytest.mark.parametrize("kind", ["device", "fifo", "directory", "missing"])
def test_not_a_regular_file_is_a_secrets_error(tmp_path, kind):
    path = {"device": Path("/dev/zero"), "fifo": tmp_path / "fifo", "directory": tmp_path,
            "missing": tmp_path / "missing"}[kind]
    if kind == "fifo":
        os.mkfifo(path)
    with pytest.raises(SecretsError) as err:
        resolve(path)  # neither grows without end (/dev/zero) nor blocks (a FIFO)
    assert NAME in str(err.value) and str(path) in str(err.value)


@pytest.mark.parametrize("content", [b"\0" * 10, b"\xff" * 10, b"z" * (200 * 1024)])
def test_cli_exit_code_is_79_without_traceback(tmp_path, content):
    path = tmp_path / "secret"
    path.write_bytes(content)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env[NAME] = str(path)
    for source in (str(path), "/dev/zero"):
        env[NAME] = source
        result = subprocess.run([BIN, "secrets"], env=env, capture_output=True, text=True,
                                timeout=60)
        assert result.returncode == 79, result.stderr
        assert NAME in result.stderr and "Traceback" not in result.stderr
