"""What every benchmark shares: percentiles and medians with their spread, one JSON line
per result plus a readable table, starting helper processes, and waiting for them."""

from __future__ import annotations

import json
import statistics
import subprocess
import urllib.request
from collections.abc import Iterable, Sequence
from typing import Any

from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from tests.harness import PYTHON, REPO, clean_env


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def spread(values: Sequence[float]) -> dict[str, float]:
    """The median of several rounds, with the smallest and largest round."""
    return {
        "median": round(statistics.median(values), 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
        "rounds": len(values),
    }


def emit(benchmark: str, **fields: Any) -> None:
    """One result as one JSON line on stdout."""
    print(json.dumps({"benchmark": benchmark, **fields}), flush=True)


def table(title: str, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """A readable table after the JSON lines."""
    cells = [[str(h) for h in header]] + [
        [f"{c:.2f}" if isinstance(c, float) else str(c) for c in row] for row in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    print(f"\n{title}")
    for n, row in enumerate(cells):
        padded = [
            c.rjust(w) if i else c.ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        print("  ".join(padded))
        if n == 0:
            print("  ".join("-" * w for w in widths))


def ab_order(sides: Sequence[str], round_number: int) -> list[str]:
    """A/B/B/A: every other round runs the sides in reverse, so drift hits both alike."""
    return list(sides) if round_number % 2 == 0 else list(reversed(sides))


def start_module(*args: str) -> subprocess.Popen[bytes]:
    """`python -m ARGS...` from the repository, with no AIBRIDGE_* from the environment."""
    return subprocess.Popen([PYTHON, "-m", *args], cwd=REPO, env=clean_env())


def upstream_args(port: int, chunk_delay: float = 0.0) -> list[str]:
    """`python -m` arguments of the benchmarks' upstream: the mock upstream in a process of
    its own, streams of 8 chunks."""
    return ["mockupstream", "--listen", f"127.0.0.1:{port}", "--chunks", "8",
            "--chunk-delay", str(chunk_delay)]  # fmt: skip


def http_up(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1):
            return True
    except OSError:
        return False


def machine_load() -> dict[str, Any]:
    """The machine's load averages and CPU count, for the JSON lines: on a shared machine
    they say how much of a result was the neighbours."""
    import os

    one, five, fifteen = os.getloadavg()
    return {"loadavg": [round(one, 2), round(five, 2), round(fifteen, 2)],
            "cpus": os.cpu_count()}  # fmt: skip


def metric_families(url: str) -> list[Metric]:
    """Every metric family on a /metrics page."""
    with urllib.request.urlopen(url, timeout=5) as response:
        return list(text_string_to_metric_families(response.read().decode()))


def metric_value(url: str, name: str) -> float | None:
    """The value of an unlabelled sample on a /metrics page, or None."""
    for family in metric_families(url):
        for sample in family.samples:
            if sample.name == name and not sample.labels:
                return sample.value
    return None
