"""The generated gRPC code must match the .proto files (run `make protos` when it does not)."""

from __future__ import annotations

import filecmp
import subprocess
import sys
from pathlib import Path

from tests.harness import REPO

PROTO_DIR = REPO / "protos" / "aibridge" / "v1"


def test_generated_code_is_fresh(tmp_path: Path) -> None:
    protos = sorted(PROTO_DIR.glob("*.proto"))
    assert protos
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", f"-I{REPO / 'protos'}",
         f"--python_out={tmp_path}", f"--pyi_out={tmp_path}", f"--grpc_python_out={tmp_path}",
         *map(str, protos)],
        check=True,
    )  # fmt: skip
    fresh = sorted(p.name for p in (tmp_path / "aibridge" / "v1").iterdir())
    assert fresh, "protoc generated nothing"
    for name in fresh:
        committed = PROTO_DIR / name
        assert committed.exists(), f"{name} is missing: run `make protos`"
        assert filecmp.cmp(committed, tmp_path / "aibridge" / "v1" / name, shallow=False), (
            f"{name} is stale: run `make protos`"
        )
