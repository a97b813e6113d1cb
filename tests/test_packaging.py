"""The wheel and the sdist as users get them: built here, opened and inspected, and the
sdist's own tests run from where it was unpacked."""

from __future__ import annotations

import email
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ROOT, cli_env

# the wheel and the sdist are built once (the module's `dist`), on one worker of the suite
pytestmark = pytest.mark.xdist_group("packaging")

LEFT_OUT = (
    ".git",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    ".*_cache",
    ".hypothesis",
    "pages",
)


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    source = tmp_path_factory.mktemp("build") / "src"  # a copy: a build writes beside sources
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*LEFT_OUT))
    subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(source)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return out


def test_the_wheel_is_typed_licensed_and_named_apart(dist: Path) -> None:
    (wheel,) = dist.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        meta = email.message_from_bytes(archive.read(metadata))
    assert "fetcher/py.typed" in names and "fetcher/pools/dask_worker.py" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert meta["Name"] == "fetcher-pages"  # "fetcher" on the index is another project
    assert meta["License-Expression"] == "MIT"
    assert "Typing :: Typed" in meta.get_all("Classifier")
    assert any(r.startswith("truststore") for r in meta.get_all("Requires-Dist"))


def test_the_sdist_carries_its_tests_and_they_run(dist: Path, tmp_path: Path) -> None:
    (sdist,) = dist.glob("*.tar.gz")
    with tarfile.open(sdist) as archive:
        if hasattr(tarfile, "data_filter"):  # 3.11.4 and later; Debian 12's 3.11.2 has none
            archive.extractall(tmp_path, filter="data")
        else:
            archive.extractall(tmp_path)  # the sdist this test has just built
    (unpacked,) = tmp_path.iterdir()
    for name in ("LICENSE", "tests/conftest.py", "tests/server.py", "tests/hostile.py"):
        assert (unpacked / name).is_file(), name
    env = {**cli_env(), "PYTHONPATH": str(unpacked)}
    # -n 0: in one process (its addopts, -n 2 among them, are read all the same); two
    # workers started for these few tests took 12 s more on a loaded machine
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "0",
         "tests/test_plan.py", "tests/test_api.py::test_fetch_yields_records"],
        cwd=unpacked, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
