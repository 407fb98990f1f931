"""Server logs: plain text, or one JSON object per line carrying the task a line belongs to.

UdfService calls ``bind_task`` once it knows who runs which task; every line logged later in that
call (by any module, in threads started with ``asyncio.to_thread`` too) carries its ``task_id``
and ``namespace``. gRPC runs each call in its own asyncio task, so the binding ends with the call.
Lines never include tokens or call metadata: only what the code puts in its messages.
"""

from __future__ import annotations

import json
import logging
from contextvars import ContextVar
from datetime import UTC, datetime

from ._config import ConfigError

#: (task id, namespace) of the execution the current call runs, if any.
TASK: ContextVar[tuple[str, str] | None] = ContextVar("tilefn_task", default=None)
FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def bind_task(task_id: str, namespace: str) -> None:
    """Tag the current call's log lines with its task (until the call ends)."""
    TASK.set((task_id, namespace))


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "message"[, "task_id", "namespace"][, "exception"]}``."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        task = TASK.get()
        if task is not None:
            entry["task_id"], entry["namespace"] = task
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False)


def configure(level: str, log_format: str) -> None:
    """Send the root logger's records to stderr at ``level`` in ``log_format``."""
    if log_format not in FORMATS:
        raise ConfigError(f"--log-format must be one of {', '.join(FORMATS)}, not {log_format!r}")
    handler = logging.StreamHandler()
    json_lines = log_format == "json"
    handler.setFormatter(JsonFormatter() if json_lines else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=level.upper(), handlers=[handler])
