"""Property-based tests (Hypothesis) over the values an operator can put in the environment:
broker and database URLs with planted passwords of any characters, and NAME_FILE contents
of any bytes and sizes. The real functions run (checks, masking, the waits, secrets
resolution) and, for a handful of cases, the real CLI. Whatever the input: an exit code
from the documented set, no traceback, and the planted password in no output."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from entrypoint import checks, config, secrets, waits
from entrypoint.errors import EntrypointError, SecretsError
from entrypoint.log import mask_url, redact
from tests.support.servers import free_port

BIN = str(Path(sys.executable).parent / "airflow-ecs")
# README's exit codes a `check` or `wait` may end with.
DOCUMENTED = {0, 1, 2, 78, 79, 81}

# Any character an environment variable can hold (no NUL, no lone surrogate), with the
# URL delimiters that break parsing drawn often.
ANY_CHAR = st.characters(blacklist_categories=("Cs",), blacklist_characters="\0")
DELIMITERS = st.sampled_from(list("/@:#?%[] "))
PASSWORD_BODY = st.text(st.one_of(ANY_CHAR, DELIMITERS), min_size=0, max_size=16)


def planted(body: str) -> str:
    """A password that can't turn up in output by chance."""
    return f"Qz7{body}7zQ"


def no_secret(secret: str, *texts: str) -> bool:
    return all(secret not in text for text in texts)


@settings(max_examples=300, deadline=None)
@given(body=PASSWORD_BODY, scheme=st.sampled_from(["redis", "rediss", "postgresql+psycopg2",
                                                  "git", "https", "ssh", "x-custom+y"]),
       user=st.text(st.characters(whitelist_categories=("Ll", "Nd")), max_size=6),
       tail=st.sampled_from(["", "/0", "/db?sslmode=require", "/org/repo.git", "#frag"]))
def test_mask_url_hides_any_password(body, scheme, user, tail):
    secret = planted(body)
    url = f"{scheme}://{user}:{secret}@host.example:6379{tail}"
    assert no_secret(secret, mask_url(url))
    if not any(c.isspace() for c in secret):  # free text is cut into words at whitespace
        assert no_secret(secret, redact(f"could not reach {url}: refused"))


@settings(max_examples=200, deadline=None)
@given(body=PASSWORD_BODY.filter(lambda b: not any(c.isspace() for c in b)),
       user=st.text(st.characters(whitelist_categories=("Ll",)), min_size=1, max_size=6),
       repo=st.text(st.characters(whitelist_categories=("Ll",)), min_size=1, max_size=8))
def test_scp_like_address_password_hidden(body, user, repo):
    secret = planted(body)
    address = f"{user}:{secret}@git.example:{repo}/dags.git"
    assert no_secret(secret, mask_url(address), redact(f"fatal: {address} unreachable"))


def env_with(broker_secret, db_secret, port):
    return {
        "AIRFLOW__CELERY__BROKER_URL": f"redis://:{broker_secret}@127.0.0.1:{port}/0",
        "AIRFLOW__CELERY__RESULT_BACKEND": f"db+postgresql://a:{db_secret}@127.0.0.1:{port}/r",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN":
            f"postgresql+psycopg2://airflow:{db_secret}@127.0.0.1:{port}/airflow",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL":
            f"http://api:{broker_secret}@127.0.0.1:{port}/execution/",
    }


@settings(max_examples=200, deadline=None)
@given(broker=PASSWORD_BODY, db=PASSWORD_BODY)
def test_checks_never_show_a_password_nor_crash(broker, db):
    broker_secret, db_secret = planted(broker), planted(db)
    env = env_with(broker_secret, db_secret, 6379)
    problems = checks.check("worker", config.load({}), env)
    text = "\n".join(problems)
    assert no_secret(broker_secret, text) and no_secret(db_secret, text)


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(broker=PASSWORD_BODY, db=PASSWORD_BODY)
def test_waits_end_in_a_documented_error(broker, db, caplog):
    """Against a refused port: a configuration error or a wait timeout, nothing else."""
    broker_secret, db_secret = planted(broker), planted(db)
    env = env_with(broker_secret, db_secret, free_port())
    caplog.clear()
    with pytest.raises(EntrypointError) as err:
        waits.wait_for_dependencies("worker", config.load({"AIRFLOW_ECS_WAIT_TIMEOUT": "1"}),
                                    env)
    assert err.value.exit_code in (78, 81)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for secret in (broker_secret, db_secret):
        assert no_secret(secret, str(err.value), logged)


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=st.one_of(
    st.binary(max_size=512),
    st.builds(lambda b, n: b * n, st.binary(min_size=1, max_size=8),
              st.integers(min_value=1, max_value=20000))))
def test_file_secret_is_its_content_or_a_secrets_error(tmp_path, content):
    path = tmp_path / "secret"
    path.write_bytes(content)
    name = "AIRFLOW__CORE__FERNET_KEY_FILE"
    try:
        resolved = secrets.resolve({name: str(path)}, config.load({}))
    except SecretsError as exc:
        message = str(exc)
        assert name in message and str(path) in message
        assert not (len(content) > secrets.FILE_MAX_BYTES) or "larger than" in message
        text = content.decode("utf-8", errors="ignore").replace("\0", "")
        if len(text) >= 6:
            assert text not in message
        return
    value = content.decode("utf-8")
    assert resolved.env == {"AIRFLOW__CORE__FERNET_KEY": value.removesuffix("\n")}
    assert len(content) <= secrets.FILE_MAX_BYTES and "\0" not in value


def cli(args, env):
    base = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    return subprocess.run([BIN, *args], env={**base, **env}, capture_output=True, text=True,
                          timeout=60, errors="replace")


@settings(max_examples=6, deadline=None)
@given(broker=PASSWORD_BODY, db=PASSWORD_BODY)
def test_cli_check_and_wait(broker, db):
    broker_secret, db_secret = planted(broker), planted(db)
    env = {**env_with(broker_secret, db_secret, free_port()), "AIRFLOW_ECS_WAIT_TIMEOUT": "1"}
    for args in (["check", "worker"], ["wait"]):
        result = cli(args, env)
        out = result.stdout + result.stderr
        assert result.returncode in DOCUMENTED, (args, out)
        assert "Traceback" not in out and "internal error" not in out, (args, out)
        assert no_secret(broker_secret, out) and no_secret(db_secret, out), (args, out)


@settings(max_examples=5, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=st.binary(min_size=1, max_size=64))
def test_cli_file_secret(tmp_path, content):
    path = tmp_path / "cli-secret"
    path.write_bytes(b"Qz7" + content + b"7zQ")
    result = cli(["secrets"], {"AIRFLOW__CORE__FERNET_KEY_FILE": str(path)})
    out = result.stdout + result.stderr
    assert result.returncode in (0, 79), out
    assert "Traceback" not in out and "Qz7" not in out
