"""``Client``: the connection to one errand server. It registers task functions
(``@client.task``), submits tasks (``submit``, ``submit_sync``), makes handles of existing
ones, and runs a worker for its tasks (``run_worker``)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
from pydantic import BaseModel

from .errors import Unreachable, api_error
from .handle import TaskHandle
from .task import TaskDefinition, TaskFunction

if TYPE_CHECKING:
    from .worker import WorkerStats

A = TypeVar("A")
R = TypeVar("R")

DEFAULT_URL = "http://127.0.0.1:8080"
#: Seconds allowed for one ordinary API request.
DEFAULT_TIMEOUT_S = 30.0
#: Connections kept open: as many as may be in use, so that a burst of submissions reuses
#: them instead of reconnecting (httpx keeps only 20 by default).
HTTP_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=100)


def _json_args(args: Mapping[str, Any] | BaseModel | None) -> Any:
    if args is None:
        return {}
    if isinstance(args, BaseModel):
        return args.model_dump(mode="json")
    return dict(args)


class Client:
    """errand at ``url`` (default ``$ERRAND_URL``, else http://127.0.0.1:8080) with a bearer
    ``token`` (default ``$ERRAND_TOKEN``): a worker token in a worker process, or a service's
    own token; requests made for a user take the user's token instead (``submit(token=…)``).

    ``transport`` and ``sync_transport`` replace httpx's network transports (e.g. with
    ``httpx.MockTransport`` in tests). The async HTTP client is made lazily per event loop;
    close it with ``await client.aclose()`` (or ``async with client``).
    """

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        transport: httpx.AsyncBaseTransport | None = None,
        sync_transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = (url or os.environ.get("ERRAND_URL") or DEFAULT_URL).rstrip("/")
        self.token = token if token is not None else os.environ.get("ERRAND_TOKEN")
        self.timeout = timeout
        self._transport = transport
        self._sync_transport = sync_transport
        self._http: httpx.AsyncClient | None = None
        self._http_loop: asyncio.AbstractEventLoop | None = None
        self.tasks: dict[str, TaskDefinition[Any, Any]] = {}

    def __repr__(self) -> str:
        return f"Client(url={self.url!r}, tasks={sorted(self.tasks)!r})"

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # --- registration -------------------------------------------------------------------

    def task(
        self,
        name: str,
        *,
        queue: str | None = None,
        max_attempts: int | None = None,
        timeout: float | None = None,
        ttl: float | None = None,
        backoff: tuple[float, float] | None = None,
    ) -> Callable[[TaskFunction[A, R]], TaskDefinition[A, R]]:
        """Registers an ``async def fn(args, ctx)`` as the task type ``name``.

        The args type comes from the annotation of ``args``: a pydantic model (its JSON Schema
        is registered and the function gets a validated instance) or ``dict``/none (schema
        ``{"type": "object"}``, the function gets the dict). ``timeout`` and ``ttl`` are in
        seconds, ``backoff`` is ``(base_s, max_s)``; unset ones take the server's defaults
        (queue ``remote``, 3 attempts, 300 s, 1 day, 1 s to 300 s). The queue ``default``
        belongs to errand's Rust workers: the server refuses it when the worker registers."""

        def register(fn: TaskFunction[A, R]) -> TaskDefinition[A, R]:
            if name in self.tasks:
                raise ValueError(f"task type {name!r} is already registered on this client")
            definition = TaskDefinition(
                fn,
                name=name,
                queue=queue,
                max_attempts=max_attempts,
                timeout=timeout,
                ttl=ttl,
                backoff=backoff,
            )
            self.tasks[name] = definition
            return definition

        return register

    # --- HTTP ---------------------------------------------------------------------------

    def url_for(self, path: str) -> str:
        """The absolute URL of an API path (or the URL itself if it already is one)."""
        if path.startswith(("http://", "https://")):
            return path
        return self.url + (path if path.startswith("/") else "/" + path)

    def auth_headers(self, token: str | None) -> dict[str, str]:
        """The Authorization header for ``token``, else for the client's token."""
        chosen = token if token is not None else self.token
        return {"authorization": f"Bearer {chosen}"} if chosen else {}

    def http(self) -> httpx.AsyncClient:
        """The async HTTP client of the running event loop."""
        loop = asyncio.get_running_loop()
        if self._http is None or self._http_loop is not loop or self._http.is_closed:
            self._http = httpx.AsyncClient(
                timeout=self.timeout, transport=self._transport, limits=HTTP_LIMITS
            )
            self._http_loop = loop
        return self._http

    async def aclose(self) -> None:
        """Closes the HTTP client of the running loop, if any."""
        if self._http is not None and self._http_loop is asyncio.get_running_loop():
            await self._http.aclose()
        self._http = None
        self._http_loop = None

    async def request(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """One API request; the decoded JSON answer (None for an empty body). Raises
        ``ApiError`` (a subclass per status) for an error answer, ``Unreachable`` when errand
        cannot be reached."""
        all_headers = {**(headers or {}), **self.auth_headers(token)}
        try:
            response = await self.http().request(
                method, self.url_for(path), json=json, headers=all_headers
            )
        except httpx.TransportError as e:
            raise Unreachable(f"{method} {path}: errand at {self.url} unreachable: {e}") from e
        if response.status_code >= 400:
            raise api_error(response)
        return response.json() if response.content else None

    # --- submitting ---------------------------------------------------------------------

    def _submission(
        self,
        name: str | TaskDefinition[Any, Any],
        args: Mapping[str, Any] | BaseModel | None,
        key: str | None,
        delay_s: float | None,
        max_attempts: int | None,
        timeout_s: float | None,
        request_id: str | None,
        correlation_id: str | None,
        traceparent: str | None,
        headers: Mapping[str, str] | None,
    ) -> tuple[dict[str, Any], dict[str, str]]:
        body: dict[str, Any] = {
            "name": name.name if isinstance(name, TaskDefinition) else name,
            "args": _json_args(args),
        }
        for field, value in (
            ("key", key),
            ("delay_s", delay_s),
            ("max_attempts", max_attempts),
            ("timeout_s", timeout_s),
        ):
            if value is not None:
                body[field] = value
        sent = dict(headers or {})
        for header, value in (
            ("x-request-id", request_id),
            ("x-correlation-id", correlation_id),
            ("traceparent", traceparent),
        ):
            if value is not None:
                sent[header] = value
        return body, sent

    def _handle(self, answer: Any, token: str | None) -> TaskHandle:
        if not isinstance(answer, dict) or "id" not in answer:
            raise Unreachable(f"errand at {self.url} answered a submission without an id")
        return TaskHandle(
            self,
            str(answer["id"]),
            token=token if token is not None else self.token,
            status=answer.get("status"),
            deduplicated=bool(answer.get("deduplicated", False)),
        )

    async def submit(
        self,
        name: str | TaskDefinition[Any, Any],
        args: Mapping[str, Any] | BaseModel | None = None,
        *,
        token: str | None = None,
        key: str | None = None,
        delay_s: float | None = None,
        max_attempts: int | None = None,
        timeout_s: float | None = None,
        request_id: str | None = None,
        correlation_id: str | None = None,
        traceparent: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> TaskHandle:
        """Submits a task (``POST /v1/tasks``) as the owner of ``token`` (the user's; default
        the client's token) and returns its handle. errand captures the caller's context from
        this request: the token's user, tenant and roles, ``request_id`` (x-request-id),
        ``correlation_id`` (x-correlation-id), ``traceparent`` and allow-listed ``headers``.
        ``key`` is an idempotency key (a live task of the same key is returned instead)."""
        body, sent = self._submission(
            name, args, key, delay_s, max_attempts, timeout_s,
            request_id, correlation_id, traceparent, headers,
        )
        answer = await self.request("POST", "/v1/tasks", token=token, json=body, headers=sent)
        return self._handle(answer, token)

    def submit_sync(
        self,
        name: str | TaskDefinition[Any, Any],
        args: Mapping[str, Any] | BaseModel | None = None,
        *,
        token: str | None = None,
        key: str | None = None,
        delay_s: float | None = None,
        max_attempts: int | None = None,
        timeout_s: float | None = None,
        request_id: str | None = None,
        correlation_id: str | None = None,
        traceparent: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> TaskHandle:
        """``submit`` for code without an event loop (a thread, a sync view, a script): it
        uses its own short-lived synchronous HTTP client. The handle's methods are async."""
        body, sent = self._submission(
            name, args, key, delay_s, max_attempts, timeout_s,
            request_id, correlation_id, traceparent, headers,
        )
        all_headers = {**sent, **self.auth_headers(token)}
        try:
            with httpx.Client(timeout=self.timeout, transport=self._sync_transport) as http:
                response = http.post(self.url_for("/v1/tasks"), json=body, headers=all_headers)
        except httpx.TransportError as e:
            raise Unreachable(f"POST /v1/tasks: errand at {self.url} unreachable: {e}") from e
        if response.status_code >= 400:
            raise api_error(response)
        return self._handle(response.json(), token)

    def task_handle(self, task_id: str, *, token: str | None = None) -> TaskHandle:
        """A handle of an existing task, acting with ``token`` (default the client's)."""
        return TaskHandle(self, task_id, token=token if token is not None else self.token)

    # --- working ------------------------------------------------------------------------

    async def run_worker(
        self,
        concurrency: int = 16,
        queues: list[str] | None = None,
        drain_timeout: float = 30.0,
        lease_s: float = 30.0,
    ) -> WorkerStats:
        """Runs this client's tasks until the current asyncio task is cancelled or
        ``Worker.stop`` is called, then drains; returns the statistics. See ``Worker``."""
        from .worker import Worker

        worker = Worker(
            self,
            concurrency=concurrency,
            queues=queues,
            drain_timeout=drain_timeout,
            lease_s=lease_s,
        )
        return await worker.run()
