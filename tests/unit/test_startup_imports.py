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
