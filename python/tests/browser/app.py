"""The task types the dashboard's browser tests run in a Python worker process.

The queue is ``$ERRAND_TEST_QUEUE``. Tasks read and leave files under ``$ERRAND_TEST_DIR``:
``ui_pipeline`` can wait for a gate file before its last step ends, and ``ui_fail`` fails only
the first time it runs (so that a retry from the dashboard succeeds)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel

import errand

QUEUE = os.environ.get("ERRAND_TEST_QUEUE", "ui")
ROOT = Path(os.environ.get("ERRAND_TEST_DIR", "."))
STEPS = ["fetch", "parse", "store"]
DOING = {"fetch": "fetching", "parse": "parsing", "store": "storing"}

client = errand.Client()


class PipelineArgs(BaseModel):
    fetch_s: float = 0.1
    parse_s: float = 0.1
    store_s: float = 0.1
    #: The ``store`` step ends only once ``$ERRAND_TEST_DIR/<gate>`` exists.
    gate: str | None = None
    records: int = 3


async def wait_for_file(path: Path, timeout_s: float = 60.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not path.exists():
        if loop.time() > deadline:
            raise errand.Fatal(f"{path.name} did not appear", kind="gate_timeout")
        await asyncio.sleep(0.05)


@client.task("ui_pipeline", queue=QUEUE, max_attempts=3)
async def pipeline(args: PipelineArgs, ctx: errand.TaskContext) -> dict[str, Any]:
    """Three steps, ``fetch`` → ``parse`` → ``store``, each reporting progress."""
    ctx.plan_steps(STEPS)
    for i, (step, seconds) in enumerate(zip(STEPS, (args.fetch_s, args.parse_s, args.store_s))):
        async with ctx.step(step):
            await ctx.progress(i, len(STEPS), f"{DOING[step]} {args.records} records")
            await asyncio.sleep(seconds)
            if step == "store" and args.gate:
                await wait_for_file(ROOT / Path(args.gate).name)
    await ctx.progress(len(STEPS), len(STEPS), f"stored {args.records} records")
    return {"records": args.records}


class FailArgs(BaseModel):
    message: str = "export.csv has no data rows"
    kind: str = "empty_export"


@client.task("ui_fail", queue=QUEUE, max_attempts=1)
async def fail(args: FailArgs, ctx: errand.TaskContext) -> dict[str, Any]:
    """``fetch`` succeeds; ``parse`` fails for good (``Fatal``) the first time the task runs,
    and succeeds when it runs again (retried)."""
    ctx.plan_steps(["fetch", "parse"])
    seen = ROOT / f"ran-{ctx.task_id}"
    first = not seen.exists()
    seen.touch()
    async with ctx.step("fetch"):
        await asyncio.sleep(0.05)
    async with ctx.step("parse"):
        await asyncio.sleep(0.05)
        if first:
            raise errand.Fatal(args.message, kind=args.kind, details={"rows": 0, "file": "export.csv"})
    return {"rows": 1}
