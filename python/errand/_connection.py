"""A worker's connection to errand's worker routes: requests whose answers are checked
against the protocol, and how the worker's loops ride out an errand that is unavailable
(exponential backoff, one log line per outage)."""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from .errors import ErrandError, Unreachable, api_error, is_transient

if TYPE_CHECKING:
    from ._leases import Lease
    from .client import Client
    from .protocol import Reports

logger = logging.getLogger("errand")

A = TypeVar("A", bound=BaseModel)


def encode(value: Any) -> bytes:
    """``value`` as compact UTF-8 JSON."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


class Backoff:
    """Exponential delays from ``initial`` to ``maximum`` seconds, each jittered to 50–100 %."""

    def __init__(self, initial: float = 0.1, maximum: float = 5.0) -> None:
        self.initial = initial
        self.maximum = maximum
        self._delay = initial

    def next(self) -> float:
        """The delay before the next try; each one doubles the next, up to ``maximum``."""
        delay = self._delay
        self._delay = min(self.maximum, delay * 2)
        return delay * random.uniform(0.5, 1.0)

    def reset(self) -> None:
        """After a success: the next delay is ``initial`` again."""
        self._delay = self.initial


class Outage:
    """Logs an unreachable errand once per outage, and its return."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._down_since: float | None = None

    def failed(self, what: str, error: ErrandError) -> None:
        """``what`` failed with ``error``: an error if errand refused it, else (errand is
        unavailable) a warning at the first failure of an outage."""
        if not is_transient(error):
            logger.error("%s failed: %s", what, error)
        elif self._down_since is None:
            self._down_since = time.monotonic()
            logger.warning(
                "errand at %s is unavailable (%s: %s); retrying with backoff", self.url, what, error
            )

    def ok(self) -> None:
        """errand answered: ends the outage, if there was one, with a warning of its length."""
        if self._down_since is not None:
            logger.warning(
                "errand at %s answers again after %.1f s",
                self.url,
                time.monotonic() - self._down_since,
            )
            self._down_since = None


class Connection:
    """The worker routes of ``client``'s errand server over one connection pool, open from
    ``open`` to ``aclose``; ``outage`` tells when errand is unavailable and when it returns."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.outage = Outage(client.url)
        self._http: httpx.AsyncClient | None = None

    def open(self, read_timeout: float) -> None:
        """Opens the connection pool; ``read_timeout`` is the longest wait for an answer."""
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(connect=5.0, read=read_timeout, write=10.0, pool=None),
            transport=self.client._transport,
        )

    async def aclose(self) -> None:
        """Closes the connection pool that ``open`` opened."""
        assert self._http is not None, "the connection is not open"
        await self._http.aclose()

    async def call(
        self, method: str, path: str, body: Any, answer: type[A], *, raw: bytes | None = None
    ) -> A:
        """One worker-route request; the answer parsed as ``answer``. An answer that is not
        what the protocol says is an ``ErrandError`` too, so no loop ever dies of one."""
        assert self._http is not None, "the worker is not running"
        headers = {"content-type": "application/json", **self.client.auth_headers(None)}
        try:
            response = await self._http.request(
                method,
                self.client.url_for(path),
                content=raw if raw is not None else encode(body),
                headers=headers,
            )
        except httpx.TransportError as e:
            raise Unreachable(f"{method} {path}: {type(e).__name__}: {e}") from e
        if response.status_code >= 400:
            raise api_error(response)
        try:
            return answer.model_validate_json(response.content)
        except ValidationError as e:
            raise ErrandError(f"{method} {path}: an answer the protocol does not allow: {e}") from e

    async def post_reports(
        self,
        what: str,
        path: str,
        answer: type[A],
        leases: Sequence[Lease],
        taken: Sequence[Reports],
        *,
        body: Any = None,
        raw: bytes | None = None,
    ) -> A | None:
        """``POST`` of a request carrying ``taken``, the reports taken from the contexts of
        ``leases``; when it fails (``what`` names it in the log), each context gets its
        reports back for the next request, and the answer is None."""
        try:
            result = await self.call("POST", path, body, answer, raw=raw)
        except ErrandError as e:
            for lease, reports in zip(leases, taken):
                lease.ctx._reports.restore(reports)
            self.outage.failed(what, e)
            return None
        self.outage.ok()
        return result
