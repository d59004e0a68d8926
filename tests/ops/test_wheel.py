"""The product as `pip install` gives it: the built wheel in a fresh venv outside the checkout,
with the locked dependencies, serving the API against the test Redis."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import REDIS_URL
from tests.ops.conftest import ROOT
from tests.support import free_port

pytestmark = [pytest.mark.redis, pytest.mark.slow]

# What the product reads at run time, as package data.
DATA_FILES = {"pipeline/ingest/ingest.lua", "pipeline/recompute/store.lua",
              "pipeline/tempo_source/coverage_add.lua",
              "schemas/openapi.yaml", "schemas/streams.schema.json",
              "schemas/trace_event.schema.json",
              "services/web/index.html", "services/web/style.css", "services/web/app.js",
              "services/web/ui.js", "services/web/heatmap.js"}
START_S = 30.0


def run(*argv: str | Path, cwd: Path, timeout_s: float = 600) -> None:
    done = subprocess.run([str(a) for a in argv], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout_s, env=clean_env())
    assert done.returncode == 0, f"{argv}: {done.stdout[-2000:]}\n{done.stderr[-4000:]}"


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without anything that could point back into the checkout."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("TLA_", "PYTHON", "VIRTUAL_ENV"))}
    return {**env, **extra}


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A venv outside the checkout holding the locked dependencies and the built wheel."""
    top = tmp_path_factory.mktemp("wheel")
    src = top / "src"
    for name in ("pipeline", "services", "schemas"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    # The build uses the locked setuptools of the test venv: nothing unpinned is fetched.
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
        "-w", top / "dist", src, cwd=top)
    wheel = next((top / "dist").glob("*.whl"))
    assert DATA_FILES <= set(zipfile.ZipFile(wheel).namelist())
    venv = top / "venv"
    run(sys.executable, "-m", "venv", venv, cwd=top)
    pip = (venv / "bin" / "python", "-m", "pip", "install", "--quiet")
    run(*pip, "--require-hashes", "-r", ROOT / "requirements" / "run.lock", cwd=top)
    run(*pip, "--no-deps", wheel, cwd=top)
    yield venv


def test_the_installed_package_reads_its_data_from_site_packages(installed: Path) -> None:
    probe = ("import services, pipeline.ingest.batch as i, services.api as a\n"
             "assert 'site-packages' in services.__file__, services.__file__\n"
             "assert a.load_openapi()['openapi'].startswith('3') and 'KEYS' in i.INGEST_LUA\n")
    run(installed / "bin" / "python", "-c", probe, cwd=installed.parent, timeout_s=60)


def test_the_installed_api_answers(installed: Path, prefix: str) -> None:
    port = free_port()
    env = clean_env(TLA_REDIS_URL=REDIS_URL, TLA_KEY_PREFIX=prefix, TLA_API_PORT=str(port))
    proc = subprocess.Popen([installed / "bin" / "tempo-anomaly", "api"], cwd=installed.parent,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        doc = _wait_for_openapi(base, proc)
        assert doc["openapi"].startswith("3") and "/v1/anomaly/check" in doc["paths"]
        check = httpx.post(f"{base}/v1/anomaly/check", timeout=5, json={
            "rootServiceName": "checkout", "rootTraceName": "POST /pay",
            "startTimeUnixNano": str(time.time_ns()), "durationMs": 912})
        assert check.status_code == 200, check.text
        assert check.json()["status"] == "no_baseline"
        page = httpx.get(f"{base}/", timeout=5)  # the web view, read from site-packages
        assert page.status_code == 200 and "/ui/app.js" in page.text
        assert "export class Heatmap" in httpx.get(f"{base}/ui/heatmap.js", timeout=5).text
    finally:
        proc.terminate()
        output = proc.communicate(timeout=20)[0]
    assert proc.returncode == 0, output


def _wait_for_openapi(base: str, proc: subprocess.Popen[str]) -> dict:
    deadline = time.monotonic() + START_S
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[0]
        try:
            reply = httpx.get(f"{base}/openapi.json", timeout=1)
            if reply.status_code == 200:
                return reply.json()
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"the installed API did not answer within {START_S:.0f} s")
