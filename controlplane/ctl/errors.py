"""How aibridgectl ends: its exit codes, and the error it reports in the user's words."""

from __future__ import annotations

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_WAIT_INCOMPLETE = 3
EXIT_INTERRUPTED = 130


class CtlError(Exception):
    """A failure already phrased for the user; exits 1."""
