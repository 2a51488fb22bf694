"""`aibridge-controlplane`: the process entry point."""

from __future__ import annotations

import logging
import sys

from common import runtime
from common.logs import setup_logging
from controlplane import config as config_module
from controlplane.server import serve
from controlplane.store import DatabaseUnavailable
from controlplane.store.key_rotation import UndecryptableKeys


def main(argv: list[str] | None = None) -> None:
    config = config_module.parse(argv)
    setup_logging(config.log_format, config.log_level, "controlplane")
    try:
        runtime.run(serve(config), "asyncio")  # grpc.aio supports only asyncio's loop
    except DatabaseUnavailable as exc:
        logging.getLogger("controlplane").error("cannot start: database unavailable: %s", exc)
        sys.exit(1)
    except UndecryptableKeys as exc:
        logging.getLogger("controlplane").error("cannot start: %s", exc)
        sys.exit(1)


if __name__ == "__main__":
    main()
