"""Errors: what the API answered (``ApiError`` and its subclasses), an unreachable server
(``Unreachable``), and the two exceptions a task raises to choose its outcome (``Fatal``,
``Retry``), with the mapping of any exception to the protocol's failure payload."""

from __future__ import annotations

import traceback
from typing import Any

import httpx

from .protocol import ErrorPayload

#: Tracebacks sent in failure details are cut to their last this-many characters.
MAX_TRACEBACK_CHARS = 8 * 1024
#: Error messages are cut to this many characters.
MAX_MESSAGE_CHARS = 2 * 1024


class ErrandError(Exception):
    """Base of the SDK's own errors (not of ``Fatal``/``Retry``, which are task outcomes)."""


class ApiError(ErrandError):
    """errand answered an error: ``status`` (HTTP), ``code`` (stable, machine-readable) and
    ``message`` (for people), from the body ``{"error": {"code", "message"}}``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


class BadRequest(ApiError):
    """400: the request was malformed."""


class Unauthorized(ApiError):
    """401: no token, or a bad or expired one."""


class Forbidden(ApiError):
    """403: the token may not use this route (e.g. ``not_a_worker``)."""


class NotFound(ApiError):
    """404: unknown, expired, or not the caller's."""


class Conflict(ApiError):
    """409: the task's state does not allow it, or a task type conflicts."""


class PayloadTooLarge(ApiError):
    """413: the body is over the server's limit."""


class Unprocessable(ApiError):
    """422: an unknown task name, or args that do not match its schema."""


class TooManyRequests(ApiError):
    """429: e.g. too many event streams open."""


class Unavailable(ApiError):
    """503: errand's store is unreachable; retry with backoff."""


_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    422: Unprocessable,
    429: TooManyRequests,
    503: Unavailable,
}


class Unreachable(ErrandError):
    """errand could not be reached (connection refused, reset, timed out); the httpx error is
    the ``__cause__``."""


def api_error(response: httpx.Response) -> ApiError:
    """The typed error of a non-2xx answer (the body has been read)."""
    code, message = f"http_{response.status_code}", response.reason_phrase
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        code = str(body["error"].get("code", code))
        message = str(body["error"].get("message", message))
    elif response.text:
        message = response.text[:200]
    return _BY_STATUS.get(response.status_code, ApiError)(response.status_code, code, message)


def is_transient(error: BaseException) -> bool:
    """Whether retrying later may succeed: errand unreachable, or answering 502/503/504/429."""
    if isinstance(error, Unreachable):
        return True
    return isinstance(error, ApiError) and error.status in (429, 502, 503, 504)


class Fatal(Exception):
    """Raised by a task: fail it for good (``retryable: false``), whatever attempts remain."""

    def __init__(self, message: str, kind: str = "error", details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind
        self.details = details


class Retry(Exception):
    """Raised by a task: fail this attempt as retryable, after ``retry_in`` seconds if given,
    else after the task type's backoff."""

    def __init__(
        self,
        message: str,
        retry_in: float | None = None,
        kind: str = "retry",
        details: Any = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.retry_in = retry_in
        self.kind = kind
        self.details = details


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def failure_payload(error: BaseException) -> ErrorPayload:
    """The protocol's ``error`` object for an exception a task raised.

    ``Fatal`` is not retryable, ``Retry`` is (with ``retry_in_s``); any other exception is a
    retryable failure whose kind is its class name and whose details hold its qualified type
    and traceback (the last ``MAX_TRACEBACK_CHARS`` characters)."""
    if isinstance(error, Fatal):
        payload: ErrorPayload = {
            "message": _cut(error.message, MAX_MESSAGE_CHARS),
            "kind": error.kind,
            "retryable": False,
        }
        if error.details is not None:
            payload["details"] = error.details
        return payload
    if isinstance(error, Retry):
        payload = {
            "message": _cut(error.message, MAX_MESSAGE_CHARS),
            "kind": error.kind,
            "retryable": True,
        }
        if error.details is not None:
            payload["details"] = error.details
        if error.retry_in is not None:
            payload["retry_in_s"] = max(0.0, float(error.retry_in))
        return payload
    cls = type(error)
    text = "".join(traceback.format_exception(cls, error, error.__traceback__))
    if len(text) > MAX_TRACEBACK_CHARS:
        text = "…" + text[-(MAX_TRACEBACK_CHARS - 1) :]
    return {
        "message": _cut(str(error) or cls.__name__, MAX_MESSAGE_CHARS),
        "kind": cls.__name__,
        "details": {"type": f"{cls.__module__}.{cls.__qualname__}", "traceback": text},
        "retryable": True,
    }
