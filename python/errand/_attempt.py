"""One attempt as the worker runs it: the task's function called in the task's context, and
the completion that says how it ended."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from ._connection import encode
from ._leases import Lease
from .context import TaskContext, _current
from .errors import Fatal, Retry, failure_payload
from .otel import attempt_span

logger = logging.getLogger("errand")

#: A single completion above this size is replaced by a failure ``result_too_large``.
MAX_COMPLETION_BYTES = 900 * 1024


async def run_attempt(lease: Lease) -> dict[str, Any] | None:
    """Runs the lease's task function in the calling asyncio task, whose current context
    becomes the task's, and returns its completion once logged; None if the lease was lost
    meanwhile (a lost attempt is never completed)."""
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
        completion = _success(result)
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
        return None
    _log_outcome(ctx, completion, time.monotonic() - began, error)
    completion.update(task_id=ctx.task_id, lease_token=lease.token)
    return completion


def _success(result: Any) -> dict[str, Any]:
    if isinstance(result, BaseModel):
        result = result.model_dump(mode="json")
    try:
        size = len(encode(result))
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
