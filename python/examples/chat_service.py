"""A chat backend that persists conversations in the background as the right user (seed 000).

``POST /chat {"session_id", "message"}`` answers at once and hands the persistence of the
turn to an errand task submitted as the caller (``forward(request)``). The task appends the
turn to ``$CHAT_DATA_DIR/<tenant>/<user>.jsonl`` (default ``./chat-data``), writing the user id
it finds in its context — never one from its arguments, so no code path can attribute a turn
to the wrong user — once per task id (a redelivered task does not duplicate the turn).
``GET /conversations[?session_id=…]`` reads the caller's own file only.

The API verifies the caller's bearer token itself (HS256 with errand's secret, from
``$ERRAND_JWT_SECRETS`` or ``$ERRAND_DATA_DIR/jwt.secret``) to know whose conversations to read;
submitting needs no verification here, errand does it.

Run, beside ``errand serve`` (started with ``--data-dir ./errand-data``):

    export ERRAND_URL=http://127.0.0.1:8080 ERRAND_DATA_DIR=./errand-data
    ERRAND_TOKEN=$(errand token --worker chat) python examples/chat_service.py worker
    python examples/chat_service.py api              # uvicorn on 127.0.0.1:$PORT (8001)

    TOKEN=$(errand token --user alice)
    curl -s localhost:8001/chat -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' \\
      -d '{"session_id": "s1", "message": "hello"}'
    curl -s localhost:8001/conversations -H "authorization: Bearer $TOKEN"
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from pydantic import BaseModel, Field

import errand
from errand.fastapi import forward

DATA_DIR = Path(os.environ.get("CHAT_DATA_DIR", "chat-data"))

client = errand.Client()


class Turn(BaseModel):
    session_id: str = Field(min_length=1, max_length=128)
    messages: list[dict[str, str]]


def _safe(part: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", part)[:128] or "_"


class Chat(BaseModel):
    session_id: str = Field(min_length=1, max_length=128)
    message: str = Field(min_length=1, max_length=10_000)


def history_file(user_id: str, tenant: str | None) -> Path:
    return DATA_DIR / _safe(tenant or "-") / f"{_safe(user_id)}.jsonl"


@client.task("chat_persist_turn", queue="chat", max_attempts=5, timeout=30)
async def persist_turn(turn: Turn, ctx: errand.TaskContext) -> dict[str, Any]:
    if ctx.user_id is None:
        raise errand.Fatal("a conversation belongs to a user", kind="no_user")
    path = history_file(ctx.user_id, ctx.tenant)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and any(json.loads(line)["task_id"] == ctx.task_id
                             for line in path.read_text().splitlines() if line):
        return {"appended": 0, "duplicate": True}
    entry = {"task_id": ctx.task_id, "user_id": ctx.user_id, "tenant": ctx.tenant,
             "session_id": turn.session_id, "messages": turn.messages,
             "request_id": ctx.request_id, "at": time.time()}
    with path.open("a") as f:
        f.write(json.dumps(entry) + "\n")
    return {"appended": len(turn.messages), "duplicate": False}


def _secrets() -> list[bytes]:
    listed = os.environ.get("ERRAND_JWT_SECRETS") or os.environ.get("ERRAND_JWT_SECRET")
    if listed:
        return [s.strip().encode() for s in listed.split(",") if s.strip()]
    path = Path(os.environ.get("ERRAND_DATA_DIR", "errand-data")) / "jwt.secret"
    return [path.read_text().strip().encode()]


def _b64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def verified_claims(token: str, secrets: list[bytes]) -> dict[str, Any] | None:
    """The claims of an unexpired HS256 token signed with one of ``secrets``, else None."""
    try:
        header, payload, signature = token.split(".")
        if json.loads(_b64(header)).get("alg") != "HS256":
            return None
        signed = f"{header}.{payload}".encode()
        if not any(hmac.compare_digest(hmac.new(s, signed, hashlib.sha256).digest(), _b64(signature))
                   for s in secrets):
            return None
        claims: dict[str, Any] = json.loads(_b64(payload))
    except (ValueError, json.JSONDecodeError):
        return None
    if not isinstance(claims.get("sub"), str) or float(claims.get("exp", 0)) < time.time():
        return None
    return claims


def make_app() -> Any:
    app = FastAPI(title="chat")
    secrets = _secrets()

    def caller(request: Request) -> dict[str, Any]:
        token = forward(request).get("token")
        claims = verified_claims(token, secrets) if token else None
        if claims is None:
            raise HTTPException(401, "a valid bearer token is required")
        return claims

    @app.post("/chat")
    async def chat(body: Chat, request: Request) -> dict[str, Any]:
        caller(request)
        reply = f"You said: {body.message}"
        turn = Turn(session_id=body.session_id, messages=[
            {"role": "user", "content": body.message}, {"role": "assistant", "content": reply}])
        handle = await client.submit(persist_turn, turn, **forward(request))
        return {"reply": reply, "persist_task": handle.id, "status_url": handle.status_url}

    @app.get("/conversations")
    async def conversations(request: Request, session_id: str | None = None) -> dict[str, Any]:
        claims = caller(request)
        path = history_file(claims["sub"], claims.get("tenant"))
        entries = [json.loads(l) for l in path.read_text().splitlines() if l] if path.exists() else []
        return {"user_id": claims["sub"], "turns": [
            e for e in entries if session_id is None or e["session_id"] == session_id]}

    return app


def main(argv: list[str]) -> int:
    command = argv[1] if len(argv) > 1 else ""
    if command == "worker":
        errand.configure_logging()
        stats = asyncio.run(errand.Worker(client, queues=["chat"]).run_until_signalled())
        print(json.dumps(stats.as_dict()))
        return 0
    if command == "api":
        import uvicorn

        uvicorn.run(make_app(), host="127.0.0.1", port=int(os.environ.get("PORT", "8001")))
        return 0
    print(f"usage: {argv[0]} worker|api", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
