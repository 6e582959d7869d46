from __future__ import annotations

from collections.abc import AsyncIterator

from errand.sse import SseEvent, parse_sse


async def lines(*items: str) -> AsyncIterator[str]:
    for item in items:
        yield item


async def test_fields_comments_and_dispatch() -> None:
    events = [e async for e in parse_sse(lines(
        ": keep-alive", "", "event: status", "data: {\"a\":", "data:1}", "id: 7", "",
        "data: plain\r", "", "event: status", "data: cut off",
    ))]
    assert events == [SseEvent("status", '{"a":\n1}'), SseEvent("message", "plain")]
