"""The wire shapes of errand's worker protocol (docs/worker-protocol.md).

Answers of the server are parsed into pydantic models that ignore fields they do not know, so
a newer server stays readable. Requests are plain JSON-ready dicts typed with ``TypedDict``:
the worker builds many of them per second and serializes them once.
"""

from __future__ import annotations

import os
import socket
from datetime import datetime
from typing import Any, Literal, TypedDict

from pydantic import BaseModel, ConfigDict, Field

#: States after which a task does not change on its own.
TERMINAL_STATES = frozenset({"success", "failed", "cancelled"})

#: At most this many leases in one heartbeat and completions in one ``complete`` call.
MAX_BATCH = 256
#: At most this many step changes per lease in one heartbeat or completion.
MAX_STEP_CHANGES = 64

Outcome = Literal["success", "failure", "cancelled", "released"]
StepStatus = Literal["running", "success", "failed"]


class _Answer(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class AssignmentContext(_Answer):
    """Who a task is for, as the server restored it from the sealed context."""

    user_id: str | None = None
    tenant: str | None = None
    roles: list[str] = Field(default_factory=list)
    request_id: str | None = None
    correlation_id: str | None = None
    traceparent: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    extra: dict[str, Any] = Field(default_factory=dict)
    credential: str | None = None
    credential_expires_at: datetime | None = None


class Assignment(_Answer):
    """One claimed task: what to run, under which lease, for whom."""

    task_id: str
    name: str
    queue: str = "default"
    args: Any = None
    attempt: int = 1
    max_attempts: int = 1
    lease_token: str
    lease_deadline: datetime
    timeout_s: float | None = None
    context: AssignmentContext | None = None


class TypesAnswer(_Answer):
    """Every remote task type the server knows, with its defaults filled in."""

    types: list[dict[str, Any]] = Field(default_factory=list)


class ClaimAnswer(_Answer):
    tasks: list[Assignment] = Field(default_factory=list)


class LeaseAnswer(_Answer):
    """The server's view of one lease after a heartbeat."""

    task_id: str
    held: bool
    cancel_requested: bool = False
    lease_deadline: datetime | None = None


class HeartbeatAnswer(_Answer):
    leases: list[LeaseAnswer] = Field(default_factory=list)


class CompletionResult(_Answer):
    task_id: str
    accepted: bool = False
    fenced: bool = False


class CompleteAnswer(_Answer):
    results: list[CompletionResult] = Field(default_factory=list)


class Backoff(TypedDict):
    base_s: float
    max_s: float


class TaskTypeSpec(TypedDict, total=False):
    """One entry of ``PUT /v1/worker/task-types``; absent fields take the server's defaults."""

    name: str
    queue: str
    args_schema: dict[str, Any]
    max_attempts: int
    timeout_s: float
    ttl_s: float
    backoff: Backoff


class ProgressReport(TypedDict, total=False):
    current: int
    total: int
    message: str


class StepChange(TypedDict, total=False):
    name: str
    status: StepStatus
    error: str


class Reports(TypedDict, total=False):
    """What a task reported since the last heartbeat: sent in a heartbeat or a completion."""

    progress: ProgressReport
    steps: list[StepChange]
    plan: list[str]


class WorkerInfo(TypedDict):
    """Who claims and heartbeats, for the operators' workers view (``worker`` in both)."""

    instance: str
    host: str
    language: str
    concurrency: int


def worker_info(concurrency: int) -> WorkerInfo:
    """This process: instance ``{hostname}-{pid}`` (at most 128 characters), language python."""
    host = socket.gethostname()[:255] or "unknown"
    pid = f"-{os.getpid()}"
    return {"instance": host[: 128 - len(pid)] + pid, "host": host, "language": "python",
            "concurrency": concurrency}


class ErrorPayload(TypedDict, total=False):
    message: str
    kind: str
    details: Any
    retryable: bool
    retry_in_s: float
