"""``TaskHandle``: a submitted task seen from the caller: its record, its live events, waiting
for its end, cancelling and retrying it."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import httpx

from .errors import ApiError, ErrandError, Unreachable, api_error, is_transient
from .protocol import TERMINAL_STATES
from .sse import parse_sse

if TYPE_CHECKING:
    from .client import Client

logger = logging.getLogger("errand")

#: Polling period of ``wait`` once the event stream is not available.
POLL_INTERVAL_S = 0.5


class TaskHandle:
    """A task by id, acting with the token it was made with (the submitter's, normally).

    ``status_url`` and ``events_url`` are absolute URLs of errand's ``/v1/tasks/{id}`` and
    ``/v1/tasks/{id}/events``. Records are the server's JSON status records, as dicts."""

    def __init__(
        self,
        client: Client,
        task_id: str,
        *,
        token: str | None,
        status: str | None = None,
        deduplicated: bool = False,
    ) -> None:
        self._client = client
        self._token = token
        self.id = task_id
        #: The state the task had when the handle was made (``pending`` after a submission).
        self.status = status
        #: Whether the submission returned an existing live task of the same key.
        self.deduplicated = deduplicated
        self.status_url = client.url_for(f"/v1/tasks/{task_id}")
        self.events_url = client.url_for(f"/v1/tasks/{task_id}/events")

    def __repr__(self) -> str:
        return f"TaskHandle(id={self.id!r})"

    async def get(self) -> dict[str, Any]:
        """The task's status record."""
        record = await self._client.request("GET", f"/v1/tasks/{self.id}", token=self._token)
        assert isinstance(record, dict)
        return record

    async def cancel(self) -> dict[str, Any]:
        """Requests cancellation (a waiting task ends at once, a running one at its worker's
        next heartbeat). Raises ``Conflict`` when the task has already finished."""
        answer = await self._client.request(
            "POST", f"/v1/tasks/{self.id}/cancel", token=self._token
        )
        return answer if isinstance(answer, dict) else {}

    async def retry(self) -> dict[str, Any]:
        """Runs a failed or cancelled task again. Raises ``Conflict`` in other states."""
        answer = await self._client.request(
            "POST", f"/v1/tasks/{self.id}/retry", token=self._token
        )
        return answer if isinstance(answer, dict) else {}

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        """The task's records as they change, live (Server-Sent Events): first the current
        one, then one per change, ending after a terminal record (success, failed,
        cancelled) or when the server closes the stream."""
        http = self._client.http()
        headers = {"accept": "text/event-stream", **self._client.auth_headers(self._token)}
        timeout = httpx.Timeout(connect=10.0, read=None, write=10.0, pool=10.0)
        try:
            async with http.stream(
                "GET", self.events_url, headers=headers, timeout=timeout
            ) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise api_error(response)
                async for event in parse_sse(response.aiter_lines()):
                    if event.event != "status":
                        continue
                    record = json.loads(event.data)
                    if not isinstance(record, dict):
                        continue
                    yield record
                    if record.get("status") in TERMINAL_STATES:
                        return
        except httpx.TransportError as e:
            raise Unreachable(f"the event stream of task {self.id} broke: {e}") from e

    async def wait(self, timeout: float | None = None) -> dict[str, Any]:
        """The task's record once it is terminal. Follows the event stream and falls back to
        polling the record if the stream cannot be opened or drops. Raises ``TimeoutError``
        if the task is not terminal within ``timeout`` seconds (None: no limit)."""
        try:
            return await asyncio.wait_for(self._wait(), timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(f"task {self.id} did not finish within {timeout} s") from None

    async def _wait(self) -> dict[str, Any]:
        try:
            async for record in self.events():
                if record.get("status") in TERMINAL_STATES:
                    return record
        except (Unreachable, ApiError) as e:
            if isinstance(e, ApiError) and e.status in (401, 403, 404):
                raise
            logger.debug("event stream of task %s unavailable (%s); polling", self.id, e)
        while True:
            try:
                record = await self.get()
            except ErrandError as e:
                if not is_transient(e):
                    raise
                logger.debug("polling task %s failed (%s); trying again", self.id, e)
            else:
                if record.get("status") in TERMINAL_STATES:
                    return record
            await asyncio.sleep(POLL_INTERVAL_S)
