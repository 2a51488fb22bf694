"""`aibridge-proxyd`: the process entry point."""

from __future__ import annotations

from common import runtime
from common.logs import setup_logging
from proxyd import config as config_module
from proxyd.app import serve


def main(argv: list[str] | None = None) -> None:
    config = config_module.parse(argv)
    setup_logging(config.log_format, config.log_level, "proxyd")
    runtime.run(serve(config), config.event_loop)


if __name__ == "__main__":
    main()
