"""The worker against an in-memory errand: batching, outcomes, cancel, loss, fencing, drain,
outages and context isolation."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import BaseModel

import errand
from errand import TaskContext, Worker
from tests.fake import FakeErrand

ALICE = {"user_id": "alice", "tenant": "acme", "roles": ["editor"], "request_id": "req-1",
         "correlation_id": "corr-1", "traceparent": None, "headers": {"x-client": "web"},
         "extra": {}, "credential": "tok", "credential_expires_at": "2999-01-01T00:00:00Z"}


@contextlib.asynccontextmanager
async def running(client: errand.Client, **options: Any) -> AsyncIterator[Worker]:
    worker = Worker(client, **options)
    task = asyncio.create_task(worker.run())
    await asyncio.wait_for(worker.ready.wait(), 5)
    try:
        yield worker
    finally:
        worker.stop(immediate=True)
        await asyncio.wait_for(task, 10)


def make(fake: FakeErrand) -> errand.Client:
    return errand.Client(url="http://errand.test", token="worker-token", transport=fake.transport())


class Doc(BaseModel):
    title: str
    pages: int = 1


async def test_registers_types_with_schema_and_policy() -> None:
    fake = FakeErrand()
    client = make(fake)

    @client.task("py_doc", queue="py", max_attempts=5, timeout=60, ttl=3600, backoff=(0.5, 10))
    async def doc(args: Doc, ctx: TaskContext) -> None:
        return None

    @client.task("py_any")
    async def anything(args: dict[str, Any], ctx: TaskContext) -> None:
        return None

    async with running(client):
        pass
    by_name = {t["name"]: t for t in fake.registered}
    assert by_name["py_doc"] == {
        "name": "py_doc", "queue": "py", "args_schema": Doc.model_json_schema(),
        "max_attempts": 5, "timeout_s": 60, "ttl_s": 3600, "backoff": {"base_s": 0.5, "max_s": 10},
    }
    assert by_name["py_any"] == {"name": "py_any", "args_schema": {"type": "object"}}


async def test_registration_retries_while_unavailable_and_fails_on_refusal() -> None:
    fake = FakeErrand(unavailable={"task-types": 2}, down={"task-types": 1})
    client = make(fake)

    @client.task("t")
    async def t(args: dict[str, Any], ctx: TaskContext) -> None:
        return None

    async with running(client):
        assert fake.registered
    refused = FakeErrand(register_status=403)
    client2 = errand.Client(url="http://errand.test", token="user", transport=refused.transport())
    client2.tasks["t"] = client.tasks["t"]
    with pytest.raises(errand.Forbidden) as e:
        await Worker(client2).run()
    assert e.value.code == "not_a_worker"


async def test_one_heartbeat_carries_every_lease_and_completions_coalesce() -> None:
    fake = FakeErrand()
    client = make(fake)
    release = asyncio.Event()

    @client.task("t")
    async def t(args: dict[str, Any], ctx: TaskContext) -> int:
        await release.wait()
        return int(args["i"])

    ids = [fake.add("t", {"i": i}) for i in range(6)]
    async with running(client, concurrency=8, lease_s=3) as worker:
        while worker.running < 6:
            await asyncio.sleep(0.01)
        fake.heartbeats.clear()
        await asyncio.sleep(0.7)
        assert fake.heartbeats, "no heartbeat within 0.7 s (interval is 0.5 s)"
        assert {l["task_id"] for l in fake.heartbeats[-1]["leases"]} == set(ids)
        release.set()
        await fake.wait_completions(6)
    assert sorted(c["result"] for c in fake.completions) == list(range(6))
    # All six finished in the same turn of the loop: one call carried them.
    assert fake.complete_calls == 1
    assert worker.stats.succeeded == 6


async def test_claims_ask_for_free_slots_only() -> None:
    fake = FakeErrand()
    client = make(fake)
    release = asyncio.Event()

    @client.task("t")
    async def t(args: dict[str, Any], ctx: TaskContext) -> None:
        await release.wait()

    for _ in range(3):
        fake.add("t")
    async with running(client, concurrency=3, queues=["py"]) as worker:
        while worker.running < 3:
            await asyncio.sleep(0.01)
        claims = len(fake.claims)
        await asyncio.sleep(0.5)
        assert len(fake.claims) == claims, "claimed with no free slot"
        release.set()
        await fake.wait_completions(3)
    first = fake.claims[0]
    assert first["max"] == 3 and first["types"] == ["t"] and first["queues"] == ["py"]
    assert first["lease_s"] == 30


async def test_claims_and_heartbeats_describe_the_worker() -> None:
    fake = FakeErrand()
    client = make(fake)

    @client.task("t")
    async def t(args: dict[str, Any], ctx: TaskContext) -> None:
        await ctx.progress(1, 2)  # a report: a heartbeat carries it soon
        while not fake.heartbeats:
            await asyncio.sleep(0.01)

    fake.add("t")
    async with running(client, concurrency=5) as worker:
        await fake.wait_completions(1)
    expected = {"instance": f"{socket.gethostname()}-{os.getpid()}", "host": socket.gethostname(),
                "language": "python", "concurrency": 5}
    assert worker.info == expected
    assert fake.claims and all(c["worker"] == expected for c in fake.claims)
    assert all(h["worker"] == expected for h in fake.heartbeats)


async def test_reports_are_sent_soon_and_in_order() -> None:
    fake = FakeErrand()
    client = make(fake)
    go_on = asyncio.Event()

    @client.task("t")
    async def t(args: dict[str, Any], ctx: TaskContext) -> None:
        ctx.plan_steps(["a", "b"])
        async with ctx.step("a"):
            await ctx.progress(1, 2, "one")
        await go_on.wait()
        with contextlib.suppress(ValueError):
            async with ctx.step("b"):
                raise ValueError("b broke")

    fake.add("t")
    async with running(client, lease_s=30):
        began = time.monotonic()
        while not any(l.get("steps") for h in fake.heartbeats for l in h["leases"]):
            await asyncio.sleep(0.005)
            assert time.monotonic() - began < 0.4, "the report waited for the regular heartbeat"
        lease = next(l for h in fake.heartbeats for l in h["leases"] if l.get("steps"))
        assert lease["plan"] == ["a", "b"]
        assert lease["steps"] == [{"name": "a", "status": "running"}, {"name": "a", "status": "success"}]
        assert lease["progress"] == {"current": 1, "total": 2, "message": "one"}
        go_on.set()
        await fake.wait_completions(1)
    sent = [s for h in fake.heartbeats for l in h["leases"] for s in l.get("steps", [])]
    sent += fake.completions[0].get("steps", [])
    assert sent[2:] == [{"name": "b", "status": "running"},
                        {"name": "b", "status": "failed", "error": "b broke"}]


async def test_outcomes_become_failure_payloads() -> None:
    fake = FakeErrand()
    client = make(fake)

    @client.task("fatal")
    async def fatal(args: dict[str, Any], ctx: TaskContext) -> None:
        raise errand.Fatal("empty document", kind="empty_content", details={"chars": 0})

    @client.task("retry")
    async def retry(args: dict[str, Any], ctx: TaskContext) -> None:
        raise errand.Retry("upstream busy", retry_in=5)

    @client.task("boom")
    async def boom(args: dict[str, Any], ctx: TaskContext) -> None:
        raise KeyError("missing")

    @client.task("typed")
    async def typed(args: Doc, ctx: TaskContext) -> Doc:
        return Doc(title=args.title.upper(), pages=args.pages)

    ids = {
        "fatal": fake.add("fatal"), "retry": fake.add("retry"), "boom": fake.add("boom"),
        "typed": fake.add("typed", {"title": "t"}), "invalid": fake.add("typed", {"pages": "x"}),
    }
    async with running(client) as worker:
        await fake.wait_completions(5)
    by = {k: fake.completion_of(v) for k, v in ids.items()}
    assert by["fatal"] is not None and by["fatal"]["error"] == {
        "message": "empty document", "kind": "empty_content", "details": {"chars": 0},
        "retryable": False}
    assert by["retry"] is not None and by["retry"]["error"] == {
        "message": "upstream busy", "kind": "retry", "retryable": True, "retry_in_s": 5.0}
    boom_error = by["boom"]["error"] if by["boom"] else {}
    assert boom_error["kind"] == "KeyError" and boom_error["retryable"] is True
    assert boom_error["details"]["type"] == "builtins.KeyError"
    assert "raise KeyError" in boom_error["details"]["traceback"]
    typed_completion = by["typed"] or {}
    assert typed_completion["outcome"] == "success"
    assert typed_completion["result"] == {"title": "T", "pages": 1}
    invalid = by["invalid"]["error"] if by["invalid"] else {}
    assert invalid["kind"] == "invalid_args" and invalid["retryable"] is False
    assert worker.stats.succeeded == 1 and worker.stats.failed == 2 and worker.stats.retried == 2


async def test_fenced_completion_is_reported_to_the_context(caplog: pytest.LogCaptureFixture) -> None:
    fake = FakeErrand()
    client = make(fake)
    seen: list[TaskContext] = []

    @client.task("t")
    async def t(args: dict[str, Any], ctx: TaskContext) -> str:
        seen.append(ctx)
        ctx.on_fenced(lambda c: seen.append(c))
        return "done"

    task_id = fake.add("t")
    fake.fenced.add(task_id)
    caplog.set_level(logging.WARNING, logger="errand")
    async with running(client) as worker:
        while worker.stats.fenced == 0:
            await asyncio.sleep(0.01)
    assert seen[0].fenced and len(seen) == 2
    assert worker.stats.succeeded == 0
    record = next(r for r in caplog.records if "completion refused" in r.getMessage())
    assert "the attempt was superseded" in record.getMessage()
    assert getattr(record, "task_id") == task_id


async def test_an_unconfirmed_completion_is_neither_counted_nor_fenced(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = FakeErrand()
    client = make(fake)
    seen: list[TaskContext] = []

    @client.task("t")
    async def t(args: dict[str, Any], ctx: TaskContext) -> str:
        seen.append(ctx)
        return "done"

    task_id = fake.add("t")
    fake.unconfirmed.add(task_id)
    caplog.set_level(logging.WARNING, logger="errand")
    async with running(client) as worker:
        while worker.stats.unconfirmed == 0:
            await asyncio.sleep(0.01)
    assert not seen[0].fenced
    assert (worker.stats.succeeded, worker.stats.fenced) == (0, 0)
    assert fake.complete_calls == 1, "it is not sent again"
    assert any("completion not confirmed" in r.getMessage() for r in caplog.records)


async def test_cancel_request_sets_the_flag_and_cancelled_error_completes_cancelled() -> None:
    fake = FakeErrand()
    client = make(fake)
    seen_at: list[float] = []

    @client.task("t")
    async def t(args: dict[str, Any], ctx: TaskContext) -> None:
        await ctx.wait_cancelled()
        seen_at.append(time.monotonic())
        assert ctx.cancelled
        ctx.raise_if_cancelled()

    task_id = fake.add("t", {})
    async with running(client, lease_s=30) as worker:
        while worker.running < 1:
            await asyncio.sleep(0.01)
        asked = time.monotonic()
        fake.cancel.add(task_id)
        await fake.wait_completions(1)
    assert seen_at[0] - asked < 1.0
    assert fake.completions[0]["outcome"] == "cancelled"
    assert worker.stats.cancelled == 1


async def test_a_task_ignoring_cancellation_is_cancelled_after_the_grace() -> None:
    fake = FakeErrand()
    client = make(fake)

    @client.task("t")
    async def t(args: dict[str, Any], ctx: TaskContext) -> None:
        await asyncio.sleep(60)

    task_id = fake.add("t")
    fake.cancel.add(task_id)
    async with running(client, cancel_grace_s=0.3):
        await fake.wait_completions(1)
    assert fake.completions[0]["outcome"] == "cancelled"


async def test_lost_lease_cancels_the_task_and_never_completes_it() -> None:
    fake = FakeErrand()
    client = make(fake)
    stopped = asyncio.Event()

    @client.task("t")
    async def t(args: dict[str, Any], ctx: TaskContext) -> None:
        try:
            await asyncio.sleep(60)
        finally:
            stopped.set()

    task_id = fake.add("t")
    fake.not_held.add(task_id)
    async with running(client, lease_s=3) as worker:
        await asyncio.wait_for(stopped.wait(), 3)
        await asyncio.sleep(0.1)
    assert worker.stats.lost == 1 and not fake.completions


async def test_stop_drains_then_releases_what_still_runs() -> None:
    fake = FakeErrand()
    client = make(fake)

    @client.task("quick")
    async def quick(args: dict[str, Any], ctx: TaskContext) -> str:
        await asyncio.sleep(0.1)
        return "ok"

    @client.task("slow")
    async def slow(args: dict[str, Any], ctx: TaskContext) -> None:
        await asyncio.sleep(60)

    quick_id, slow_id = fake.add("quick"), fake.add("slow")
    worker = Worker(client, drain_timeout=0.5)
    run = asyncio.create_task(worker.run())
    while worker.running < 2:
        await asyncio.sleep(0.01)
    claims = len(fake.claims)
    worker.stop()
    stats = await asyncio.wait_for(run, 5)
    assert len(fake.claims) <= claims + 1
    assert (fake.completion_of(quick_id) or {})["outcome"] == "success"
    assert (fake.completion_of(slow_id) or {})["outcome"] == "released"
    assert stats.released == 1 and stats.succeeded == 1


async def test_completions_are_retried_through_an_outage() -> None:
    fake = FakeErrand(down={"complete": 2}, unavailable={"complete": 1, "claim": 2})
    client = make(fake)

    @client.task("t")
    async def t(args: dict[str, Any], ctx: TaskContext) -> str:
        return "ok"

    fake.add("t")
    async with running(client) as worker:
        await fake.wait_completions(1, timeout=10)
    assert worker.stats.succeeded == 1


_leak: contextvars.ContextVar[str | None] = contextvars.ContextVar("leak", default=None)


async def test_context_never_leaks_into_the_next_task() -> None:
    fake = FakeErrand()
    client = make(fake)
    seen: list[tuple[str | None, str | None, str | None]] = []

    @client.task("t")
    async def t(args: dict[str, Any], ctx: TaskContext) -> None:
        current = errand.current()
        assert current is ctx
        seen.append((ctx.user_id, current.user_id, _leak.get()))
        _leak.set(ctx.user_id)

    fake.add("t", context=ALICE)
    fake.add("t", context=None)
    assert errand.current() is None
    async with running(client, concurrency=1):
        await fake.wait_completions(2)
    assert seen == [("alice", "alice", None), (None, None, None)]
    assert errand.current() is None and _leak.get() is None


async def test_context_fields_come_from_the_assignment() -> None:
    fake = FakeErrand()
    client = make(fake)
    got: dict[str, Any] = {}

    @client.task("t")
    async def t(args: dict[str, Any], ctx: TaskContext) -> None:
        got.update(user=ctx.user_id, tenant=ctx.tenant, roles=ctx.roles, rid=ctx.request_id,
                   cid=ctx.correlation_id, headers=dict(ctx.headers), cred=ctx.credential,
                   attempt=ctx.attempt, name=ctx.name, deadline=ctx.lease_deadline)

    fake.add("t", context=ALICE)
    async with running(client):
        await fake.wait_completions(1)
    assert got["user"] == "alice" and got["tenant"] == "acme" and got["roles"] == ("editor",)
    assert got["rid"] == "req-1" and got["cid"] == "corr-1" and got["headers"] == {"x-client": "web"}
    assert got["cred"] == "tok" and got["attempt"] == 1 and got["name"] == "t"
    assert got["deadline"] is not None


async def test_worker_logs_carry_the_user(caplog: pytest.LogCaptureFixture) -> None:
    fake = FakeErrand()
    client = make(fake)

    @client.task("t")
    async def t(args: dict[str, Any], ctx: TaskContext) -> None:
        logging.getLogger("app").info("inside")

    fake.add("t", context=ALICE)
    caplog.set_level(logging.INFO)
    caplog.handler.addFilter(errand.ContextFilter())
    async with running(client):
        await fake.wait_completions(1)
    messages = {r.getMessage().split(" ")[0]: r for r in caplog.records}
    for word in ("started", "succeeded", "inside"):
        assert getattr(messages[word], "user_id") == "alice", word
    assert "for user alice" in messages["started"].getMessage()


async def test_sigterm_to_the_worker_command_drains_and_releases(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import argparse
    import json
    import os
    import signal

    from errand.__main__ import _work

    fake = FakeErrand()
    client = make(fake)
    started = asyncio.Event()

    @client.task("slow")
    async def slow(args: dict[str, Any], ctx: TaskContext) -> None:
        started.set()
        await asyncio.sleep(60)

    task_id = fake.add("slow")
    options = argparse.Namespace(concurrency=2, queues=None, drain_timeout=0.3, lease=30.0)
    work = asyncio.create_task(_work(client, options))
    await asyncio.wait_for(started.wait(), 5)
    os.kill(os.getpid(), signal.SIGTERM)
    assert await asyncio.wait_for(work, 5) == 0
    assert (fake.completion_of(task_id) or {})["outcome"] == "released"
    stats = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert stats["released"] == 1 and stats["claimed"] == 1


async def test_a_failing_loop_stops_the_worker_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeErrand()
    client = make(fake)

    @client.task("t")
    async def t(args: dict[str, Any], ctx: TaskContext) -> None:
        return None

    async def broken(self: Worker) -> None:
        raise RuntimeError("bug")

    monkeypatch.setattr(Worker, "_claim_loop", broken)
    with pytest.raises(errand.ErrandError, match="bug"):
        await asyncio.wait_for(Worker(client).run(), 5)
