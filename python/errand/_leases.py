"""The leases a worker holds: each claimed attempt from its claim until errand has its
completion or the lease is lost, and the events on which the worker's loops wait for them."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from ._stats import WorkerStats
from .context import TaskContext
from .protocol import Assignment
from .task import TaskDefinition

logger = logging.getLogger("errand")


def log_fields(ctx: TaskContext) -> dict[str, Any]:
    """``extra`` for records logged about a task outside it (``ContextFilter`` keeps them)."""
    return {
        "task_id": ctx.task_id,
        "user_id": ctx.user_id or "-",
        "tenant": ctx.tenant or "-",
        "correlation_id": ctx.correlation_id or "-",
    }


class Lease:
    """One claimed attempt: its task, its context, and where it stands."""

    def __init__(
        self,
        assignment: Assignment,
        definition: TaskDefinition[Any, Any] | None,
        ctx: TaskContext,
        expires: float,
    ) -> None:
        self.assignment = assignment
        self.definition = definition
        self.ctx = ctx
        #: Local monotonic time after which the server no longer holds the lease.
        self.expires = expires
        self.task: asyncio.Task[None] | None = None
        #: Why the worker cancelled the task: "cancelled", "released" or "lost".
        self.stop_reason: str | None = None
        #: The function has ended; ``completion`` waits in the outbox.
        self.done = False
        self.completion: dict[str, Any] | None = None
        self.cancel_timer: asyncio.TimerHandle | None = None

    @property
    def token(self) -> str:
        """The lease token, which names the lease in every call about it."""
        return self.assignment.lease_token

    def request_cancel(self, grace_s: float) -> None:
        """Someone cancelled the task: its context says so, and a function still running
        ``grace_s`` later is cancelled."""
        self.ctx._request_cancel()
        logger.info("cancellation requested", extra=log_fields(self.ctx))
        if not self.done and self.cancel_timer is None:
            self.cancel_timer = asyncio.get_running_loop().call_later(
                grace_s, self._force_cancel, grace_s
            )

    def _force_cancel(self, grace_s: float) -> None:
        if not self.done and self.stop_reason is None and self.task is not None:
            logger.warning(
                "task did not stop within %.1f s of its cancellation: cancelling it",
                grace_s,
                extra=log_fields(self.ctx),
            )
            self.stop_reason = "cancelled"
            self.task.cancel()


class Leases:
    """A worker's leases by token (``held``), the ``outbox`` of those whose function has
    ended and whose completion waits to be delivered, and the events of their changes."""

    def __init__(self, stats: WorkerStats) -> None:
        self.stats = stats
        self.held: dict[str, Lease] = {}
        self.outbox: list[Lease] = []
        #: Set when a lease is added.
        self.added = asyncio.Event()
        #: Set when a function ends or a lease is lost: a slot may be free.
        self.slot_freed = asyncio.Event()
        #: Set when a completion joins the outbox.
        self.queued = asyncio.Event()
        #: Set when a task reports progress or a step, or reports wait for a heartbeat.
        self.reported = asyncio.Event()
        #: Held by a call that carries reports taken from the tasks' contexts.
        self.send_lock = asyncio.Lock()

    @property
    def running(self) -> int:
        """Leases whose function is running now."""
        return sum(1 for lease in self.held.values() if not lease.done)

    def add(self, lease: Lease) -> None:
        """Holds a lease just claimed."""
        self.held[lease.token] = lease
        self.added.set()
        self.stats.claimed += 1

    def finish(self, lease: Lease, completion: dict[str, Any]) -> None:
        """The lease's function has ended: its ``completion`` joins the outbox."""
        if lease.cancel_timer is not None:
            lease.cancel_timer.cancel()
        lease.completion = completion
        lease.done = True
        self.outbox.append(lease)
        self.queued.set()
        self.slot_freed.set()

    def lose(self, lease: Lease, why: str) -> None:
        """The server no longer holds this lease: stop the task, never complete it."""
        if self.held.pop(lease.token, None) is None:
            return
        self.stats.lost += 1
        logger.warning("task lost: %s; it will not be completed here", why, extra=log_fields(lease.ctx))
        lease.stop_reason = "lost"
        if lease.cancel_timer is not None:
            lease.cancel_timer.cancel()
        if lease.done:
            if lease in self.outbox:
                self.outbox.remove(lease)
        elif lease.task is not None:
            lease.task.cancel()
        self.slot_freed.set()

    def expire_overdue(self) -> None:
        """Loses every lease whose deadline has passed without errand being told of it."""
        now = time.monotonic()
        for lease in list(self.held.values()):
            if now > lease.expires:
                self.lose(lease, "its lease expired while errand could not be told")
