"""Every build generates the aibridge.v1 gRPC code from protos/aibridge/v1/*.proto.

The generated modules are not committed, so a wheel built from a clean checkout gets
them only from here (`make protos` generates them for a working tree). The rest of the
build is declared in pyproject.toml, whose build requirements pin the generator.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

PROTOS = "protos"


def generate(out: str) -> None:
    """Writes the *_pb2.py, *_pb2.pyi and *_pb2_grpc.py modules under `out`/aibridge/v1."""
    protos = sorted(str(p) for p in Path(PROTOS, "aibridge", "v1").glob("*.proto"))
    if not protos:
        raise RuntimeError(f"no .proto files under {PROTOS}/aibridge/v1")
    Path(out, "aibridge", "v1").mkdir(parents=True, exist_ok=True)
    # The same command as the Makefile's, so both write the same code.
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", f"-I{PROTOS}", f"--python_out={out}",
         f"--pyi_out={out}", f"--grpc_python_out={out}", *protos],
        check=True,
    )  # fmt: skip


class BuildPyWithProtos(build_py):
    """build_py, then the generated code beside the built aibridge/v1 package."""

    def run(self) -> None:
        super().run()
        # An editable install imports aibridge from protos/ itself: generate it there.
        generate(PROTOS if self.editable_mode else self.build_lib)


setup(cmdclass={"build_py": BuildPyWithProtos})
