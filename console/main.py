"""`aibridge-console`: the process entry point."""

from __future__ import annotations

from common import runtime
from common.logs import setup_logging
from console import config as config_module
from console.app import serve


def main(argv: list[str] | None = None) -> None:
    config = config_module.parse(argv)
    setup_logging(config.log_format, config.log_level, "console")
    runtime.run(serve(config), "asyncio")


if __name__ == "__main__":
    main()
