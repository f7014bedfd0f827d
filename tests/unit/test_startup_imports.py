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
