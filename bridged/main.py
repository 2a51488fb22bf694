"""`aibridge-bridged`: the process entry point."""

from __future__ import annotations

from bridged import config as config_module
from bridged.app import serve
from common import runtime
from common.logs import setup_logging


def main(argv: list[str] | None = None) -> None:
    config = config_module.parse(argv)
    setup_logging(config.log_format, config.log_level, "bridged")
    runtime.run(serve(config), config.event_loop)


if __name__ == "__main__":
    main()
