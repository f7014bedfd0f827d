"""Images built once per session through `make build` (which makes sure a Docker engine
answers and the base images exist, pulling them or building stand-ins)."""

from __future__ import annotations

import subprocess

import pytest

from tests.support.images import PREFIX, ROOT, TAG


@pytest.fixture(scope="session", autouse=True)
def built_images():
    """Build (or reuse from the layer cache) the base and role images, once."""
    result = subprocess.run(["make", "-s", "build", f"IMAGE_PREFIX={PREFIX}", f"TAG={TAG}"],
                            cwd=ROOT, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, (f"make build failed:\n{result.stdout[-3000:]}\n"
                                    f"{result.stderr[-3000:]}")
    return result.stdout


@pytest.fixture(scope="session")
def compose_plugin(built_images):
    result = subprocess.run(["bash", "scripts/compose-plugin.sh"], cwd=ROOT, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
