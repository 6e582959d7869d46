"""A Server-Sent Events parser for errand's event streams (``event: status`` / ``data: <JSON>``)."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass


@dataclass(frozen=True)
class SseEvent:
    """One dispatched event: its name (``message`` when none was given) and its data."""

    event: str
    data: str


async def parse_sse(lines: AsyncIterable[str]) -> AsyncIterator[SseEvent]:
    """The events of a stream given line by line (without line endings), per the SSE rules:
    ``data:`` lines accumulate (joined with newlines), a blank line dispatches, lines starting
    with ``:`` are comments (keep-alives), unknown fields are ignored. An event still being
    accumulated when the stream ends is dropped, as the standard says."""
    event = ""
    data: list[str] = []
    async for raw in lines:
        line = raw.rstrip("\r")
        if not line:
            if data:
                yield SseEvent(event or "message", "\n".join(data))
            event, data = "", []
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if field == "data":
            data.append(value)
        elif field == "event":
            event = value
