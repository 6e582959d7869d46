"""FastAPI (or any Starlette-style request): ``forward(request)`` hands the caller's identity to
``client.submit`` so that the task runs as the caller.

    @app.post("/process")
    async def process(body: Doc, request: Request) -> dict[str, str]:
        handle = await client.submit("process_doc", body, **forward(request))
        return {"task_id": handle.id, "status_url": handle.status_url}

This module imports nothing of FastAPI; install the extra ``errand[fastapi]`` for FastAPI
itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, TypedDict


class _HasHeaders(Protocol):
    @property
    def headers(self) -> Mapping[str, str]: ...


class Forwarded(TypedDict, total=False):
    """Keyword arguments of ``Client.submit``."""

    token: str
    request_id: str
    correlation_id: str
    traceparent: str


def forward(request: _HasHeaders) -> Forwarded:
    """The caller's bearer token (``Authorization: Bearer …``), ``x-request-id``,
    ``x-correlation-id`` and ``traceparent``, as ``submit`` keyword arguments; only those the
    request carries. errand verifies the token and captures the user, tenant and roles from
    it; a request without one submits with the client's own token."""
    headers = request.headers
    forwarded: Forwarded = {}
    scheme, _, credentials = (headers.get("authorization") or "").partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        forwarded["token"] = credentials.strip()
    if value := headers.get("x-request-id"):
        forwarded["request_id"] = value
    if value := headers.get("x-correlation-id"):
        forwarded["correlation_id"] = value
    if value := headers.get("traceparent"):
        forwarded["traceparent"] = value
    return forwarded
