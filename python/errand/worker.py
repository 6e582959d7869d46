"""``Worker``: runs a client's task functions for errand over the worker protocol.

One worker process keeps three loops on one HTTP connection pool to one errand server:

* **claim**: a long poll of ``POST /v1/worker/claim`` for as many tasks as it has free
  slots, only while at least one slot is free;
* **heartbeat**: one ``POST /v1/worker/heartbeat`` for all its leases every
  ``min(lease_s / 3, 0.5 s)``, and about 50 ms after any progress or step report (reports of
  every task coalesce into that one call). It learns there that a task was cancelled (the
  task's ``ctx.cancelled`` turns True; a task still running ``cancel_grace_s`` later is
  cancelled) or lost (``held: false``: its asyncio task is cancelled and never completed);
* **complete**: finished tasks queue up and go together in one ``POST /v1/worker/complete``,
  sent as soon as the previous one returned. A result marked ``fenced`` (the attempt was
  superseded) is logged as a warning and reported to the task's context: ``ctx.fenced``
  turns True and its ``ctx.on_fenced`` callbacks run.

A lease stays in the heartbeat until its completion is delivered, so a finished task keeps
its lease while errand is briefly unreachable. While errand is down (connection errors,
502/503/504/429) every loop retries with exponential backoff from 0.1 s to 5 s with jitter,
logging once per outage; undelivered reports and completions are kept and retried until the
lease's deadline has passed, after which the task counts as lost.

``stop()`` (the CLI calls it on SIGTERM and SIGINT) stops claiming at once, lets running
tasks finish within ``drain_timeout``, then cancels the rest and completes them as
``released`` (no attempt spent; another worker takes them at once), delivers the last
completions and returns the statistics. A second ``stop()`` skips what is left of the drain.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import time
from typing import TYPE_CHECKING, Any

from ._attempt import MAX_COMPLETION_BYTES, run_attempt
from ._completions import MAX_BODY_BYTES, Completions
from ._connection import Backoff, Connection
from ._heartbeat import Heartbeat
from ._leases import Lease, Leases
from ._stats import WorkerStats
from .context import TaskContext
from .errors import ErrandError, is_transient
from .protocol import MAX_BATCH, Assignment, ClaimAnswer, TypesAnswer, worker_info

if TYPE_CHECKING:
    from .client import Client

__all__ = ["MAX_BODY_BYTES", "MAX_COMPLETION_BYTES", "Worker", "WorkerStats"]

logger = logging.getLogger("errand")


class Worker:
    """Runs the tasks registered on ``client`` (see the module's documentation).

    ``concurrency`` tasks run at once; ``queues`` limits the claim to those queues (default:
    the queues of the registered types); ``lease_s`` (2–600) is the lease asked for at each
    claim; ``wait_s`` (0–30) how long one claim waits for work."""

    def __init__(
        self,
        client: Client,
        *,
        concurrency: int = 16,
        queues: list[str] | None = None,
        drain_timeout: float = 30.0,
        lease_s: float = 30.0,
        wait_s: float = 30.0,
        cancel_grace_s: float = 4.0,
        report_delay_s: float = 0.05,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if not 2 <= lease_s <= 600:
            raise ValueError("lease_s must be from 2 to 600 seconds")
        if not 0 <= wait_s <= 30:
            raise ValueError("wait_s must be from 0 to 30 seconds")
        self.client = client
        self.concurrency = concurrency
        self.queues = list(queues) if queues else None
        self.drain_timeout = drain_timeout
        self.lease_s = lease_s
        self.wait_s = wait_s
        self.cancel_grace_s = cancel_grace_s
        self.report_delay_s = report_delay_s
        self.heartbeat_interval_s = min(lease_s / 3, 0.5)
        #: Sent with every claim and heartbeat: the operators' workers view shows it.
        self.info = worker_info(concurrency)
        self.stats = WorkerStats()
        #: Set once the task types are registered and the worker claims.
        self.ready = asyncio.Event()
        self._leases = Leases(self.stats)
        self._connection = Connection(client)
        self._heartbeat = Heartbeat(
            self._leases,
            self._connection,
            self.info,
            lease_s=lease_s,
            interval_s=self.heartbeat_interval_s,
            report_delay_s=report_delay_s,
            cancel_grace_s=cancel_grace_s,
        )
        self._completions = Completions(
            self._leases, self._connection, report_delay_s=report_delay_s
        )
        self._stopping = asyncio.Event()
        self._immediate = asyncio.Event()
        self._crash: BaseException | None = None

    # --- control ------------------------------------------------------------------------

    def stop(self, immediate: bool = False) -> None:
        """Stops claiming and drains; a second call (or ``immediate``) ends the drain now."""
        if self._stopping.is_set() or immediate:
            self._immediate.set()
        self._stopping.set()

    @property
    def running(self) -> int:
        """Tasks whose function is running now."""
        return self._leases.running

    async def run(self) -> WorkerStats:
        """Registers the task types (retrying until errand answers), runs tasks until
        ``stop()`` (or until the calling task is cancelled: then without a drain), drains,
        and returns the statistics."""
        if not self.client.tasks:
            raise ValueError("the client has no registered tasks to run")
        self._connection.open(read_timeout=self.wait_s + 15.0)
        cancelled = False
        loops: list[asyncio.Task[None]] = []
        try:
            try:
                if not await self._register_or_stop():
                    return self.stats
                loops = [
                    asyncio.create_task(self._heartbeat.loop(), name="errand:heartbeat"),
                    asyncio.create_task(self._completions.loop(), name="errand:complete"),
                ]
                claim = asyncio.create_task(self._claim_loop(), name="errand:claim")
                for loop in (*loops, claim):
                    loop.add_done_callback(self._loop_ended)
                self.ready.set()
                logger.info(
                    "worker started: %d task type(s) %s, concurrency %d, lease %.0f s",
                    len(self.client.tasks),
                    ",".join(sorted(self.client.tasks)),
                    self.concurrency,
                    self.lease_s,
                )
                try:
                    await self._stopping.wait()
                finally:
                    claim.cancel()
                    await asyncio.gather(claim, return_exceptions=True)
            except asyncio.CancelledError:
                cancelled = True
                self.stop(immediate=True)
            if loops:
                logger.info("worker stopping: %d task(s) running", self.running)
                await self._drain()
                await self._completions.deliver()
        finally:
            for loop in loops:
                loop.cancel()
            await asyncio.gather(*loops, return_exceptions=True)
            await self._connection.aclose()
        logger.info("worker stopped: %s", json.dumps(self.stats.as_dict()))
        if cancelled:
            raise asyncio.CancelledError()
        if self._crash is not None:
            raise ErrandError(f"a worker loop failed: {self._crash!r}") from self._crash
        return self.stats

    def _loop_ended(self, loop: asyncio.Task[None]) -> None:
        """A loop only ends by cancellation; one that fails stops the worker, loudly."""
        if loop.cancelled() or loop.exception() is None:
            return
        self._crash = loop.exception()
        logger.critical("worker loop %s failed: stopping", loop.get_name(), exc_info=self._crash)
        self.stop(immediate=True)

    async def run_until_signalled(self) -> WorkerStats:
        """``run()`` with SIGTERM and SIGINT calling ``stop()`` (the second one ends the
        drain at once); the handlers are removed when it returns."""
        loop = asyncio.get_running_loop()
        signals = (signal.SIGTERM, signal.SIGINT)
        for sig in signals:
            loop.add_signal_handler(sig, self.stop)
        try:
            return await self.run()
        finally:
            for sig in signals:
                loop.remove_signal_handler(sig)

    async def _register_or_stop(self) -> bool:
        """Registers, unless stopped first. Errors other than unavailability propagate."""
        register = asyncio.create_task(self.register())
        stopped = asyncio.create_task(self._stopping.wait())
        try:
            await asyncio.wait({register, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
            if not register.done():
                register.cancel()
            await asyncio.gather(register, stopped, return_exceptions=True)
        if register.cancelled():
            return False
        register.result()
        return True

    async def register(self) -> list[dict[str, Any]]:
        """``PUT /v1/worker/task-types`` with every registered task, retrying with backoff
        while errand is unavailable; returns the server's list of remote task types."""
        body = {"types": [d.spec() for d in self.client.tasks.values()]}
        backoff = Backoff()
        while True:
            try:
                answer = await self._connection.call(
                    "PUT", "/v1/worker/task-types", body, TypesAnswer
                )
            except ErrandError as e:
                if not is_transient(e):
                    raise
                self._connection.outage.failed("registering task types", e)
                await asyncio.sleep(backoff.next())
                continue
            self._connection.outage.ok()
            return answer.types

    # --- claiming -----------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        backoff = Backoff()
        types = sorted(self.client.tasks)
        while True:
            while self.running >= self.concurrency:
                self._leases.slot_freed.clear()
                await self._leases.slot_freed.wait()
            body: dict[str, Any] = {
                "types": types,
                "max": min(self.concurrency - self.running, MAX_BATCH),
                "wait_s": self.wait_s,
                "lease_s": self.lease_s,
                "worker": self.info,
            }
            if self.queues:
                body["queues"] = self.queues
            sent_at = time.monotonic()
            try:
                answer = await self._connection.call("POST", "/v1/worker/claim", body, ClaimAnswer)
            except ErrandError as e:
                self._connection.outage.failed("claiming", e)
                await asyncio.sleep(backoff.next())
                continue
            self._connection.outage.ok()
            backoff.reset()
            for assignment in answer.tasks:
                self._start(assignment, sent_at + self.lease_s)

    def _start(self, assignment: Assignment, expires: float) -> None:
        definition = self.client.tasks.get(assignment.name)
        ctx = TaskContext.from_assignment(assignment, on_report=self._leases.reported.set)
        lease = Lease(assignment, definition, ctx, expires)
        self._leases.add(lease)
        # create_task runs the task in a copy of this (task-free) context: nothing one task
        # sets in a ContextVar reaches another.
        lease.task = asyncio.create_task(
            self._run(lease), name=f"errand:{assignment.name}:{assignment.task_id}"
        )

    # --- running ------------------------------------------------------------------------

    async def _run(self, lease: Lease) -> None:
        completion = await run_attempt(lease)
        if completion is not None:
            self._leases.finish(lease, completion)

    async def _drain(self) -> None:
        """Waits for running tasks up to ``drain_timeout`` (or ``stop(immediate=True)``), then
        cancels the rest: each completes as ``released`` (``cancelled`` if it was)."""
        deadline = time.monotonic() + self.drain_timeout
        immediate = asyncio.create_task(self._immediate.wait())
        try:
            while not immediate.done():
                running = {l.task for l in self._leases.held.values() if not l.done and l.task}
                left = deadline - time.monotonic()
                if not running or left <= 0:
                    break
                await asyncio.wait(
                    running | {immediate}, timeout=left, return_when=asyncio.FIRST_COMPLETED
                )
        finally:
            immediate.cancel()
        remaining = [l for l in self._leases.held.values() if not l.done and l.task]
        for lease in remaining:
            lease.stop_reason = "released"
            assert lease.task is not None
            lease.task.cancel()
        if remaining:
            logger.info("released %d task(s) still running at the end of the drain", len(remaining))
            await asyncio.wait([l.task for l in remaining if l.task], timeout=5.0)
