"""The usage spool: what a stopping bridged could not deliver, taken whole by the next
start, once; a damaged file is set aside once, not reread at every start."""

from __future__ import annotations

from pathlib import Path

from aibridge.v1 import usage_pb2
from bridged.usage_spool import UsageSpool


def test_records_are_taken_once_and_damage_is_set_aside_once(tmp_path: Path) -> None:
    spool = UsageSpool(tmp_path / "spool")
    records = [usage_pb2.Interception(request_id=f"r{n}", model="m") for n in range(3)]
    spool.save(records[:2])
    spool.save(records[2:])
    (spool.directory / "broken.usage").write_bytes(b"\xff not a protobuf")

    assert sorted(r.request_id for r in spool.take()) == ["r0", "r1", "r2"]
    [aside] = list(spool.directory.iterdir())
    assert aside.name.startswith(".taken-") and aside.name.endswith("broken.usage")
    assert spool.take() == []
    assert list(spool.directory.iterdir()) == [aside]
