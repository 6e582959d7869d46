"""An in-memory errand for unit tests: the worker routes of docs/worker-protocol.md behind an
``httpx.MockTransport``, with knobs to answer held/cancel/fenced/503."""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass
class FakeTask:
    task_id: str
    name: str
    args: Any
    context: dict[str, Any] | None
    attempt: int = 1
    max_attempts: int = 3
    lease_token: str = ""


@dataclass
class FakeErrand:
    """Queued tasks are handed out by claims; every request body is recorded by route."""

    queue: asyncio.Queue[FakeTask] = field(default_factory=asyncio.Queue)
    registered: list[dict[str, Any]] = field(default_factory=list)
    claims: list[dict[str, Any]] = field(default_factory=list)
    heartbeats: list[dict[str, Any]] = field(default_factory=list)
    completions: list[dict[str, Any]] = field(default_factory=list)
    complete_calls: int = 0
    cancel: set[str] = field(default_factory=set)
    not_held: set[str] = field(default_factory=set)
    fenced: set[str] = field(default_factory=set)
    unconfirmed: set[str] = field(default_factory=set)
    #: Routes answering 503 for this many more calls, e.g. {"complete": 2}.
    unavailable: dict[str, int] = field(default_factory=dict)
    #: Routes raising a connection error for this many more calls.
    down: dict[str, int] = field(default_factory=dict)
    register_status: int = 200
    completed: asyncio.Event = field(default_factory=asyncio.Event)

    def add(
        self,
        name: str,
        args: Any = None,
        *,
        context: dict[str, Any] | None = None,
        attempt: int = 1,
        max_attempts: int = 3,
    ) -> str:
        task = FakeTask(str(uuid.uuid4()), name, args if args is not None else {}, context,
                        attempt, max_attempts, uuid.uuid4().hex)
        self.queue.put_nowait(task)
        return task.task_id

    def completion_of(self, task_id: str) -> dict[str, Any] | None:
        for c in self.completions:
            if c["task_id"] == task_id:
                return c
        return None

    async def wait_completions(self, n: int, timeout: float = 5.0) -> None:
        async def enough() -> None:
            while len(self.completions) < n:
                self.completed.clear()
                await self.completed.wait()

        await asyncio.wait_for(enough(), timeout)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def _fault(self, route: str) -> httpx.Response | None:
        if self.down.get(route, 0) > 0:
            self.down[route] -= 1
            raise httpx.ConnectError("connection refused")
        if self.unavailable.get(route, 0) > 0:
            self.unavailable[route] -= 1
            return httpx.Response(503, json={"error": {"code": "store_unavailable", "message": "down"}})
        return None

    async def handle(self, request: httpx.Request) -> httpx.Response:
        route = request.url.path.rsplit("/", 1)[-1]
        body: dict[str, Any] = json.loads(request.content) if request.content else {}
        fault = self._fault(route)
        if fault is not None:
            return fault
        if route == "task-types":
            if self.register_status != 200:
                return httpx.Response(
                    self.register_status,
                    json={"error": {"code": "not_a_worker", "message": "no worker role"}},
                )
            self.registered.extend(body["types"])
            return httpx.Response(200, json={"types": body["types"]})
        if route == "claim":
            self.claims.append(body)
            tasks: list[FakeTask] = []
            try:
                tasks.append(await asyncio.wait_for(self.queue.get(), min(body["wait_s"], 0.2)))
            except asyncio.TimeoutError:
                pass
            while tasks and len(tasks) < body["max"] and not self.queue.empty():
                tasks.append(self.queue.get_nowait())
            return httpx.Response(200, json={"tasks": [self._assignment(t) for t in tasks]})
        if route == "heartbeat":
            self.heartbeats.append(body)
            return httpx.Response(200, json={"leases": [
                {"task_id": l["task_id"], "held": l["task_id"] not in self.not_held,
                 "cancel_requested": l["task_id"] in self.cancel,
                 "lease_deadline": "2030-01-01T00:00:30.000Z"}
                for l in body["leases"]
            ]})
        if route == "complete":
            self.complete_calls += 1
            results = []
            for c in body["completions"]:
                fenced = c["task_id"] in self.fenced
                unconfirmed = c["task_id"] in self.unconfirmed
                if not fenced:
                    self.completions.append(c)
                results.append({"task_id": c["task_id"],
                                "accepted": not (fenced or unconfirmed), "fenced": fenced})
            self.completed.set()
            return httpx.Response(200, json={"results": results})
        return httpx.Response(404, json={"error": {"code": "not_found", "message": route}})

    @staticmethod
    def _assignment(t: FakeTask) -> dict[str, Any]:
        return {
            "task_id": t.task_id, "name": t.name, "queue": "py", "args": t.args,
            "attempt": t.attempt, "max_attempts": t.max_attempts, "lease_token": t.lease_token,
            "lease_deadline": "2030-01-01T00:00:30.000Z", "timeout_s": 60, "context": t.context,
        }
