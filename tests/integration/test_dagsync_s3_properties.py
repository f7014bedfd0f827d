"""Property-based: any set of S3 keys, synced from moto, ends in a faithful tree or in the
DAG sync's documented error, never another exception; nothing is written outside the
DAG and state folders, and the session token riding in every presigned URL is never
written anywhere."""

import itertools
import logging
import re

import boto3
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from entrypoint import dagsync
from entrypoint.errors import EntrypointError
from tests.support.dag_sources import s3_env, settings_for

TOKEN = "PLANTED-session-token-31337"

# Path parts chosen to hit every rule: the ones naming no path, a name too long, a NUL,
# the sync's former manifest name, control and non-ASCII characters; and arbitrary text.
PARTS = st.one_of(
    st.sampled_from(["a", "b.py", "..", ".", "", "x" * 300, "nul\0.py", "ünï dag.py",
                     ".airflow-ecs-manifest.json", "\x01", ".airflowignore", "A"]),
    st.text(alphabet=st.characters(blacklist_characters="/\n\r",
                                   blacklist_categories=("Cs",)), min_size=1, max_size=12),
)
KEYS = st.lists(st.lists(PARTS, min_size=1, max_size=4).map("/".join),
                min_size=0, max_size=6, unique=True).filter(
    lambda keys: all(len(k.encode()) < 900 for k in keys))


def expected(keys: list[str]) -> tuple[dict[str, bytes] | None, list[str]]:
    """(the tree the keys must publish, or None when they must be refused; the keys left
    out), by the rules docs/dags.md states."""
    files, skipped = {}, []
    for key in keys:
        if key == "" or key.endswith("/"):
            continue  # a folder marker (the empty key is the prefix's own)
        if any(part in ("", ".", "..") for part in key.split("/")):
            skipped.append(key)
            continue
        files[key] = key.encode()
    for key in files:
        parts = key.split("/")
        if "\0" in key or any(len(p.encode()) > 255 for p in parts) or any(
                "/".join(parts[:i]) in files for i in range(1, len(parts))):
            return None, skipped
    return (files or None), skipped


class Lines(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines = []

    def emit(self, record):
        self.lines.append(self.format(record))


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                 HealthCheck.too_slow])
@given(keys=KEYS)
@example(keys=["a", ""])  # the prefix's own folder marker beside a file: found once
def test_any_s3_keys_publish_faithfully_or_fail_as_documented(moto, tmp_path, monkeypatch,
                                                               keys):
    monkeypatch.setenv("AWS_SESSION_TOKEN", TOKEN)
    s3 = boto3.client("s3", endpoint_url=moto.url, region_name="eu-west-1")
    try:
        s3.create_bucket(Bucket="props", CreateBucketConfiguration={"LocationConstraint":
                                                                    "eu-west-1"})
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass
    n = next(COUNTER)
    prefix = f"run{n}/"
    for key in keys:
        s3.put_object(Bucket="props", Key=prefix + key, Body=key.encode())
    box = tmp_path / f"example{n}"
    box.mkdir()
    s = settings_for(box, AIRFLOW_ECS_DAGS_SOURCE="s3",
                     AIRFLOW_ECS_DAGS_S3_URI=f"s3://props/{prefix}",
                     AIRFLOW_ECS_DAGS_SYNC_TIMEOUT="20")
    lines = Lines()
    logger = logging.getLogger("airflow-ecs")
    logger.addHandler(lines)
    try:
        dagsync.sync_once(s, s3_env(moto.url), first=True, raw_env={})
        code, message = 0, ""
    except EntrypointError as exc:
        code, message = exc.exit_code, str(exc)
    finally:
        logger.removeHandler(lines)
    want, skipped = expected(keys)
    event(f"exit {code}{', keys left out' if skipped else ''}")
    if want is None:
        assert code == 80, message
        assert not s.dags_dir.exists()
    else:
        assert code == 0, message
        published = {str(p.relative_to(s.dags_dir)): p.read_bytes()
                     for p in s.dags_dir.rglob("*") if p.is_file()}
        assert published == want
    if skipped and code == 0:
        assert any("name no path inside the DAG folder" in line for line in lines.lines)
    # Only the DAG folder (a link) and the state folder, in the volume the settings name.
    assert [p.name for p in box.iterdir()] == ["volume"]
    assert {p.name for p in (box / "volume").iterdir()} <= {"dags", ".dags-sync"}
    assert all(p.name.startswith("example") for p in tmp_path.iterdir())
    written = [message, *lines.lines]
    status = s.dags_state_dir / "status.json"
    written.append(status.read_text())
    for text in written:
        assert TOKEN not in text and "X-Amz-" not in text
        assert "Traceback" not in text
    assert re.search(r"\binternal error\b", status.read_text()) is None


COUNTER = itertools.count()
