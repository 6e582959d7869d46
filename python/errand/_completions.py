"""Completions: the outcomes of ended attempts, which wait in the outbox and go together in
one call, and what errand's answer makes of each (counted, unconfirmed or fenced)."""

from __future__ import annotations

import asyncio
import logging

from ._connection import Backoff, Connection, encode
from ._leases import Lease, Leases, log_fields
from .protocol import MAX_BATCH, CompleteAnswer, Reports

logger = logging.getLogger("errand")

#: A batch of completions is kept under this many bytes (the server's default limit is 1 MiB).
MAX_BODY_BYTES = 512 * 1024


class Completions:
    """Delivers the completions in the outbox of ``leases``: one call at a time, each with
    every completion queued before it left (its surplus reports go first in a heartbeat,
    after ``report_delay_s``). A lease leaves ``leases`` once its completion is delivered."""

    def __init__(self, leases: Leases, connection: Connection, *, report_delay_s: float) -> None:
        self.leases = leases
        self.connection = connection
        self.report_delay_s = report_delay_s
        self._sending = False

    async def loop(self) -> None:
        """Delivers completions until cancelled; while errand is unavailable, retries with
        backoff and loses the leases whose deadline passes."""
        backoff = Backoff()
        while True:
            await self.leases.queued.wait()
            self.leases.queued.clear()
            # No yield before sending: tasks that finished before this loop woke are in the
            # batch; those finishing while it is in flight go in the next one. (Sending at
            # once also puts a completion ahead of an overdue heartbeat after a stall.)
            while self.leases.outbox:
                self._sending = True
                try:
                    delivered = await self._send_batch()
                finally:
                    self._sending = False
                if delivered is None:
                    await asyncio.sleep(self.report_delay_s)
                elif delivered:
                    backoff.reset()
                else:
                    self.leases.expire_overdue()
                    await asyncio.sleep(backoff.next())

    async def deliver(self) -> None:
        """Waits until every queued completion was delivered or its lease has expired."""
        while self.leases.outbox or self._sending:
            if self.leases.outbox and not self._sending:
                self.leases.queued.set()
            await asyncio.sleep(0.01)

    async def _send_batch(self) -> bool | None:
        """Sends one batch of the outbox; True if delivered, False if it failed, None if every
        waiting completion first needs a heartbeat to carry its surplus step changes."""
        async with self.leases.send_lock:
            batch: list[Lease] = []
            parts: list[bytes] = []
            taken: list[Reports] = []
            size = 0
            for lease in list(self.leases.outbox):
                if len(batch) == MAX_BATCH:
                    break
                reports = lease.ctx._reports.take()
                if lease.ctx._reports.steps:
                    # More step changes than one call carries: a heartbeat goes first.
                    lease.ctx._reports.restore(reports)
                    self.leases.reported.set()
                    continue
                assert lease.completion is not None
                part = encode({**reports, **lease.completion})
                if batch and size + len(part) > MAX_BODY_BYTES:
                    lease.ctx._reports.restore(reports)
                    break
                batch.append(lease)
                parts.append(part)
                taken.append(reports)
                size += len(part)
            if not batch:
                return None
            raw = b'{"completions":[' + b",".join(parts) + b"]}"
            answer = await self.connection.post_reports(
                "completing", "/v1/worker/complete", CompleteAnswer, batch, taken, raw=raw
            )
            if answer is None:
                return False
            if len(answer.results) != len(batch):
                logger.error(
                    "errand answered %d results for %d completions; the rest are sent again",
                    len(answer.results),
                    len(batch),
                )
            for lease, result in zip(batch, answer.results):
                if lease in self.leases.outbox:
                    self.leases.outbox.remove(lease)
                self._completed(lease, result.accepted, result.fenced)
            return True

    def _completed(self, lease: Lease, accepted: bool, fenced: bool) -> None:
        self.leases.held.pop(lease.token, None)
        stats = self.leases.stats
        ctx = lease.ctx
        completion = lease.completion or {}
        if not accepted and not fenced:
            # The store did not confirm the write in time; the server keeps writing it, and
            # the task's record shows what became of it.
            stats.unconfirmed += 1
            logger.warning(
                "completion not confirmed: errand's store did not answer in time (attempt %d, outcome %s); the task's record shows whether it was written",
                ctx.attempt,
                completion.get("outcome"),
                extra=log_fields(ctx),
            )
            return
        if accepted:
            outcome = completion.get("outcome")
            if outcome == "success":
                stats.succeeded += 1
            elif outcome == "failure":
                retry = completion["error"]["retryable"] and ctx.attempt < ctx.max_attempts
                if retry:
                    stats.retried += 1
                else:
                    stats.failed += 1
            elif outcome == "cancelled":
                stats.cancelled += 1
            else:
                stats.released += 1
            return
        stats.fenced += 1
        logger.warning(
            "completion refused: the attempt was superseded (attempt %d, outcome %s)",
            ctx.attempt,
            completion.get("outcome"),
            extra=log_fields(ctx),
        )
        try:
            ctx._mark_fenced()
        except Exception:
            logger.exception("an on_fenced callback failed", extra=log_fields(ctx))
