"""The task functions the integration tests run in Python worker processes.

The queue is ``$ERRAND_TEST_QUEUE``; tasks leave marker files under ``$ERRAND_TEST_DIR`` so
that the tests can tell which process ran which attempt and when."""

from __future__ import annotations

import asyncio
import contextvars
import json
import os
import random
import threading
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel

import errand

QUEUE = os.environ.get("ERRAND_TEST_QUEUE", "py_it")
MARKS = Path(os.environ.get("ERRAND_TEST_DIR", ".")) / "marks"

client = errand.Client()

# Set by every `seen` task to its user: a task that finds it set saw another task's value.
_last_user: contextvars.ContextVar[str | None] = contextvars.ContextVar("last_user", default=None)


def mark(kind: str, ctx: errand.TaskContext, **data: Any) -> None:
    MARKS.mkdir(parents=True, exist_ok=True)
    record = {"kind": kind, "task_id": ctx.task_id, "attempt": ctx.attempt, "pid": os.getpid(),
              "at": time.time(), **data}
    path = MARKS / f"{kind}-{ctx.task_id}-{ctx.attempt}-{os.getpid()}.json"
    # Written under a name the reader does not glob, then renamed: a reader never sees a
    # half-written mark.
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(record))
    partial.replace(path)


class SeenArgs(BaseModel):
    n: int = 0
    max_sleep_s: float = 0.0


@client.task("it_seen", queue=QUEUE)
async def seen(args: SeenArgs, ctx: errand.TaskContext) -> dict[str, Any]:
    """Returns the identity it ran with, as the context, errand.current() and a fresh thread
    see it."""
    leaked = _last_user.get()
    await asyncio.sleep(random.uniform(0, args.max_sleep_s))
    current = errand.current()
    in_thread: list[object] = []
    thread = threading.Thread(target=lambda: in_thread.append(errand.current()))
    thread.start()
    thread.join()
    _last_user.set(ctx.user_id)
    return {
        "n": args.n, "user_id": ctx.user_id, "tenant": ctx.tenant, "request_id": ctx.request_id,
        "correlation_id": ctx.correlation_id, "roles": list(ctx.roles),
        "current_user_id": current.user_id if current else "<none>",
        "current_is_ctx": current is ctx, "leaked_user": leaked,
        "current_in_new_thread": in_thread[0] is None, "has_credential": ctx.credential is not None,
        "pid": os.getpid(),
    }


class SleepArgs(BaseModel):
    sleep_s: float = 1.0
    #: On the first attempt, block the whole process (no heartbeats) this long at the end.
    block_first_s: float = 0.0


@client.task("it_sleep", queue=QUEUE, max_attempts=5, backoff=(0.1, 0.5))
async def sleep(args: SleepArgs, ctx: errand.TaskContext) -> dict[str, Any]:
    mark("start", ctx)
    await asyncio.sleep(args.sleep_s)
    if ctx.attempt == 1 and args.block_first_s:
        # Freezes the whole event loop, heartbeats included: the lease lapses, and the task
        # completes the moment the process thaws.
        time.sleep(args.block_first_s)
    mark("end", ctx)
    return {"pid": os.getpid(), "attempt": ctx.attempt}


@client.task("it_cancel", queue=QUEUE)
async def cancellable(args: dict[str, Any], ctx: errand.TaskContext) -> None:
    mark("start", ctx)
    await ctx.wait_cancelled()
    mark("cancel_seen", ctx)
    raise asyncio.CancelledError()


@client.task("it_report", queue=QUEUE, max_attempts=1)
async def report(args: dict[str, Any], ctx: errand.TaskContext) -> None:
    ctx.plan_steps(["fetch", "embed", "index"])
    async with ctx.step("fetch"):
        for i in range(1, 4):
            await ctx.progress(i, 3, f"fetched {i} of 3")
            await asyncio.sleep(0.15)
    async with ctx.step("embed"):
        await asyncio.sleep(0.15)
        raise errand.Fatal("no terms to embed", kind="empty_content", details={"chars": 0})


@client.task("it_hang", queue=QUEUE, max_attempts=1, timeout=2)
async def hang(args: dict[str, Any], ctx: errand.TaskContext) -> None:
    mark("start", ctx)
    await asyncio.sleep(3600)
