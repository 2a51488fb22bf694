"""`make bench`: every benchmark in turn, each in its own process, with its defaults (or
`--quick`). python -m bench [--quick] [NAME ...]"""

from __future__ import annotations

import subprocess
import sys

from tests.harness import PYTHON, REPO

BENCHMARKS = ("overhead", "streams", "peers", "propagation", "scale", "soak", "flood", "storage")


def main() -> int:
    args = sys.argv[1:]
    quick = [a for a in args if a == "--quick"]
    chosen = [a for a in args if a != "--quick"] or list(BENCHMARKS)
    unknown = [name for name in chosen if name not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark {unknown}; choose from {', '.join(BENCHMARKS)}", file=sys.stderr)
        return 2
    failed = []
    for name in chosen:
        print(f"\n=== bench.{name} ===", flush=True)
        if subprocess.run([PYTHON, "-m", f"bench.{name}", *quick], cwd=REPO).returncode:
            failed.append(name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
