"""Logging of every ebill process: text or JSON lines, to stderr or to a file
rotated by size (EBILL_LOG_FORMAT, EBILL_LOG_FILE, EBILL_LOG_MAX_BYTES,
EBILL_LOG_BACKUPS). A file that grows without bound fills the disk the
database lives on; one JSON object a line is what journald, Loki and ELK parse
without a pattern."""

from __future__ import annotations

import json
import logging
import logging.handlers
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from config.settings import Settings

__all__ = ["TEXT_FORMAT", "JsonFormatter", "configure"]

TEXT_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"

# LogRecord's own attributes: anything else on a record came from `extra=`.
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object a line: ts (UTC, ISO 8601), level, logger, msg, pid,
    exc (the traceback, if any) and whatever the caller passed in ``extra``."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            "pid": record.process,
        }
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value if isinstance(value, (str, int, float, bool)) else str(value)
        return json.dumps(out, ensure_ascii=False)


class _CurrentStderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stderr is when a record comes (as logging's own
    last-resort handler does): a CLI run in-process under a test runner that
    swaps stderr and closes it must not leave the root logger writing there."""

    def __init__(self) -> None:
        super().__init__()

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def configure(settings: Settings, *, level: int | None = None) -> logging.Handler:
    """Replace the root logger's handlers with the one the settings ask for;
    returns it. ``level`` overrides EBILL_LOG_LEVEL (``ebill run`` is quieter)."""
    handler: logging.Handler
    if settings.log_file is not None:
        path = Path(settings.log_file)
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.handlers.RotatingFileHandler(
            path,
            maxBytes=settings.log_max_bytes,
            backupCount=settings.log_backups,
            encoding="utf-8",
        )
    else:
        handler = _CurrentStderr()
    handler.setFormatter(
        JsonFormatter() if settings.log_format == "json" else logging.Formatter(TEXT_FORMAT)
    )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(level if level is not None else settings.log_level.upper())
    return handler
