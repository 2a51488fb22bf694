"""A wheel built from a clean checkout holds everything the programs import.

The generated aibridge.v1 code is not committed: the build itself must generate it
(setup.py), or the wheel installs programs that cannot start.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.harness import REPO


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel built from the checkout's files less the ignored ones (generated code,
    venv, caches), as a fresh clone with this working tree's changes would have them."""
    root = tmp_path_factory.mktemp("packaging")
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, check=True, capture_output=True,
    ).stdout.decode().split("\0")  # fmt: skip
    source = root / "source"
    for name in filter(None, files):
        if (REPO / name).is_file():  # a file deleted but not yet committed is skipped
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            (source / name).write_bytes((REPO / name).read_bytes())
    assert not list(source.glob("protos/aibridge/v1/*_pb2*")), "the copy is not clean"
    # Offline: the build requirements (setuptools, grpcio-tools) are the dev venv's.
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-index",
         "--no-build-isolation", "--wheel-dir", str(root / "dist"), str(source)],
        check=True,
    )  # fmt: skip
    (built,) = (root / "dist").glob("aibridge-*.whl")
    return built


def test_the_wheel_holds_the_generated_code_and_package_data(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for proto in ("admin", "snapshot", "sync", "usage"):
        for suffix in ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py"):
            assert f"aibridge/v1/{proto}{suffix}" in names
    for name in (
        "common/__init__.py",
        "common/subscriber.py",
        "controlplane/main.py",
        "controlplane/store/migrations/env.py",
        "controlplane/store/migrations/script.py.mako",
        "controlplane/store/migrations/versions/0001_initial.py",
        "bridged/main.py",
        "proxyd/main.py",
        "mockupstream/__main__.py",
    ):
        assert name in names
    assert not [n for n in names if n.startswith(("tests/", "bench/", "protos/"))]


def test_the_unpacked_wheel_imports_without_the_source_tree(wheel: Path, tmp_path: Path) -> None:
    """The generated modules import from the wheel alone (the editable install of the
    checkout must not be what answers)."""
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    modules = ["aibridge.v1.sync_pb2_grpc", "aibridge.v1.admin_pb2_grpc", "common.subscriber",
               "controlplane.store.migrations", "bridged.app", "proxyd.app"]  # fmt: skip
    out = subprocess.run(
        [sys.executable, "-c",
         "import importlib, sys\n"
         "for name in sys.argv[1:]:\n"
         "    print(importlib.import_module(name).__file__)\n",
         *modules],
        cwd=site, env={"PYTHONPATH": str(site)}, check=True, capture_output=True, text=True,
    ).stdout.split()  # fmt: skip
    assert len(out) == len(modules)
    for path in out:
        assert Path(path).is_relative_to(site), path
