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
import random
import signal
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from .context import TaskContext, _current
from .errors import ErrandError, Fatal, Retry, Unreachable, api_error, failure_payload, is_transient
from .otel import attempt_span
from .protocol import (
    MAX_BATCH,
    Assignment,
    ClaimAnswer,
    CompleteAnswer,
    HeartbeatAnswer,
    Reports,
    TypesAnswer,
    worker_info,
)
from .task import TaskDefinition

if TYPE_CHECKING:
    from .client import Client

logger = logging.getLogger("errand")

A = TypeVar("A", bound=BaseModel)

#: A batch of completions is kept under this many bytes (the server's default limit is 1 MiB).
MAX_BODY_BYTES = 512 * 1024
#: A single completion above this size is replaced by a failure ``result_too_large``.
MAX_COMPLETION_BYTES = 900 * 1024


@dataclass
class WorkerStats:
    """What a worker did: tasks claimed, and completions accepted by outcome (``retried`` are
    retryable failures with attempts left), plus tasks ``lost`` (lease no longer held) and
    completions refused as ``fenced``."""

    claimed: int = 0
    succeeded: int = 0
    failed: int = 0
    retried: int = 0
    cancelled: int = 0
    released: int = 0
    lost: int = 0
    fenced: int = 0
    #: Completions errand received but whose write its store did not confirm in time.
    unconfirmed: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def _encode(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def _log_fields(ctx: TaskContext) -> dict[str, Any]:
    """``extra`` for records logged about a task outside it (``ContextFilter`` keeps them)."""
    return {
        "task_id": ctx.task_id,
        "user_id": ctx.user_id or "-",
        "tenant": ctx.tenant or "-",
        "correlation_id": ctx.correlation_id or "-",
    }


class _Backoff:
    """Exponential delays from ``initial`` to ``maximum`` seconds, each jittered to 50–100 %."""

    def __init__(self, initial: float = 0.1, maximum: float = 5.0) -> None:
        self.initial = initial
        self.maximum = maximum
        self._delay = initial

    def next(self) -> float:
        delay = self._delay
        self._delay = min(self.maximum, delay * 2)
        return delay * random.uniform(0.5, 1.0)

    def reset(self) -> None:
        self._delay = self.initial


class _Outage:
    """Logs an unreachable errand once per outage, and its return."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._down_since: float | None = None

    def failed(self, what: str, error: ErrandError) -> None:
        if not is_transient(error):
            logger.error("%s failed: %s", what, error)
        elif self._down_since is None:
            self._down_since = time.monotonic()
            logger.warning(
                "errand at %s is unavailable (%s: %s); retrying with backoff", self.url, what, error
            )

    def ok(self) -> None:
        if self._down_since is not None:
            logger.warning(
                "errand at %s answers again after %.1f s",
                self.url,
                time.monotonic() - self._down_since,
            )
            self._down_since = None


class _Lease:
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
        return self.assignment.lease_token


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
        self._leases: dict[str, _Lease] = {}
        self._outbox: list[_Lease] = []
        self._outbox_event = asyncio.Event()
        self._report_event = asyncio.Event()
        self._leases_added = asyncio.Event()
        self._slot_freed = asyncio.Event()
        self._stopping = asyncio.Event()
        self._immediate = asyncio.Event()
        self._send_lock = asyncio.Lock()
        self._sending_completions = False
        self._outage = _Outage(client.url)
        self._http: httpx.AsyncClient | None = None
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
        return sum(1 for lease in self._leases.values() if not lease.done)

    async def run(self) -> WorkerStats:
        """Registers the task types (retrying until errand answers), runs tasks until
        ``stop()`` (or until the calling task is cancelled: then without a drain), drains,
        and returns the statistics."""
        if not self.client.tasks:
            raise ValueError("the client has no registered tasks to run")
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(connect=5.0, read=self.wait_s + 15.0, write=10.0, pool=None),
            transport=self.client._transport,
        )
        cancelled = False
        loops: list[asyncio.Task[None]] = []
        try:
            try:
                if not await self._register_or_stop():
                    return self.stats
                loops = [
                    asyncio.create_task(self._heartbeat_loop(), name="errand:heartbeat"),
                    asyncio.create_task(self._completion_loop(), name="errand:complete"),
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
                await self._deliver_outbox()
        finally:
            for loop in loops:
                loop.cancel()
            await asyncio.gather(*loops, return_exceptions=True)
            await self._http.aclose()
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
        backoff = _Backoff()
        while True:
            try:
                answer = await self._call("PUT", "/v1/worker/task-types", body, TypesAnswer)
            except ErrandError as e:
                if not is_transient(e):
                    raise
                self._outage.failed("registering task types", e)
                await asyncio.sleep(backoff.next())
                continue
            self._outage.ok()
            return answer.types

    # --- HTTP ---------------------------------------------------------------------------

    async def _call(
        self, method: str, path: str, body: Any, answer: type[A], *, raw: bytes | None = None
    ) -> A:
        """One worker-route request; the answer parsed as ``answer``. An answer that is not
        what the protocol says is an ``ErrandError`` too, so no loop ever dies of one."""
        assert self._http is not None, "the worker is not running"
        headers = {"content-type": "application/json", **self.client.auth_headers(None)}
        try:
            response = await self._http.request(
                method,
                self.client.url_for(path),
                content=raw if raw is not None else _encode(body),
                headers=headers,
            )
        except httpx.TransportError as e:
            raise Unreachable(f"{method} {path}: {type(e).__name__}: {e}") from e
        if response.status_code >= 400:
            raise api_error(response)
        try:
            return answer.model_validate_json(response.content)
        except ValidationError as e:
            raise ErrandError(f"{method} {path}: an answer the protocol does not allow: {e}") from e

    # --- claiming -----------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        backoff = _Backoff()
        types = sorted(self.client.tasks)
        while True:
            while self.running >= self.concurrency:
                self._slot_freed.clear()
                await self._slot_freed.wait()
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
                answer = await self._call("POST", "/v1/worker/claim", body, ClaimAnswer)
            except ErrandError as e:
                self._outage.failed("claiming", e)
                await asyncio.sleep(backoff.next())
                continue
            self._outage.ok()
            backoff.reset()
            for assignment in answer.tasks:
                self._start(assignment, sent_at + self.lease_s)

    def _start(self, assignment: Assignment, expires: float) -> None:
        definition = self.client.tasks.get(assignment.name)
        ctx = TaskContext.from_assignment(assignment, on_report=self._report_event.set)
        lease = _Lease(assignment, definition, ctx, expires)
        self._leases[lease.token] = lease
        self._leases_added.set()
        self.stats.claimed += 1
        # create_task runs the task in a copy of this (task-free) context: nothing one task
        # sets in a ContextVar reaches another.
        lease.task = asyncio.create_task(
            self._run(lease), name=f"errand:{assignment.name}:{assignment.task_id}"
        )

    # --- running ------------------------------------------------------------------------

    async def _run(self, lease: _Lease) -> None:
        ctx = lease.ctx
        _current.set(ctx)
        user = ctx.user_id or "-"
        logger.info(
            "started %s attempt %d/%d for user %s", ctx.name, ctx.attempt, ctx.max_attempts, user
        )
        began = time.monotonic()
        completion: dict[str, Any]
        error: BaseException | None = None
        try:
            if lease.definition is None:
                raise Fatal(f"this worker has no task type {ctx.name!r}", kind="unknown_task")
            with attempt_span(ctx):
                args = lease.definition.parse_args(lease.assignment.args)
                result = await lease.definition.fn(args, ctx)
            completion = self._success(result)
        except asyncio.CancelledError:
            if lease.stop_reason == "released" and not ctx.cancelled:
                completion = {"outcome": "released"}
            elif lease.stop_reason in ("cancelled", "released") or ctx.cancelled:
                completion = {"outcome": "cancelled"}
            else:
                # Cancelled from outside the worker's own decisions (the worker is torn
                # down): hand the task back without spending its attempt.
                completion = {"outcome": "released"}
        except Exception as e:  # noqa: BLE001 - every task error is the task's outcome
            error = e
            completion = {"outcome": "failure", "error": failure_payload(e)}
        if lease.stop_reason == "lost":
            return
        self._log_outcome(ctx, completion, time.monotonic() - began, error)
        completion.update(task_id=ctx.task_id, lease_token=lease.token)
        if lease.cancel_timer is not None:
            lease.cancel_timer.cancel()
        lease.completion = completion
        lease.done = True
        self._outbox.append(lease)
        self._outbox_event.set()
        self._slot_freed.set()

    @staticmethod
    def _success(result: Any) -> dict[str, Any]:
        if isinstance(result, BaseModel):
            result = result.model_dump(mode="json")
        try:
            size = len(_encode(result))
        except (TypeError, ValueError) as e:
            raise Fatal(
                f"the task's result is not JSON: {e}", kind="invalid_result"
            ) from e
        if size > MAX_COMPLETION_BYTES:
            raise Fatal(
                f"the task's result is {size} bytes of JSON, over {MAX_COMPLETION_BYTES}",
                kind="result_too_large",
            )
        return {"outcome": "success", "result": result}

    @staticmethod
    def _log_outcome(
        ctx: TaskContext, completion: Mapping[str, Any], elapsed: float, error: BaseException | None
    ) -> None:
        user = ctx.user_id or "-"
        outcome = completion["outcome"]
        if outcome == "success":
            logger.info("succeeded %s in %.3f s for user %s", ctx.name, elapsed, user)
        elif outcome == "failure":
            e = completion["error"]
            unexpected = error if not isinstance(error, (Fatal, Retry)) else None
            if e["retryable"] and ctx.attempt < ctx.max_attempts:
                logger.warning(
                    "retrying %s after attempt %d/%d for user %s: %s: %s",
                    ctx.name, ctx.attempt, ctx.max_attempts, user, e["kind"], e["message"],
                    exc_info=unexpected,
                )
            else:
                logger.error(
                    "failed %s at attempt %d/%d for user %s: %s: %s",
                    ctx.name, ctx.attempt, ctx.max_attempts, user, e["kind"], e["message"],
                    exc_info=unexpected,
                )
        elif outcome == "cancelled":
            logger.info("cancelled %s after %.3f s for user %s", ctx.name, elapsed, user)
        else:
            logger.info("released %s unfinished for user %s", ctx.name, user)

    def _request_cancel(self, lease: _Lease) -> None:
        lease.ctx._request_cancel()
        logger.info("cancellation requested", extra=_log_fields(lease.ctx))
        if not lease.done and lease.cancel_timer is None:
            lease.cancel_timer = asyncio.get_running_loop().call_later(
                self.cancel_grace_s, self._force_cancel, lease
            )

    def _force_cancel(self, lease: _Lease) -> None:
        if not lease.done and lease.stop_reason is None and lease.task is not None:
            logger.warning(
                "task did not stop within %.1f s of its cancellation: cancelling it",
                self.cancel_grace_s,
                extra=_log_fields(lease.ctx),
            )
            lease.stop_reason = "cancelled"
            lease.task.cancel()

    def _lose(self, lease: _Lease, why: str) -> None:
        """The server no longer holds this lease: stop the task, never complete it."""
        if self._leases.pop(lease.token, None) is None:
            return
        self.stats.lost += 1
        logger.warning("task lost: %s; it will not be completed here", why, extra=_log_fields(lease.ctx))
        lease.stop_reason = "lost"
        if lease.cancel_timer is not None:
            lease.cancel_timer.cancel()
        if lease.done:
            if lease in self._outbox:
                self._outbox.remove(lease)
        elif lease.task is not None:
            lease.task.cancel()
        self._slot_freed.set()

    def _expire_overdue(self) -> None:
        now = time.monotonic()
        for lease in list(self._leases.values()):
            if now > lease.expires:
                self._lose(lease, "its lease expired while errand could not be told")

    async def _drain(self) -> None:
        """Waits for running tasks up to ``drain_timeout`` (or ``stop(immediate=True)``), then
        cancels the rest: each completes as ``released`` (``cancelled`` if it was)."""
        deadline = time.monotonic() + self.drain_timeout
        immediate = asyncio.create_task(self._immediate.wait())
        try:
            while not immediate.done():
                running = {l.task for l in self._leases.values() if not l.done and l.task}
                left = deadline - time.monotonic()
                if not running or left <= 0:
                    break
                await asyncio.wait(
                    running | {immediate}, timeout=left, return_when=asyncio.FIRST_COMPLETED
                )
        finally:
            immediate.cancel()
        remaining = [l for l in self._leases.values() if not l.done and l.task]
        for lease in remaining:
            lease.stop_reason = "released"
            assert lease.task is not None
            lease.task.cancel()
        if remaining:
            logger.info("released %d task(s) still running at the end of the drain", len(remaining))
            await asyncio.wait([l.task for l in remaining if l.task], timeout=5.0)

    # --- reporting ----------------------------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        backoff = _Backoff()
        while True:
            if not self._leases:
                self._leases_added.clear()
                await self._leases_added.wait()
            try:
                await asyncio.wait_for(self._report_event.wait(), self.heartbeat_interval_s)
                await asyncio.sleep(self.report_delay_s)
            except asyncio.TimeoutError:
                pass
            self._report_event.clear()
            if not await self._heartbeat(list(self._leases.values())):
                self._expire_overdue()
                await asyncio.sleep(min(backoff.next(), self.heartbeat_interval_s * 2))
            else:
                backoff.reset()

    async def _heartbeat(self, leases: list[_Lease]) -> bool:
        """One heartbeat per 256 leases, with their pending reports; False if one failed."""
        for start in range(0, len(leases), MAX_BATCH):
            chunk = leases[start : start + MAX_BATCH]
            async with self._send_lock:
                taken: list[Reports] = [lease.ctx._reports.take() for lease in chunk]
                body = {
                    "leases": [
                        {"task_id": l.ctx.task_id, "lease_token": l.token, **r}
                        for l, r in zip(chunk, taken)
                    ],
                    "worker": self.info,
                }
                sent_at = time.monotonic()
                try:
                    answer = await self._call(
                        "POST", "/v1/worker/heartbeat", body, HeartbeatAnswer
                    )
                except ErrandError as e:
                    for lease, reports in zip(chunk, taken):
                        lease.ctx._reports.restore(reports)
                    self._outage.failed("heartbeat", e)
                    return False
                self._outage.ok()
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
                    if lease.token not in self._leases:
                        continue
                    if not state.held:
                        self._lose(lease, "errand no longer holds its lease (lapsed, timed out or taken back)")
                        continue
                    lease.expires = sent_at + self.lease_s
                    if state.lease_deadline is not None:
                        lease.ctx.lease_deadline = state.lease_deadline
                    if state.cancel_requested and not lease.ctx.cancelled:
                        self._request_cancel(lease)
                if any(l.ctx._reports.steps for l in chunk):
                    self._report_event.set()
        return True

    # --- completing ---------------------------------------------------------------------

    async def _completion_loop(self) -> None:
        backoff = _Backoff()
        while True:
            await self._outbox_event.wait()
            self._outbox_event.clear()
            # No yield before sending: tasks that finished before this loop woke are in the
            # batch; those finishing while it is in flight go in the next one. (Sending at
            # once also puts a completion ahead of an overdue heartbeat after a stall.)
            while self._outbox:
                self._sending_completions = True
                try:
                    delivered = await self._complete_batch()
                finally:
                    self._sending_completions = False
                if delivered is None:
                    await asyncio.sleep(self.report_delay_s)
                elif delivered:
                    backoff.reset()
                else:
                    self._expire_overdue()
                    await asyncio.sleep(backoff.next())

    async def _complete_batch(self) -> bool | None:
        """Sends one batch of the outbox; True if delivered, False if it failed, None if every
        waiting completion first needs a heartbeat to carry its surplus step changes."""
        async with self._send_lock:
            batch: list[_Lease] = []
            parts: list[bytes] = []
            taken: list[Reports] = []
            size = 0
            for lease in list(self._outbox):
                if len(batch) == MAX_BATCH:
                    break
                reports = lease.ctx._reports.take()
                if lease.ctx._reports.steps:
                    # More step changes than one call carries: a heartbeat goes first.
                    lease.ctx._reports.restore(reports)
                    self._report_event.set()
                    continue
                assert lease.completion is not None
                part = _encode({**reports, **lease.completion})
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
            try:
                answer = await self._call(
                    "POST", "/v1/worker/complete", None, CompleteAnswer, raw=raw
                )
            except ErrandError as e:
                for lease, reports in zip(batch, taken):
                    lease.ctx._reports.restore(reports)
                self._outage.failed("completing", e)
                return False
            self._outage.ok()
            if len(answer.results) != len(batch):
                logger.error(
                    "errand answered %d results for %d completions; the rest are sent again",
                    len(answer.results),
                    len(batch),
                )
            for lease, result in zip(batch, answer.results):
                if lease in self._outbox:
                    self._outbox.remove(lease)
                self._completed(lease, result.accepted, result.fenced)
            return True

    def _completed(self, lease: _Lease, accepted: bool, fenced: bool) -> None:
        self._leases.pop(lease.token, None)
        ctx = lease.ctx
        completion = lease.completion or {}
        if not accepted and not fenced:
            # The store did not confirm the write in time; the server keeps writing it, and
            # the task's record shows what became of it.
            self.stats.unconfirmed += 1
            logger.warning(
                "completion not confirmed: errand's store did not answer in time (attempt %d, outcome %s); the task's record shows whether it was written",
                ctx.attempt,
                completion.get("outcome"),
                extra=_log_fields(ctx),
            )
            return
        if accepted:
            outcome = completion.get("outcome")
            if outcome == "success":
                self.stats.succeeded += 1
            elif outcome == "failure":
                retry = completion["error"]["retryable"] and ctx.attempt < ctx.max_attempts
                if retry:
                    self.stats.retried += 1
                else:
                    self.stats.failed += 1
            elif outcome == "cancelled":
                self.stats.cancelled += 1
            else:
                self.stats.released += 1
            return
        self.stats.fenced += 1
        logger.warning(
            "completion refused: the attempt was superseded (attempt %d, outcome %s)",
            ctx.attempt,
            completion.get("outcome"),
            extra=_log_fields(ctx),
        )
        try:
            ctx._mark_fenced()
        except Exception:
            logger.exception("an on_fenced callback failed", extra=_log_fields(ctx))

    async def _deliver_outbox(self) -> None:
        """Waits until every queued completion was delivered or its lease has expired."""
        while self._outbox or self._sending_completions:
            if self._outbox and not self._sending_completions:
                self._outbox_event.set()
            await asyncio.sleep(0.01)
