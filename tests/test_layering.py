"""Dependencies point one way: every process → common → the generated contract.

The data planes must start on a machine where the controlplane's database stack is
broken or absent, and a key-holding process must not carry code it never runs. Each
check imports a package's modules in a fresh interpreter and looks at what got loaded.
"""

import functools
import pkgutil
import subprocess

import pytest

from tests.harness import PYTHON, REPO


def modules_of(package: str) -> list[str]:
    return [package] + [
        f"{package}.{info.name}"
        for info in pkgutil.iter_modules([str(REPO / package)])
        if info.name != "__main__"  # running it would start the program
    ]


@functools.cache
def loaded_after_importing(package: str) -> set[str]:
    script = (
        "import importlib, sys\n"
        f"for name in {modules_of(package)!r}:\n"
        "    importlib.import_module(name)\n"
        "print('\\n'.join(sorted(sys.modules)))\n"
    )
    out = subprocess.run(
        [PYTHON, "-c", script], cwd=REPO, check=True, capture_output=True, text=True
    ).stdout
    return set(out.split())


def top_level(modules: set[str]) -> set[str]:
    return {name.split(".")[0] for name in modules}


@pytest.mark.parametrize("package", ["common", "bridged", "proxyd", "console"])
def test_never_imports_the_database_or_the_controlplane(package: str) -> None:
    loaded = top_level(loaded_after_importing(package))
    assert "sqlalchemy" not in loaded
    assert "alembic" not in loaded
    assert "controlplane" not in loaded


def test_the_data_planes_never_import_each_other() -> None:
    assert "proxyd" not in top_level(loaded_after_importing("bridged"))
    assert "bridged" not in top_level(loaded_after_importing("proxyd"))


def test_the_controlplane_never_imports_a_data_plane() -> None:
    loaded = top_level(loaded_after_importing("controlplane"))
    assert "common" in loaded
    assert not loaded & {"bridged", "proxyd"}


def test_the_console_is_only_an_admin_api_client() -> None:
    assert not top_level(loaded_after_importing("console")) & {"bridged", "proxyd"}
