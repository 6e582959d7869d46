"""errand's Python SDK: write errand tasks in Python and submit them from Python services.

    client = errand.Client()                      # $ERRAND_URL, $ERRAND_TOKEN

    @client.task("py_ingest", queue="py", max_attempts=3, timeout=60)
    async def py_ingest(args: IngestArgs, ctx: errand.TaskContext) -> dict[str, int]:
        async with ctx.step("embed"):
            ...

    handle = await client.submit("py_ingest", IngestArgs(...), token=user_token)
    record = await handle.wait(timeout=30)

Run the tasks with ``python -m errand worker myapp.tasks:client``.
"""

from .client import Client
from .context import TaskContext, current
from .errors import (
    ApiError,
    BadRequest,
    Conflict,
    ErrandError,
    Fatal,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    Retry,
    TooManyRequests,
    Unauthorized,
    Unavailable,
    Unprocessable,
    Unreachable,
)
from .handle import TaskHandle
from .logs import ContextFilter, configure_logging
from .task import TaskDefinition
from .worker import Worker, WorkerStats

__version__ = "0.1.0"

__all__ = [
    "ApiError",
    "BadRequest",
    "Client",
    "Conflict",
    "ContextFilter",
    "ErrandError",
    "Fatal",
    "Forbidden",
    "NotFound",
    "PayloadTooLarge",
    "Retry",
    "TaskContext",
    "TaskDefinition",
    "TaskHandle",
    "TooManyRequests",
    "Unauthorized",
    "Unavailable",
    "Unprocessable",
    "Unreachable",
    "Worker",
    "WorkerStats",
    "configure_logging",
    "current",
]
