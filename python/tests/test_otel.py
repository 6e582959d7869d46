"""Attempt spans of the Python worker (errand.otel), recorded by the OpenTelemetry SDK's
in-memory exporter: a child of the task's traceparent, with the errand attributes and never
the credential."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import errand
import errand.otel
from errand import TaskContext
from tests.fake import FakeErrand
from tests.test_worker import ALICE, make, running

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_SPAN = "00f067aa0ba902b7"
CREDENTIAL = "secret-bearer-token-of-alice"

_exporter = InMemorySpanExporter()
_provider = TracerProvider()
_provider.add_span_processor(SimpleSpanProcessor(_exporter))
# The global provider can be set once per process; no other test sets it.
trace.set_tracer_provider(_provider)


@pytest.fixture
def spans() -> InMemorySpanExporter:
    _exporter.clear()
    return _exporter


async def run_one(context: dict[str, Any] | None, fail: bool = False) -> FakeErrand:
    fake = FakeErrand()
    client = make(fake)

    @client.task("traced")
    async def traced(args: dict[str, Any], ctx: TaskContext) -> str:
        if fail:
            raise errand.Fatal("no")
        return "done"

    fake.add("traced", context=context, attempt=2)
    async with running(client):
        await fake.wait_completions(1)
    return fake


async def test_an_attempt_is_a_child_of_the_tasks_traceparent(
    spans: InMemorySpanExporter,
) -> None:
    context = dict(ALICE, traceparent=f"00-{TRACE_ID}-{PARENT_SPAN}-01", credential=CREDENTIAL)
    fake = await run_one(context)
    assert fake.completions[0]["outcome"] == "success"
    (span,) = spans.get_finished_spans()
    assert span.parent is not None
    assert span.parent.trace_id == int(TRACE_ID, 16)
    assert span.parent.span_id == int(PARENT_SPAN, 16)
    assert span.context is not None and span.context.trace_id == int(TRACE_ID, 16)
    assert span.name == "run traced"
    attributes = dict(span.attributes or {})
    assert attributes["errand.task_id"] == fake.completions[0]["task_id"]
    assert attributes["errand.task"] == "traced"
    assert attributes["errand.attempt"] == 2
    assert attributes["enduser.id"] == "alice"
    assert attributes["errand.tenant"] == "acme"
    assert all(CREDENTIAL not in str(v) for v in attributes.values())


async def test_a_failed_attempt_records_its_error_and_a_task_without_trace_starts_one(
    spans: InMemorySpanExporter,
) -> None:
    await run_one(None, fail=True)
    (span,) = spans.get_finished_spans()
    assert span.parent is None
    assert span.status.status_code == trace.StatusCode.ERROR
    assert "enduser.id" not in (span.attributes or {})


async def test_without_opentelemetry_no_span_is_made(
    spans: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(errand.otel, "_PROPAGATOR", None)
    await run_one(dict(ALICE, traceparent=f"00-{TRACE_ID}-{PARENT_SPAN}-01"))
    assert spans.get_finished_spans() == ()
