"""Logging for the command line: `--log-level` and `--log-json` (one JSON object a line, for journald).

Plain lines read `perception: message` as the node always printed them; JSON lines carry the
time, level, logger and message plus any `extra=` fields, so `journalctl -o cat | jq` can
filter on them.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import TextIO

LEVELS = ("debug", "info", "warning", "error")
# attributes every LogRecord has; anything else on a record came from `extra=` and goes in the JSON
_STANDARD = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class JsonLines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure(level: str = "info", json_lines: bool = False, stream: TextIO | None = None) -> None:
    """Route the `perception` loggers to stderr (or `stream`) at `level`."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonLines() if json_lines else logging.Formatter("perception: %(message)s"))
    root = logging.getLogger("perception")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
