"""The heartbeat: one call for all of a worker's leases, which renews them, carries the
progress and steps their tasks reported, and learns which were cancelled or lost."""

from __future__ import annotations

import asyncio
import logging
import time

from ._connection import Backoff, Connection
from ._leases import Lease, Leases
from .protocol import MAX_BATCH, HeartbeatAnswer, Reports, WorkerInfo

logger = logging.getLogger("errand")


class Heartbeat:
    """Heartbeats ``leases`` every ``interval_s`` while there are any, and ``report_delay_s``
    after a task reports. A renewed lease holds for ``lease_s`` from the call; a task someone
    cancelled is told so, and cancelled if still running ``cancel_grace_s`` later."""

    def __init__(
        self,
        leases: Leases,
        connection: Connection,
        info: WorkerInfo,
        *,
        lease_s: float,
        interval_s: float,
        report_delay_s: float,
        cancel_grace_s: float,
    ) -> None:
        self.leases = leases
        self.connection = connection
        self.info = info
        self.lease_s = lease_s
        self.interval_s = interval_s
        self.report_delay_s = report_delay_s
        self.cancel_grace_s = cancel_grace_s

    async def loop(self) -> None:
        """Heartbeats until cancelled; while errand is unavailable, retries with backoff and
        loses the leases whose deadline passes."""
        backoff = Backoff()
        while True:
            if not self.leases.held:
                self.leases.added.clear()
                await self.leases.added.wait()
            try:
                await asyncio.wait_for(self.leases.reported.wait(), self.interval_s)
                await asyncio.sleep(self.report_delay_s)
            except asyncio.TimeoutError:
                pass
            self.leases.reported.clear()
            if not await self.send(list(self.leases.held.values())):
                self.leases.expire_overdue()
                await asyncio.sleep(min(backoff.next(), self.interval_s * 2))
            else:
                backoff.reset()

    async def send(self, leases: list[Lease]) -> bool:
        """One heartbeat per 256 leases, with their pending reports; False if one failed."""
        for start in range(0, len(leases), MAX_BATCH):
            chunk = leases[start : start + MAX_BATCH]
            async with self.leases.send_lock:
                taken: list[Reports] = [lease.ctx._reports.take() for lease in chunk]
                body = {
                    "leases": [
                        {"task_id": l.ctx.task_id, "lease_token": l.token, **r}
                        for l, r in zip(chunk, taken)
                    ],
                    "worker": self.info,
                }
                sent_at = time.monotonic()
                answer = await self.connection.post_reports(
                    "heartbeat", "/v1/worker/heartbeat", HeartbeatAnswer, chunk, taken, body=body
                )
                if answer is None:
                    return False
                if len(answer.leases) != len(chunk):
                    logger.error(
                        "errand answered %d leases for a heartbeat of %d", len(answer.leases), len(chunk)
                    )
                for lease, state in zip(chunk, answer.leases):
                    if state.task_id != lease.ctx.task_id:
                        logger.error(
                            "heartbeat answer out of order: %s for %s", state.task_id, lease.ctx.task_id
                        )
                        continue
                    if lease.token not in self.leases.held:
                        continue
                    if not state.held:
                        self.leases.lose(
                            lease, "errand no longer holds its lease (lapsed, timed out or taken back)"
                        )
                        continue
                    lease.expires = sent_at + self.lease_s
                    if state.lease_deadline is not None:
                        lease.ctx.lease_deadline = state.lease_deadline
                    if state.cancel_requested and not lease.ctx.cancelled:
                        lease.request_cancel(self.cancel_grace_s)
                if any(l.ctx._reports.steps for l in chunk):
                    self.leases.reported.set()
        return True
