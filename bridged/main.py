"""`aibridge-bridged`: not built yet (see the open issue for bridged)."""

import sys


def main() -> None:
    sys.exit("aibridge-bridged is not built yet")
