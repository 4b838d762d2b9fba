"""Logging setup: plain lines for journald, timestamped lines on a terminal, or JSON lines; what native libraries
print on stderr (`native`) and Python warnings go through the same handler."""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from datetime import datetime, timezone
from types import TracebackType
from typing import TextIO

from edge_agent.log.native import capture_native_stderr

# sd-daemon(3) priority prefixes: journald reads them as the message's level.
_SYSLOG_PRIORITY = {
    logging.DEBUG: 7,
    logging.INFO: 6,
    logging.WARNING: 4,
    logging.ERROR: 3,
    logging.CRITICAL: 2,
}


class JournalFormatter(logging.Formatter):
    """`<6>name: message` without a timestamp (journald adds its own)."""

    def format(self, record: logging.LogRecord) -> str:
        """Prefix the message with its syslog priority."""
        priority = _SYSLOG_PRIORITY.get(record.levelno, 6)
        return f"<{priority}>{super().format(record)}"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg (and exc when there is one)."""

    def format(self, record: logging.LogRecord) -> str:
        """Render the record as a JSON line."""
        entry = {
            "ts": datetime.fromtimestamp(record.created, tz=timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def under_journald() -> bool:
    """True when stderr goes to the systemd journal (systemd sets JOURNAL_STREAM)."""
    return bool(os.environ.get("JOURNAL_STREAM"))


def setup_logging(level: str = "info", fmt: str = "text", stream: TextIO | None = None, native: bool = False) -> None:
    """Configure the root logger once for the whole process; `native` (the daemon) also routes what native
    libraries write on fd 2 into the log (see `edge_agent.log.native`)."""
    real = capture_native_stderr(passthrough=fmt != "json").real if native else sys.stderr
    handler = logging.StreamHandler(stream or real)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
        _log_uncaught_exceptions()
    elif under_journald():
        handler.setFormatter(JournalFormatter("%(name)s: %(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.captureWarnings(True)  # warnings.warn() -> the `py.warnings` logger, in the chosen format
    warnings_logger = logging.getLogger("py.warnings")
    if _one_line_warning not in warnings_logger.filters:
        warnings_logger.addFilter(_one_line_warning)


def _one_line_warning(record: logging.LogRecord) -> bool:
    """A warning's text without the source line and newline `warnings.formatwarning` appends."""
    record.msg, record.args = (record.getMessage().strip().splitlines() or [""])[0], None
    return True


def json_logging() -> bool:
    """True when the root logger writes JSON lines (what a verb prints on stderr should be a log record then)."""
    return any(isinstance(h.formatter, JsonFormatter) for h in logging.getLogger().handlers)


def _log_uncaught_exceptions() -> None:
    """An uncaught exception (main thread or any other) becomes one JSON record instead of a raw traceback."""

    def main_hook(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
        logging.getLogger("edge_agent").critical("uncaught exception", exc_info=(kind, value, tb))

    def thread_hook(args: threading.ExceptHookArgs) -> None:
        if args.exc_type is SystemExit:
            return
        name = args.thread.name if args.thread is not None else "?"
        exc_info = (args.exc_type, args.exc_value or args.exc_type(), args.exc_traceback)
        logging.getLogger("edge_agent").error("uncaught exception in thread %s", name, exc_info=exc_info)

    sys.excepthook = main_hook
    threading.excepthook = thread_hook
