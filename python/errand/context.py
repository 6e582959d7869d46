"""``TaskContext``: what a running task knows about itself and who it runs for, and how it
reports progress and steps; ``current()`` finds it from anywhere inside the task.

Reports are buffered in the context and shipped by the worker with its next heartbeat (which
it sends about 50 ms after a report, coalescing the reports of every running task).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import datetime, timezone
from types import MappingProxyType
from typing import Any

from .protocol import MAX_STEP_CHANGES, Assignment, ProgressReport, Reports, StepChange

#: Step errors and progress messages are cut to this many characters.
MAX_REPORT_TEXT = 1024

_current: contextvars.ContextVar[TaskContext | None] = contextvars.ContextVar(
    "errand_current_task", default=None
)


def current() -> TaskContext | None:
    """The running task's context, or None outside a task.

    The worker runs each task in its own asyncio task with a fresh copy of the worker's
    context, so a value never leaks from one task into the next."""
    return _current.get()


def _cut(text: str) -> str:
    return text if len(text) <= MAX_REPORT_TEXT else text[: MAX_REPORT_TEXT - 1] + "…"


class _ReportBuffer:
    """Progress, step changes and plan reported since the last delivery, in order."""

    def __init__(self) -> None:
        self.progress: ProgressReport | None = None
        self.steps: list[StepChange] = []
        self.plan: list[str] | None = None

    def pending(self) -> bool:
        return self.progress is not None or bool(self.steps) or self.plan is not None

    def take(self) -> Reports:
        """Removes and returns what is to be sent (at most ``MAX_STEP_CHANGES`` steps)."""
        reports: Reports = {}
        if self.plan is not None:
            reports["plan"] = self.plan
            self.plan = None
        if self.steps:
            reports["steps"] = self.steps[:MAX_STEP_CHANGES]
            del self.steps[:MAX_STEP_CHANGES]
        if self.progress is not None:
            reports["progress"] = self.progress
            self.progress = None
        return reports

    def restore(self, reports: Reports) -> None:
        """Puts back what ``take`` returned when it could not be delivered, before anything
        reported since (a newer progress or plan wins)."""
        if "plan" in reports and self.plan is None:
            self.plan = reports["plan"]
        if "steps" in reports:
            self.steps[:0] = reports["steps"]
        if "progress" in reports and self.progress is None:
            self.progress = reports["progress"]


class TaskContext:
    """One attempt of one task, as its function sees it.

    Identity (``user_id``, ``tenant``, ``roles``, ``request_id``, ``correlation_id``,
    ``traceparent``, ``headers``, ``extra``) is the submitter's, captured by errand at
    submission; it is empty (None) for a task submitted without one. ``credential`` is the
    submitter's bearer token while it has not expired, else None.

    ``cancelled`` turns True when someone cancels the task (the worker learns it at its next
    heartbeat, within about half a second); stop then, e.g. by raising
    ``asyncio.CancelledError`` (the outcome is ``cancelled``). A task that has not stopped
    about 4 s later is cancelled by the worker.

    ``fenced`` turns True when the worker's completion of this attempt was refused because the
    attempt had been superseded (the lease lapsed and the task was taken back); callbacks
    given to ``on_fenced`` run then. The task's outcome was not recorded: whichever attempt is
    current decides the record.

    The constructor is public so that task functions can be unit-tested with a context made
    by hand; reports made on such a context are kept in it and never sent.
    """

    def __init__(
        self,
        *,
        task_id: str,
        name: str,
        attempt: int = 1,
        max_attempts: int = 1,
        queue: str = "default",
        user_id: str | None = None,
        tenant: str | None = None,
        roles: Sequence[str] = (),
        request_id: str | None = None,
        correlation_id: str | None = None,
        traceparent: str | None = None,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
        credential: str | None = None,
        credential_expires_at: datetime | None = None,
        lease_deadline: datetime | None = None,
        timeout_s: float | None = None,
        on_report: Callable[[], None] | None = None,
    ) -> None:
        self.task_id = task_id
        self.name = name
        self.attempt = attempt
        self.max_attempts = max_attempts
        self.queue = queue
        self.user_id = user_id
        self.tenant = tenant
        self.roles: tuple[str, ...] = tuple(roles)
        self.request_id = request_id
        self.correlation_id = correlation_id
        self.traceparent = traceparent
        self.headers: Mapping[str, str] = MappingProxyType(dict(headers or {}))
        self.extra: Mapping[str, Any] = MappingProxyType(dict(extra or {}))
        self.lease_deadline = lease_deadline
        self.timeout_s = timeout_s
        self._credential = credential
        self._credential_expires_at = credential_expires_at
        self._on_report = on_report
        self._reports = _ReportBuffer()
        self._cancelled = asyncio.Event()
        self._fenced = False
        self._fenced_callbacks: list[Callable[[TaskContext], None]] = []

    @classmethod
    def from_assignment(
        cls, assignment: Assignment, on_report: Callable[[], None] | None = None
    ) -> TaskContext:
        """The context of a claimed task."""
        c = assignment.context
        return cls(
            task_id=assignment.task_id,
            name=assignment.name,
            attempt=assignment.attempt,
            max_attempts=assignment.max_attempts,
            queue=assignment.queue,
            user_id=c.user_id if c else None,
            tenant=c.tenant if c else None,
            roles=c.roles if c else (),
            request_id=c.request_id if c else None,
            correlation_id=c.correlation_id if c else None,
            traceparent=c.traceparent if c else None,
            headers=c.headers if c else None,
            extra=c.extra if c else None,
            credential=c.credential if c else None,
            credential_expires_at=c.credential_expires_at if c else None,
            lease_deadline=assignment.lease_deadline,
            timeout_s=assignment.timeout_s,
            on_report=on_report,
        )

    def __repr__(self) -> str:
        # Never the credential.
        return (
            f"TaskContext(task_id={self.task_id!r}, name={self.name!r}, attempt={self.attempt}, "
            f"user_id={self.user_id!r}, tenant={self.tenant!r})"
        )

    @property
    def credential(self) -> str | None:
        """The submitter's token, while it has not expired; None after, or if there is none."""
        expires = self._credential_expires_at
        if self._credential is None:
            return None
        if expires is not None:
            if expires.tzinfo is None:
                expires = expires.replace(tzinfo=timezone.utc)
            if datetime.now(timezone.utc) >= expires:
                return None
        return self._credential

    # --- cancellation -------------------------------------------------------------------

    @property
    def cancelled(self) -> bool:
        """Whether cancellation of this task was requested."""
        return self._cancelled.is_set()

    async def wait_cancelled(self) -> None:
        """Returns once cancellation of this task was requested."""
        await self._cancelled.wait()

    def raise_if_cancelled(self) -> None:
        """Raises ``asyncio.CancelledError`` (outcome ``cancelled``) if cancellation was
        requested."""
        if self.cancelled:
            raise asyncio.CancelledError()

    def _request_cancel(self) -> None:
        self._cancelled.set()

    # --- fencing ------------------------------------------------------------------------

    @property
    def fenced(self) -> bool:
        """Whether the completion of this attempt was refused as superseded."""
        return self._fenced

    def on_fenced(self, callback: Callable[[TaskContext], None]) -> None:
        """Calls ``callback(ctx)`` if this attempt's completion is refused as superseded, e.g.
        to undo a side effect that the newer attempt will redo."""
        self._fenced_callbacks.append(callback)

    def _mark_fenced(self) -> None:
        self._fenced = True
        for callback in self._fenced_callbacks:
            callback(self)

    # --- reports ------------------------------------------------------------------------

    def _reported(self) -> None:
        if self._on_report is not None:
            self._on_report()

    async def progress(self, current: int, total: int, message: str | None = None) -> None:
        """Reports how far the task got (shown as ``progress`` in its record)."""
        report: ProgressReport = {"current": int(current), "total": int(total)}
        if message is not None:
            report["message"] = _cut(message)
        self._reports.progress = report
        self._reported()

    def plan_steps(self, names: Sequence[str]) -> None:
        """Declares the task's steps up front; they show as ``pending`` until they run."""
        self._reports.plan = list(names)
        self._reported()

    def _step_change(self, name: str, status: str, error: str | None = None) -> None:
        change: StepChange = {"name": name, "status": "running"}
        if status == "success":
            change["status"] = "success"
        elif status == "failed":
            change["status"] = "failed"
            change["error"] = _cut(error or "failed")
        self._reports.steps.append(change)
        self._reported()

    @contextlib.asynccontextmanager
    async def step(self, name: str) -> AsyncIterator[None]:
        """``async with ctx.step("embed"):`` marks the step running, then success; if the
        block raises, the step is marked failed with ``str(exc)`` and the exception goes on."""
        self._step_change(name, "running")
        try:
            yield
        except asyncio.CancelledError:
            self._step_change(name, "failed", "cancelled")
            raise
        except BaseException as exc:
            self._step_change(name, "failed", str(exc) or type(exc).__name__)
            raise
        self._step_change(name, "success")
