"""The start-up sequence loads only what the configuration needs: with the image DAG
source (the default) the sync machinery is never imported."""

import subprocess
import sys


def imported_after_start_up_import(module: str) -> bool:
    code = (f"import sys, entrypoint.startup; print({module!r} in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    return result.stdout.strip() == "True"


def test_sync_machinery_is_not_imported_by_the_start_up_module():
    assert not imported_after_start_up_import("entrypoint.dagsync.sync")
    assert not imported_after_start_up_import("entrypoint.dagsync.publish")


def test_the_package_still_exposes_the_sync_functions():
    from entrypoint import dagsync

    assert callable(dagsync.sync_once) and callable(dagsync.run_loop)
    assert "entrypoint.dagsync.sync" in sys.modules


def test_s3_filesystem_skips_httpx_and_leaves_it_importable():
    """aiobotocore's optional httpx backend is not loaded for the S3 source (s3fs uses
    aiohttp), and afterwards httpx imports normally in the same process."""
    code = """
import sys
from entrypoint import config
from entrypoint.dagsync import s3source
env = {"AIRFLOW_ECS_DAGS_SOURCE": "s3", "AIRFLOW_ECS_DAGS_S3_URI": "s3://bucket/dags/",
       "AWS_REGION": "eu-west-1"}
fs = s3source.filesystem(config.load(env), env)
import aiobotocore._httpx
print(type(fs).__name__, "httpx" in sys.modules, aiobotocore._httpx.httpx is None)
import httpx
print(httpx.__name__)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.split() == ["S3FileSystem", "False", "True", "httpx"]


def test_health_probe_skips_the_argument_parser_but_not_its_errors():
    """`health ROLE` is parsed without argparse (the probe runs every 30 s); any other
    form, a bad role included, still gets the parser's usage error (exit 2)."""
    code = ("import sys; from entrypoint.cli import main; rc = main(['health', 'worker']); "
            "print('RC', rc, 'argparse' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={"PATH": "/usr/bin:/bin"})
    assert "RC 1 False" in result.stdout, result.stdout + result.stderr
    assert "required setting: AIRFLOW__CELERY__BROKER_URL" in result.stdout
    bad = subprocess.run([sys.executable, "-m", "entrypoint", "health", "nope"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown role 'nope'" in bad.stderr, bad.stderr
    extra = subprocess.run([sys.executable, "-m", "entrypoint", "health", "worker", "x"],
                           capture_output=True, text=True)
    assert extra.returncode == 2 and "unrecognized arguments: x" in extra.stderr, extra.stderr
