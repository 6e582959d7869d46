"""TaskContext on its own: credential expiry, reports, steps, cancellation, fencing."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

import errand
from errand import TaskContext


def test_credential_only_while_unexpired() -> None:
    now = datetime.now(timezone.utc)
    live = TaskContext(task_id="t", name="n", credential="c", credential_expires_at=now + timedelta(hours=1))
    dead = TaskContext(task_id="t", name="n", credential="c", credential_expires_at=now - timedelta(seconds=1))
    forever = TaskContext(task_id="t", name="n", credential="c")
    assert live.credential == "c" and dead.credential is None and forever.credential == "c"
    assert "c" not in repr(live)


async def test_steps_progress_and_plan_are_buffered_in_order() -> None:
    reported: list[int] = []
    ctx = TaskContext(task_id="t", name="n", on_report=lambda: reported.append(1))
    ctx.plan_steps(["a", "b"])
    async with ctx.step("a"):
        await ctx.progress(1, 3)
    await ctx.progress(2, 3, "x" * 5000)
    with pytest.raises(errand.Fatal):
        async with ctx.step("b"):
            raise errand.Fatal("broken", kind="k")
    reports = ctx._reports.take()
    assert reports["plan"] == ["a", "b"]
    assert reports["steps"] == [
        {"name": "a", "status": "running"}, {"name": "a", "status": "success"},
        {"name": "b", "status": "running"}, {"name": "b", "status": "failed", "error": "broken"}]
    assert reports["progress"]["current"] == 2 and len(reports["progress"]["message"]) == 1024
    assert len(reported) == 7
    assert not ctx._reports.pending()


def test_undelivered_reports_go_back_before_newer_ones() -> None:
    ctx = TaskContext(task_id="t", name="n")
    ctx._step_change("a", "running")
    taken = ctx._reports.take()
    ctx._step_change("a", "success")
    ctx._reports.restore(taken)
    assert [s["status"] for s in ctx._reports.take()["steps"]] == ["running", "success"]


async def test_cancellation_and_fencing_flags() -> None:
    ctx = TaskContext(task_id="t", name="n")
    assert not ctx.cancelled
    ctx.raise_if_cancelled()
    ctx._request_cancel()
    await ctx.wait_cancelled()
    assert ctx.cancelled
    called: list[TaskContext] = []
    ctx.on_fenced(called.append)
    ctx._mark_fenced()
    assert ctx.fenced and called == [ctx]


def test_current_is_none_outside_a_task() -> None:
    assert errand.current() is None
