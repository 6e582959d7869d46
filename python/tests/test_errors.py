from __future__ import annotations

from errand.errors import MAX_TRACEBACK_CHARS, Fatal, Retry, failure_payload


def test_fatal_and_retry() -> None:
    assert failure_payload(Fatal("m")) == {"message": "m", "kind": "error", "retryable": False}
    assert failure_payload(Retry("m", retry_in=2.5, kind="busy", details={"s": 503})) == {
        "message": "m", "kind": "busy", "retryable": True, "retry_in_s": 2.5, "details": {"s": 503}}


class Custom(Exception):
    pass


def test_other_exceptions_carry_type_and_a_bounded_traceback() -> None:
    try:
        raise Custom("x" * 20_000)
    except Custom as e:
        payload = failure_payload(e)
    assert payload["kind"] == "Custom" and payload["retryable"] is True
    assert payload["details"]["type"] == "tests.test_errors.Custom"
    tb = payload["details"]["traceback"]
    assert len(tb) <= MAX_TRACEBACK_CHARS and tb.startswith("…")
    assert tb.rstrip().endswith("x" * 100)
    assert len(payload["message"]) <= 2048


def test_an_exception_without_a_message_is_named() -> None:
    assert failure_payload(RuntimeError())["message"] == "RuntimeError"
