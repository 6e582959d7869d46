"""Submitting, handles, the event stream and errors, against httpx.MockTransport."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from pydantic import BaseModel

import errand

Handler = Callable[[httpx.Request], httpx.Response]


def client_for(handler: Handler, token: str | None = "service-token") -> errand.Client:
    transport = httpx.MockTransport(handler)
    return errand.Client(url="http://errand.test/", token=token, transport=transport,
                         sync_transport=transport)


def submitted(task_id: str = "t1") -> httpx.Response:
    return httpx.Response(202, json={"id": task_id, "status": "pending",
                                     "status_url": f"/v1/tasks/{task_id}",
                                     "events_url": f"/v1/tasks/{task_id}/events",
                                     "deduplicated": False})


class Args(BaseModel):
    title: str
    tags: list[str] = []


async def test_submit_sends_the_callers_identity_and_returns_absolute_urls() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return submitted()

    client = client_for(handler)
    handle = await client.submit(
        "py_ingest", Args(title="t"), token="alice-token", key="k1", delay_s=2,
        max_attempts=4, timeout_s=9, request_id="req-1", correlation_id="corr-1",
        traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        headers={"x-client": "web"},
    )
    request = seen[0]
    assert request.method == "POST" and request.url == "http://errand.test/v1/tasks"
    assert json.loads(request.content) == {
        "name": "py_ingest", "args": {"title": "t", "tags": []}, "key": "k1", "delay_s": 2,
        "max_attempts": 4, "timeout_s": 9}
    assert request.headers["authorization"] == "Bearer alice-token"
    assert request.headers["x-request-id"] == "req-1"
    assert request.headers["x-correlation-id"] == "corr-1"
    assert request.headers["traceparent"].startswith("00-0af7")
    assert request.headers["x-client"] == "web"
    assert handle.id == "t1" and handle.status == "pending"
    assert handle.status_url == "http://errand.test/v1/tasks/t1"
    assert handle.events_url == "http://errand.test/v1/tasks/t1/events"


async def test_submit_defaults_to_the_clients_token_and_dict_args() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return submitted()

    await client_for(handler).submit("t", {"a": 1})
    assert seen[0].headers["authorization"] == "Bearer service-token"
    assert json.loads(seen[0].content) == {"name": "t", "args": {"a": 1}}


@pytest.mark.parametrize(
    ("status", "cls", "code"),
    [(400, errand.BadRequest, "invalid_body"), (401, errand.Unauthorized, "token_expired"),
     (403, errand.Forbidden, "forbidden"), (404, errand.NotFound, "not_found"),
     (409, errand.Conflict, "wrong_state"), (422, errand.Unprocessable, "invalid_args"),
     (503, errand.Unavailable, "store_unavailable"), (500, errand.ApiError, "internal")],
)
async def test_error_answers_are_typed(status: int, cls: type[errand.ApiError], code: str) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json={"error": {"code": code, "message": "nope"}})

    with pytest.raises(cls) as e:
        await client_for(handler).submit("t", {})
    assert type(e.value) is cls
    assert (e.value.status, e.value.code, e.value.message) == (status, code, "nope")


async def test_an_error_without_a_json_body_is_still_typed() -> None:
    with pytest.raises(errand.Unavailable) as e:
        await client_for(lambda r: httpx.Response(503, text="bad gateway")).submit("t", {})
    assert e.value.code == "http_503" and e.value.message == "bad gateway"


async def test_unreachable_is_not_a_bare_httpx_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    with pytest.raises(errand.Unreachable) as e:
        await client_for(handler).submit("t", {})
    assert isinstance(e.value.__cause__, httpx.ConnectError)


def test_submit_sync_works_from_a_thread_without_a_loop() -> None:
    seen: list[httpx.Request] = []
    result: list[errand.TaskHandle | BaseException] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return submitted("t9")

    client = client_for(handler)

    def call() -> None:
        try:
            result.append(client.submit_sync("t", {"x": 1}, token="bob", request_id="r"))
        except BaseException as e:  # noqa: BLE001 - reported below
            result.append(e)

    thread = threading.Thread(target=call)
    thread.start()
    thread.join(5)
    handle = result[0]
    assert isinstance(handle, errand.TaskHandle) and handle.id == "t9"
    assert seen[0].headers["authorization"] == "Bearer bob"
    assert seen[0].headers["x-request-id"] == "r"


def test_submit_sync_raises_typed_errors() -> None:
    client = client_for(lambda r: httpx.Response(422, json={"error": {"code": "invalid_args", "message": "m"}}))
    with pytest.raises(errand.Unprocessable):
        client.submit_sync("t", {})


def record(status: str, **more: Any) -> dict[str, Any]:
    return {"id": "t1", "name": "t", "status": status, **more}


def sse(*records: dict[str, Any], keepalive: bool = True) -> bytes:
    out = ""
    for r in records:
        if keepalive:
            out += ": keep-alive\n\n"
        text = json.dumps(r, indent=1)  # several lines: data lines are joined with "\n"
        out += "event: status\n" + "".join(f"data: {line}\n" for line in text.splitlines()) + "\n"
    return out.encode()


async def test_events_parse_the_stream_and_end_at_a_terminal_record() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        body = sse(record("pending"), record("running", progress={"current": 1, "total": 2}),
                   record("success", result=1), record("running"))
        return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})

    handle = client_for(handler).task_handle("t1", token="alice")
    states = [r["status"] async for r in handle.events()]
    assert states == ["pending", "running", "success"]
    assert seen[0].headers["authorization"] == "Bearer alice"
    assert seen[0].url.path == "/v1/tasks/t1/events"


async def test_wait_follows_the_stream() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=sse(record("running"), record("failed", error={"kind": "x"})))

    final = await client_for(handler).task_handle("t1").wait(timeout=5)
    assert final["status"] == "failed"


async def test_wait_polls_when_the_stream_drops() -> None:
    polls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/events"):
            return httpx.Response(200, content=sse(record("running")))  # ends before terminal
        polls.append(1)
        return httpx.Response(200, json=record("running" if len(polls) < 2 else "success"))

    final = await client_for(handler).task_handle("t1").wait(timeout=5)
    assert final["status"] == "success" and len(polls) == 2


async def test_wait_raises_timeout_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/events"):
            return httpx.Response(429, json={"error": {"code": "too_many_streams", "message": "m"}})
        return httpx.Response(200, json=record("running"))

    with pytest.raises(TimeoutError):
        await client_for(handler).task_handle("t1").wait(timeout=0.3)


async def test_wait_on_another_users_task_is_not_found() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json={"error": {"code": "not_found", "message": "no such task"}})

    with pytest.raises(errand.NotFound):
        await client_for(handler).task_handle("t1").wait(timeout=2)


async def test_get_cancel_and_retry() -> None:
    seen: list[tuple[str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, request.url.path))
        if request.url.path.endswith("/retry"):
            return httpx.Response(409, json={"error": {"code": "wrong_state", "message": "running"}})
        if request.method == "POST":
            return httpx.Response(202, json=record("running", cancel_requested=True))
        return httpx.Response(200, json=record("running"))

    handle = client_for(handler).task_handle("t1")
    assert (await handle.get())["status"] == "running"
    assert (await handle.cancel())["cancel_requested"] is True
    with pytest.raises(errand.Conflict):
        await handle.retry()
    assert seen == [("GET", "/v1/tasks/t1"), ("POST", "/v1/tasks/t1/cancel"),
                    ("POST", "/v1/tasks/t1/retry")]


def test_defaults_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ERRAND_URL", "http://elsewhere:9000/")
    monkeypatch.setenv("ERRAND_TOKEN", "env-token")
    client = errand.Client()
    assert client.url == "http://elsewhere:9000" and client.token == "env-token"
