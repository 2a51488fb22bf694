"""Logging for every process: one line per event, text for people or JSON for machines."""

from __future__ import annotations

import faulthandler
import json
import logging
import signal
import sys
from datetime import UTC, datetime


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        fields = getattr(record, "access", None)  # an access log line: its fields as keys
        if fields:
            entry["msg"] = "request"
            entry.update(fields)
        else:
            entry["msg"] = record.getMessage()
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def setup_logging(fmt: str = "text", level: str = "info", process: str = "") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        prefix = f"{process} " if process else ""
        handler.setFormatter(
            logging.Formatter(f"%(asctime)s {prefix}%(levelname)s %(name)s: %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Third-party chatter at INFO is noise in a gateway's log.
    for noisy in ("alembic", "aiohttp.access", "sqlalchemy"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    dump_threads_on_usr1()


def dump_threads_on_usr1() -> None:
    """`kill -USR1 PID` prints every thread's stack to stderr: what a hung process is
    doing (and every asyncio task's too, while the loop runs: runtime.py). Ignored, not
    fatal, in the instants runtime.py hands the signal between faulthandler and the loop."""
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    faulthandler.register(signal.SIGUSR1, all_threads=True)
