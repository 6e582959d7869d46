"""A FastAPI app that submits as its caller (forward(request)), for the integration tests."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request

import errand
from errand.fastapi import forward

app = FastAPI()
client = errand.Client()


@app.get("/health")
async def health() -> dict[str, bool]:
    return {"ok": True}


@app.post("/seen", status_code=202)
async def submit_seen(body: dict[str, Any], request: Request) -> dict[str, str]:
    handle = await client.submit("it_seen", body, **forward(request))
    return {"task_id": handle.id, "status_url": handle.status_url}
