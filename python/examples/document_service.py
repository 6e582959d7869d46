"""A document-processing service done right (seed 004), on FastAPI and errand.

``POST /process/document`` answers 202 at once with the task id and ``status_url``, an
absolute URL of errand's ``/v1/tasks/{id}``: the client polls it (or follows ``events_url``)
and sees the real outcome, not a hopeful 200. The pipeline runs as an errand task *as the
caller* (``forward(request)``): ``file_node_creation → embedding_generation → indexing →
freshness_analysis``, declared up front and each run in ``ctx.step``. A failure at a step
shows that step ``failed``, the later ones ``skipped``, and the error's message, kind and
details in the record; empty content fails with kind ``empty_content``, and content
``FAIL_AT:<step>`` fails at that step (to see it).

Everything the task writes is under ``$DOCS_DATA_DIR`` (default ``./docs-data``), per
tenant and user taken from the task's context, never from the arguments, and keyed by the
document id so that a redelivered task rewrites rather than duplicates.

Run, beside ``errand serve`` (with the same data dir for the tokens):

    export ERRAND_URL=http://127.0.0.1:8080
    ERRAND_TOKEN=$(errand token --worker docs) python examples/document_service.py worker
    python examples/document_service.py api          # uvicorn on 127.0.0.1:$PORT (8000)

    curl -s localhost:8000/process/document -H "authorization: Bearer $(errand token --user alice)" \\
      -H 'content-type: application/json' \\
      -d '{"document_id": "doc-1", "project_id": "p", "title": "Notes", "content": "Otters hold hands."}'
    # {"task_id": "…", "status_url": "http://127.0.0.1:8080/v1/tasks/…", "events_url": "…", "status": "pending"}
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

import errand
from errand.fastapi import forward

STEPS = ["file_node_creation", "embedding_generation", "indexing", "freshness_analysis"]
DATA_DIR = Path(os.environ.get("DOCS_DATA_DIR", "docs-data"))
DIMENSIONS = 64

client = errand.Client()


class Document(BaseModel):
    document_id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$")
    project_id: str = Field(min_length=1, max_length=128)
    title: str = Field(min_length=1, max_length=512)
    content: str
    metadata: dict[str, Any] = Field(default_factory=dict)


def _safe(part: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", part)[:128] or "_"


def _user_dir(ctx: errand.TaskContext) -> Path:
    if ctx.user_id is None:
        raise errand.Fatal("a document belongs to a user: submit it with a user's token",
                           kind="no_user")
    path = DATA_DIR / _safe(ctx.tenant or "-") / _safe(ctx.user_id)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _embed(text: str) -> list[float]:
    """A deterministic hashed bag-of-words vector (no model download)."""
    vector = [0.0] * DIMENSIONS
    for term in re.findall(r"\w+", text.lower()):
        vector[int(hashlib.blake2b(term.encode(), digest_size=2).hexdigest(), 16) % DIMENSIONS] += 1
    norm = sum(v * v for v in vector) ** 0.5 or 1.0
    return [round(v / norm, 6) for v in vector]


def _write_json(path: Path, value: Any) -> None:
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(value))
    temporary.replace(path)


@client.task("document_process", queue="documents", max_attempts=3, timeout=120,
             backoff=(1, 30))
async def process_document(doc: Document, ctx: errand.TaskContext) -> dict[str, Any]:
    """The pipeline, as the submitting user; each step fails loudly with its reason."""
    ctx.plan_steps(STEPS)
    inject = doc.content[len("FAIL_AT:"):].strip() if doc.content.startswith("FAIL_AT:") else None

    def check(step: str) -> None:
        if inject == step:
            raise errand.Fatal(f"failure injected at {step}", kind="injected_failure",
                               details={"step": step, "document_id": doc.document_id})

    user_dir = _user_dir(ctx)
    async with ctx.step("file_node_creation"):
        check("file_node_creation")
        node = {"document_id": doc.document_id, "project_id": doc.project_id, "title": doc.title,
                "task_id": ctx.task_id, "request_id": ctx.request_id, "user_id": ctx.user_id}
        _write_json(user_dir / f"{_safe(doc.document_id)}.node.json", node)

    async with ctx.step("embedding_generation"):
        check("embedding_generation")
        chunks = [c for c in re.split(r"\n\s*\n", doc.content) if c.strip()]
        if not chunks:
            raise errand.Fatal("the document has no content to embed", kind="empty_content",
                               details={"document_id": doc.document_id, "chars": len(doc.content)})
        vectors = []
        for i, chunk in enumerate(chunks, 1):
            vectors.append(_embed(chunk))
            await ctx.progress(i, len(chunks), f"embedded chunk {i} of {len(chunks)}")
            await asyncio.sleep(0)

    async with ctx.step("indexing"):
        check("indexing")
        index_path = user_dir / "index.json"
        index = json.loads(index_path.read_text()) if index_path.exists() else {}
        index[doc.document_id] = {"title": doc.title, "chunks": chunks, "vectors": vectors,
                                  "task_id": ctx.task_id, "superseded": False}
        _write_json(index_path, index)

    async with ctx.step("freshness_analysis"):
        check("freshness_analysis")
        superseded = [other for other, entry in index.items()
                      if other != doc.document_id and entry["title"] == doc.title
                      and not entry["superseded"]]
        for other in superseded:
            index[other]["superseded"] = True
        _write_json(index_path, index)

    return {"document_id": doc.document_id, "chunks": len(chunks), "superseded": superseded}


def make_app() -> Any:
    """The FastAPI app: it submits as the caller and never runs the work itself."""
    app = FastAPI(title="documents")

    @app.exception_handler(errand.ApiError)
    async def errand_refused(request: Request, exc: errand.ApiError) -> JSONResponse:
        # errand's own answer (401 bad token, 422 invalid args, 503 …), passed on as it is.
        return JSONResponse({"error": {"code": exc.code, "message": exc.message}},
                            status_code=exc.status)

    @app.exception_handler(errand.Unreachable)
    async def errand_down(request: Request, exc: errand.Unreachable) -> JSONResponse:
        return JSONResponse({"error": {"code": "errand_unreachable", "message": str(exc)}},
                            status_code=503)

    @app.post("/process/document", status_code=202)
    async def submit(doc: Document, request: Request) -> dict[str, str]:
        caller = forward(request)
        if "token" not in caller:
            # Never fall back to this process's own token: the work is the caller's.
            raise HTTPException(401, "a bearer token is required")
        # The same document submitted again while its task is live is that task.
        digest = hashlib.sha256(doc.model_dump_json().encode()).hexdigest()[:32]
        handle = await client.submit(process_document, doc, key=f"doc-{digest}", **caller)
        return {"task_id": handle.id, "status_url": handle.status_url,
                "events_url": handle.events_url, "status": handle.status or "pending"}

    return app


def main(argv: list[str]) -> int:
    command = argv[1] if len(argv) > 1 else ""
    if command == "worker":
        errand.configure_logging()
        worker = errand.Worker(client, concurrency=int(os.environ.get("CONCURRENCY", "16")),
                               queues=["documents"])
        stats = asyncio.run(worker.run_until_signalled())
        print(json.dumps(stats.as_dict()))
        return 0
    if command == "api":
        import uvicorn

        uvicorn.run(make_app(), host="127.0.0.1", port=int(os.environ.get("PORT", "8000")))
        return 0
    print(f"usage: {argv[0]} worker|api", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
