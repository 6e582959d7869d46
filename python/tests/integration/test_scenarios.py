"""The Python SDK against a real ``errand serve`` and real worker processes: identity under
concurrency, no leaks, crash, SIGTERM, cancel, fencing, status, isolation and timeout."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

import errand
from tests.integration.conftest import Errand, Proc

TERMINAL = {"success", "failed", "cancelled"}


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


async def await_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)


def started(proc: Proc) -> Callable[[], bool]:
    return lambda: "worker started" in proc.err()


def marks(root: Path, kind: str | None = None) -> list[dict[str, Any]]:
    found = [json.loads(p.read_text()) for p in sorted((root / "marks").glob("*.json"))]
    return [m for m in found if kind is None or m["kind"] == kind]


def stats_line(proc: Proc) -> dict[str, int]:
    lines = [l for l in proc.out().splitlines() if l.startswith("{")]
    assert lines, f"{proc.name} printed no statistics; stderr:\n{proc.err()[-2000:]}"
    stats: dict[str, int] = json.loads(lines[-1])
    return stats


async def test_concurrent_users_each_see_their_own_identity(errand_server: Errand) -> None:
    w1 = errand_server.worker("w1", "--concurrency", "16")
    w2 = errand_server.worker("w2", "--concurrency", "16")
    api = errand_server.api()
    wait_until(lambda: started(w1)() and started(w2)(), 30, "both workers")
    users = [(f"user{i:02d}", f"tenant{i % 5}") for i in range(50)]
    with ThreadPoolExecutor(8) as pool:
        tokens = list(pool.map(lambda ut: errand_server.user_token(*ut), users))

    async with httpx.AsyncClient(base_url=api, timeout=60) as http:
        async def submit(u: int, j: int) -> tuple[str, str, str, str, str]:
            user, tenant = users[u]
            rid = f"req-{user}-{j}"
            r = await http.post("/seen", json={"n": j, "max_sleep_s": 0.05},
                                headers={"authorization": f"Bearer {tokens[u]}", "x-request-id": rid})
            assert r.status_code == 202, r.text
            return user, tenant, rid, tokens[u], r.json()["task_id"]

        submitted = await asyncio.gather(*(submit(u, j) for u in range(50) for j in range(10)))

    client = errand.Client(url=errand_server.url)
    gate = asyncio.Semaphore(50)

    async def final(token: str, task_id: str) -> dict[str, Any]:
        async with gate:
            return await client.task_handle(task_id, token=token).wait(timeout=90)

    records = await asyncio.gather(*(final(tok, tid) for _, _, _, tok, tid in submitted))
    mismatches = 0
    pids = set()
    for (user, tenant, rid, _, _), record in zip(submitted, records):
        result = record.get("result") or {}
        pids.add(result.get("pid"))
        ok = (record["status"] == "success" and record["owner"]["user_id"] == user
              and result.get("user_id") == user and result.get("tenant") == tenant
              and result.get("request_id") == rid and result.get("current_user_id") == user
              and result.get("current_is_ctx") is True and result.get("leaked_user") is None
              and result.get("has_credential") is True)
        mismatches += not ok
    assert len(records) == 500
    assert mismatches == 0, f"{mismatches} of 500 tasks saw another identity"
    assert len(pids) == 2, "both worker processes should have run tasks"


async def test_a_context_less_task_after_a_users_task_sees_no_user(errand_server: Errand) -> None:
    w = errand_server.worker("w1", "--concurrency", "1")
    wait_until(started(w), 30, "the worker")
    alice = errand_server.user_token("alice", "acme")
    admin = errand_server.token("--user", "root", "--admin")
    worker_token = errand_server.worker_token("submitter")
    client = errand.Client(url=errand_server.url)
    first = await client.submit("it_seen", {"n": 1}, token=alice)
    first_record = await first.wait(timeout=30)
    second = await client.submit("it_seen", {"n": 2}, token=worker_token)
    second_record = await client.task_handle(second.id, token=admin).wait(timeout=30)
    assert first_record["result"]["user_id"] == "alice"
    result = second_record["result"]
    assert second_record["status"] == "success"
    assert result["pid"] == first_record["result"]["pid"], "ran in the same process, right after"
    assert result["user_id"] is None and result["tenant"] is None
    assert result["current_user_id"] is None and result["leaked_user"] is None
    assert result["current_in_new_thread"] is True
    assert second_record["owner"]["user_id"] is None


async def test_a_killed_worker_loses_no_task(errand_server: Errand) -> None:
    w1 = errand_server.worker("w1", "--concurrency", "4", "--lease", "3")
    w2 = errand_server.worker("w2", "--concurrency", "4", "--lease", "3")
    wait_until(lambda: started(w1)() and started(w2)(), 30, "both workers")
    alice = errand_server.user_token("alice")
    client = errand.Client(url=errand_server.url)
    handles = [await client.submit("it_sleep", {"sleep_s": 1.5}, token=alice) for _ in range(16)]
    root = errand_server.root
    await await_until(lambda: any(m["pid"] == w1.popen.pid for m in marks(root, "start")), 20,
                      "w1 to start a task")
    w1.signal(signal.SIGKILL)
    w1.wait(5)
    records = await asyncio.gather(*(h.wait(timeout=60) for h in handles))
    assert [r["status"] for r in records] == ["success"] * 16
    starts: dict[str, list[dict[str, Any]]] = {}
    for m in marks(root, "start"):
        starts.setdefault(m["task_id"], []).append(m)
    held_by_w1 = {t for t, ms in starts.items() if any(m["pid"] == w1.popen.pid for m in ms)}
    duplicates = sum(len(ms) - 1 for ms in starts.values())
    assert set(starts) == {h.id for h in handles}
    assert all(r["result"]["pid"] == w2.popen.pid for r in records
               if r["id"] in held_by_w1 and len(starts[r["id"]]) > 1)
    assert duplicates <= len(held_by_w1) <= 4, (duplicates, held_by_w1)


async def test_sigterm_releases_without_spending_an_attempt(errand_server: Errand) -> None:
    w1 = errand_server.worker("w1", "--concurrency", "2", "--drain-timeout", "1")
    wait_until(started(w1), 30, "w1")
    alice = errand_server.user_token("alice")
    client = errand.Client(url=errand_server.url)
    handle = await client.submit("it_sleep", {"sleep_s": 4}, token=alice)
    root = errand_server.root
    await await_until(lambda: bool(marks(root, "start")), 20, "the task to start on w1")
    w2 = errand_server.worker("w2", "--concurrency", "2")
    wait_until(started(w2), 30, "w2")
    w1.signal(signal.SIGTERM)
    assert w1.wait(15) == 0
    stats = stats_line(w1)
    assert stats["released"] == 1 and stats["claimed"] == 1
    record = await handle.wait(timeout=30)
    assert record["status"] == "success"
    assert record["result"]["pid"] == w2.popen.pid
    assert record["attempt"] == 1, "the released attempt was counted"
    assert [m["attempt"] for m in marks(root, "start")] == [1, 1]


async def test_cancel_reaches_a_running_task_within_a_second(errand_server: Errand) -> None:
    w = errand_server.worker("w1")
    wait_until(started(w), 30, "the worker")
    alice = errand_server.user_token("alice")
    client = errand.Client(url=errand_server.url)
    handle = await client.submit("it_cancel", {}, token=alice)
    root = errand_server.root
    await await_until(lambda: bool(marks(root, "start")), 20, "the task to start")
    asked = time.time()
    await handle.cancel()
    await await_until(lambda: bool(marks(root, "cancel_seen")), 5, "the task to see the cancel")
    seen = marks(root, "cancel_seen")[0]["at"]
    assert seen - asked < 1.0, f"ctx.cancelled turned true {seen - asked:.2f} s after the cancel"
    record = await handle.wait(timeout=15)
    assert record["status"] == "cancelled"


async def test_a_stale_workers_completion_is_fenced(errand_server: Errand) -> None:
    w1 = errand_server.worker("w1", "--concurrency", "1", "--lease", "3")
    wait_until(started(w1), 30, "w1")
    alice = errand_server.user_token("alice")
    client = errand.Client(url=errand_server.url)
    handle = await client.submit("it_sleep", {"sleep_s": 0.3, "block_first_s": 6}, token=alice)
    root = errand_server.root
    await await_until(lambda: bool(marks(root, "start")), 20, "w1 to start the task")
    w2 = errand_server.worker("w2", "--concurrency", "1", "--lease", "3")
    record = await handle.wait(timeout=40)
    assert record["status"] == "success" and record["attempt"] == 2
    assert record["result"]["pid"] == w2.popen.pid
    refused = "completion refused: the attempt was superseded"
    await await_until(lambda: refused in w1.err(), 15, "w1 to report its fenced completion")
    assert (await handle.get())["result"]["pid"] == w2.popen.pid, "the newer outcome was kept"
    w1.signal(signal.SIGTERM)
    assert w1.wait(15) == 0
    assert stats_line(w1)["fenced"] == 1


async def test_progress_steps_and_errors_reach_the_record_and_the_stream(errand_server: Errand) -> None:
    w = errand_server.worker("w1")
    wait_until(started(w), 30, "the worker")
    alice = errand_server.user_token("alice")
    client = errand.Client(url=errand_server.url)
    handle = await client.submit("it_report", {}, token=alice)
    events = [r async for r in handle.events()]
    final = await handle.get()
    assert final["status"] == "failed" and events[-1]["status"] == "failed"
    assert final["error"]["kind"] == "empty_content"
    assert final["error"]["message"] == "no terms to embed"
    assert final["error"]["details"] == {"chars": 0}
    assert final["error"]["retryable"] is False
    steps = {s["name"]: s for s in final["steps"]}
    assert [s["name"] for s in final["steps"]] == ["fetch", "embed", "index"]
    assert steps["fetch"]["status"] == "success"
    assert steps["embed"]["status"] == "failed" and steps["embed"]["error"] == "no terms to embed"
    assert steps["index"]["status"] == "skipped"
    assert final["progress"] == {"current": 3, "total": 3, "message": "fetched 3 of 3"}
    progress = [e["progress"]["current"] for e in events if e.get("progress")]
    assert progress == sorted(progress) and len(set(progress)) >= 2, progress
    order = {"pending": 0, "running": 1, "success": 2, "failed": 2, "skipped": 2}
    for name in ("fetch", "embed"):
        seen = [next(s["status"] for s in e["steps"] if s["name"] == name)
                for e in events if any(s["name"] == name for s in e.get("steps", []))]
        assert [order[s] for s in seen] == sorted(order[s] for s in seen), (name, seen)
    # `fetch` runs for 0.45 s, reporting as it goes: its running state reaches the stream.
    # (A short step's changes may reach the server in one call, and the stream shows the
    # record after them, so `embed` may go from pending to failed in one event.)
    assert any(s["name"] == "fetch" and s["status"] == "running"
               for e in events for s in e.get("steps", []))


async def test_another_user_gets_404_everywhere(errand_server: Errand) -> None:
    w = errand_server.worker("w1")
    wait_until(started(w), 30, "the worker")
    alice = errand_server.user_token("alice", "acme")
    bob = errand_server.user_token("bob", "acme")
    client = errand.Client(url=errand_server.url)
    handle = await client.submit("it_report", {}, token=alice)
    assert (await handle.wait(timeout=30))["status"] == "failed"
    base = f"{errand_server.url}/v1/tasks/{handle.id}"
    auth = {"authorization": f"Bearer {bob}"}
    async with httpx.AsyncClient(timeout=10) as http:
        answers = [
            (await http.get(base, headers=auth)).status_code,
            (await http.get(base + "/events", headers=auth)).status_code,
            (await http.post(base + "/cancel", headers=auth)).status_code,
            (await http.post(base + "/retry", headers=auth)).status_code,
        ]
    assert answers == [404, 404, 404, 404]
    with pytest.raises(errand.NotFound):
        await client.task_handle(handle.id, token=bob).get()
    with pytest.raises(errand.Unprocessable):
        await client.submit("it_seen", {"n": "not a number"}, token=alice)
    await client.task_handle(handle.id, token=alice).retry()


async def test_a_frozen_worker_does_not_stop_the_timeout(errand_server: Errand) -> None:
    w = errand_server.worker("w1", "--concurrency", "1")
    wait_until(started(w), 30, "the worker")
    alice = errand_server.user_token("alice")
    client = errand.Client(url=errand_server.url)
    handle = await client.submit("it_hang", {}, token=alice)
    await await_until(lambda: bool(marks(errand_server.root, "start")), 20, "the task to start")
    w.signal(signal.SIGSTOP)
    try:
        record = await handle.wait(timeout=20)
    finally:
        w.signal(signal.SIGCONT)
    assert record["status"] == "failed"
    assert record["error"]["kind"] == "timeout"
    await await_until(lambda: "task lost" in w.err(), 10, "the worker to learn it lost the task")
