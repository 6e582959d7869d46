from __future__ import annotations

import logging
import subprocess
import sys

from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from errand import ContextFilter, TaskContext
from errand.context import _current
from errand.fastapi import Forwarded, forward
from errand.logs import DEFAULT_FORMAT


def make_record() -> logging.LogRecord:
    return logging.LogRecord("app", logging.INFO, __file__, 1, "hello", None, None)


def test_context_filter_inside_and_outside_a_task() -> None:
    f = ContextFilter()
    outside = make_record()
    f.filter(outside)
    fields = ("task_id", "user_id", "tenant", "correlation_id")
    assert [getattr(outside, k) for k in fields] == ["-"] * 4
    token = _current.set(TaskContext(task_id="t1", name="n", user_id="alice", correlation_id="c"))
    try:
        inside = make_record()
        f.filter(inside)
        given = make_record()
        setattr(given, "task_id", "other")
        f.filter(given)
    finally:
        _current.reset(token)
    assert [getattr(inside, k) for k in fields] == ["t1", "alice", "-", "c"]
    assert getattr(given, "task_id") == "other"
    line = logging.Formatter(DEFAULT_FORMAT).format(inside)
    assert "task_id=t1 user_id=alice tenant=- correlation_id=c" in line


def test_forward_takes_only_what_is_present() -> None:
    app = FastAPI()

    @app.get("/")
    async def route(request: Request) -> dict[str, str]:
        forwarded: Forwarded = forward(request)
        return {k: str(v) for k, v in forwarded.items()}

    http = TestClient(app)
    full = http.get("/", headers={"authorization": "Bearer tok", "x-request-id": "r",
                                   "x-correlation-id": "c", "traceparent": "00-a-b-01"}).json()
    assert full == {"token": "tok", "request_id": "r", "correlation_id": "c", "traceparent": "00-a-b-01"}
    assert http.get("/").json() == {}
    assert http.get("/", headers={"authorization": "Basic abc"}).json() == {}


def test_import_errand_does_not_import_fastapi() -> None:
    code = "import sys, errand; import errand.fastapi; assert 'fastapi' not in sys.modules, 'imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
