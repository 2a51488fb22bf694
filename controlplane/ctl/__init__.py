"""aibridgectl: the administrator's command line, a thin client of the Admin gRPC API.

Exit codes: 0 success, 1 error (gRPC failure, no token, unreadable TLS file),
2 usage error (argparse), 3 a `--wait` ended before every subscriber applied the revision,
130 interrupted.

`cli` parses and runs a command, `commands/` holds one module per command group,
`mutation` is the one path of every change (`--expect-revision`, `--json`, `--wait`),
`api` calls the controlplane (following pages), `output` prints, `filters` holds the
options that pick interceptions and `records` renders them for a reader.
"""

from controlplane.ctl.api import resolve_token
from controlplane.ctl.cli import build_parser, main, run
from controlplane.ctl.keys import KeySource
from controlplane.ctl.options import parse_duration, parse_time, to_timestamp

__all__ = [
    "KeySource",
    "build_parser",
    "main",
    "parse_duration",
    "parse_time",
    "resolve_token",
    "run",
    "to_timestamp",
]
