"""Logging: ``ContextFilter`` puts the running task's ids on every log record, and
``configure_logging`` sets up the worker's default format with them."""

from __future__ import annotations

import logging

from .context import current

#: The worker's default format: every line names the task and whom it runs for ("-" outside
#: tasks).
DEFAULT_FORMAT = (
    "%(asctime)s %(levelname)s %(name)s "
    "[task_id=%(task_id)s user_id=%(user_id)s tenant=%(tenant)s "
    "correlation_id=%(correlation_id)s] %(message)s"
)

_FIELDS = ("task_id", "user_id", "tenant", "correlation_id")


class ContextFilter(logging.Filter):
    """Adds ``task_id``, ``user_id``, ``tenant`` and ``correlation_id`` to each record, from
    ``errand.current()`` ("-" outside a task or for a value the task lacks). A record that
    already has one of them (given with ``extra=``) keeps it. Install it on a handler so that
    it sees the records of every logger."""

    def filter(self, record: logging.LogRecord) -> bool:
        ctx = current()
        values = {
            "task_id": ctx.task_id if ctx else None,
            "user_id": ctx.user_id if ctx else None,
            "tenant": ctx.tenant if ctx else None,
            "correlation_id": ctx.correlation_id if ctx else None,
        }
        for field in _FIELDS:
            if not hasattr(record, field):
                setattr(record, field, values[field] or "-")
        return True


def configure_logging(level: int | str = logging.INFO, fmt: str = DEFAULT_FORMAT) -> None:
    """Configures the root logger (a stderr handler unless it has handlers) with ``fmt`` and
    installs a ``ContextFilter`` on each of its handlers."""
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=level, format=fmt)
    else:
        root.setLevel(level)
    # httpx logs every request at INFO: a worker's claims and heartbeats would drown the rest.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, root.level))
    for handler in root.handlers:
        if not any(isinstance(f, ContextFilter) for f in handler.filters):
            handler.addFilter(ContextFilter())
        handler.setFormatter(logging.Formatter(fmt))
