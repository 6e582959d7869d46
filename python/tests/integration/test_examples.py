"""The examples, each run with its documented command against a real errand."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx

import errand
from tests.integration.conftest import Errand


def wait_for(text: str, read: Any, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while text not in read():
        assert time.monotonic() < deadline, f"no {text!r} in time"
        time.sleep(0.05)


async def test_document_service(errand_server: Errand) -> None:
    data = errand_server.root / "docs"
    env = {"DOCS_DATA_DIR": str(data)}
    worker = errand_server.example("docs-worker", "document_service.py", "worker", env)
    api = errand_server.example_api("docs-api", "document_service.py", env)
    wait_for("worker started", worker.err)
    alice = errand_server.user_token("alice", "acme")
    client = errand.Client(url=errand_server.url)

    async with httpx.AsyncClient(base_url=api, timeout=30) as http:
        async def process(content: str, doc_id: str) -> dict[str, Any]:
            r = await http.post("/process/document", json={
                "document_id": doc_id, "project_id": "p", "title": "Notes", "content": content},
                headers={"authorization": f"Bearer {alice}", "x-request-id": f"req-{doc_id}"})
            assert r.status_code == 202, r.text
            answer: dict[str, Any] = r.json()
            assert answer["status_url"].startswith(errand_server.url + "/v1/tasks/")
            return await client.task_handle(answer["task_id"], token=alice).wait(timeout=30)

        good = await process("Otters hold hands.\n\nThey keep a favourite rock.", "doc-1")
        injected = await process("FAIL_AT:indexing", "doc-2")
        empty = await process("   ", "doc-3")
        unauthenticated = await http.post("/process/document", json={
            "document_id": "d", "project_id": "p", "title": "t", "content": "c"})

    assert good["status"] == "success" and good["result"]["chunks"] == 2
    assert [s["status"] for s in good["steps"]] == ["success"] * 4
    assert good["progress"]["message"] == "embedded chunk 2 of 2"
    assert injected["status"] == "failed" and injected["error"]["kind"] == "injected_failure"
    assert [(s["name"], s["status"]) for s in injected["steps"]] == [
        ("file_node_creation", "success"), ("embedding_generation", "success"),
        ("indexing", "failed"), ("freshness_analysis", "skipped")]
    assert empty["error"]["kind"] == "empty_content" and empty["error"]["details"]["chars"] == 3
    assert [s["status"] for s in empty["steps"]] == ["success", "failed", "skipped", "skipped"]
    assert unauthenticated.status_code == 401
    node = json.loads((data / "acme" / "alice" / "doc-1.node.json").read_text())
    assert node["user_id"] == "alice" and node["request_id"] == "req-doc-1"


async def test_chat_service(errand_server: Errand) -> None:
    env = {"CHAT_DATA_DIR": str(errand_server.root / "chat")}
    worker = errand_server.example("chat-worker", "chat_service.py", "worker", env)
    api = errand_server.example_api("chat-api", "chat_service.py", env)
    wait_for("worker started", worker.err)
    tokens = {u: errand_server.user_token(u) for u in ("alice", "bob")}
    client = errand.Client(url=errand_server.url)
    async with httpx.AsyncClient(base_url=api, timeout=30) as http:
        for user, token in tokens.items():
            for i in range(3):
                r = await http.post("/chat", json={"session_id": "s1", "message": f"{user} {i}"},
                                    headers={"authorization": f"Bearer {token}"})
                assert r.status_code == 200, r.text
                record = await client.task_handle(r.json()["persist_task"], token=token).wait(30)
                assert record["status"] == "success"
        mine = {u: (await http.get("/conversations", headers={"authorization": f"Bearer {t}"})).json()
                for u, t in tokens.items()}
        forged = await http.get("/conversations", headers={"authorization": "Bearer a.b.c"})
    for user in tokens:
        turns = mine[user]["turns"]
        assert len(turns) == 3 and all(t["user_id"] == user for t in turns)
        assert all(t["messages"][0]["content"].startswith(user) for t in turns)
    assert forged.status_code == 401
