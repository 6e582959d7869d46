"""``python -m errand bench``: the no-op benchmark through the worker protocol, against a
running ``errand serve`` at ``$ERRAND_URL``.

It registers ``errand_bench_noop`` (queue ``errand_bench``), submits ``jobs`` tasks as the
user of ``$ERRAND_USER_TOKEN`` (``in_flight`` submissions at once), then runs them with an
in-process ``Worker`` holding the worker token ``$ERRAND_TOKEN`` at ``concurrency``, and
returns one JSON object with the keys of errand's other benchmarks (``jobs``,
``concurrency``, ``enqueue_per_s``, ``drain_per_s``, ``end_to_end_per_s``) plus the phases'
durations and ``python_cpu_s``, the CPU time this Python process spent (so the rest of the
elapsed time was the server's, or waiting).
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from .client import Client
from .context import TaskContext
from .errors import ErrandError
from .worker import Worker

BENCH_TASK = "errand_bench_noop"
BENCH_QUEUE = "errand_bench"
#: The benchmark gives up when no task finished for this long.
STALL_S = 60.0


async def run_bench(
    jobs: int,
    concurrency: int,
    *,
    in_flight: int = 64,
    url: str | None = None,
    worker_token: str | None = None,
    user_token: str | None = None,
) -> dict[str, Any]:
    """Runs the benchmark; raises ``ErrandError`` if errand refuses or stalls."""
    user_token = user_token or os.environ.get("ERRAND_USER_TOKEN")
    if not user_token:
        raise ErrandError("set ERRAND_USER_TOKEN to a user's token (errand token --user U)")
    client = Client(url=url, token=worker_token)

    @client.task(BENCH_TASK, queue=BENCH_QUEUE)
    async def noop(args: dict[str, Any], ctx: TaskContext) -> None:
        return None

    worker = Worker(client, concurrency=concurrency, queues=[BENCH_QUEUE], drain_timeout=5.0)
    cpu_began = time.process_time()
    began = time.perf_counter()
    worker_task: asyncio.Task[Any] | None = None
    try:
        # Registered first: the submissions are checked against the type.
        registering = asyncio.create_task(worker.run())
        await asyncio.wait_for(worker.ready.wait(), 60)
        worker.stop(immediate=True)
        await registering

        gate = asyncio.Semaphore(max(1, in_flight))

        async def submit(i: int) -> None:
            async with gate:
                await client.submit(BENCH_TASK, {"i": i}, token=user_token)

        enqueue_began = time.perf_counter()
        await asyncio.gather(*(submit(i) for i in range(jobs)))
        enqueue_s = time.perf_counter() - enqueue_began

        worker = Worker(client, concurrency=concurrency, queues=[BENCH_QUEUE], drain_timeout=5.0)
        drain_began = time.perf_counter()
        worker_task = asyncio.create_task(worker.run())
        done, last_change = 0, time.monotonic()
        while worker.stats.succeeded < jobs:
            if worker_task.done():
                worker_task.result()
                raise ErrandError("the benchmark's worker stopped early")
            if worker.stats.succeeded != done:
                done, last_change = worker.stats.succeeded, time.monotonic()
            elif time.monotonic() - last_change > STALL_S:
                raise ErrandError(f"no task finished for {STALL_S:.0f} s ({done} of {jobs} done)")
            await asyncio.sleep(0.005)
        drain_s = time.perf_counter() - drain_began
        worker.stop()
        stats = await worker_task
    finally:
        if worker_task is not None and not worker_task.done():
            worker_task.cancel()
            await asyncio.gather(worker_task, return_exceptions=True)
        await client.aclose()
    elapsed = time.perf_counter() - began
    cpu = time.process_time() - cpu_began
    return {
        "system": "errand-python",
        "bench": "worker_protocol_noop",
        "jobs": jobs,
        "concurrency": concurrency,
        "in_flight": in_flight,
        "enqueue_per_s": round(jobs / enqueue_s, 1) if enqueue_s > 0 else None,
        "drain_per_s": round(jobs / drain_s, 1) if drain_s > 0 else None,
        "end_to_end_per_s": round(jobs / (enqueue_s + drain_s), 1),
        "enqueue_s": round(enqueue_s, 3),
        "drain_s": round(drain_s, 3),
        "elapsed_s": round(elapsed, 3),
        "python_cpu_s": round(cpu, 3),
        "python_cpu_us_per_task": round(cpu / jobs * 1e6, 1) if jobs else None,
        "claimed": stats.claimed,
        "succeeded": stats.succeeded,
    }
