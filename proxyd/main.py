"""`aibridge-proxyd`: not built yet (see the open issue for proxyd)."""

import sys


def main() -> None:
    sys.exit("aibridge-proxyd is not built yet")
