"""OpenTelemetry spans of the attempts a Python worker runs, when ``opentelemetry-api`` is
installed (an optional dependency: without it nothing here does anything).

Each attempt is a span of the task's trace: its parent is the ``traceparent`` errand hands the
worker with the task (the server's span of that attempt when errand exports spans, else the
submitter's). It carries ``errand.task_id``, ``errand.task``, ``errand.attempt``,
``enduser.id`` and ``errand.tenant``, never the credential. Spans go wherever the process's
tracer provider sends them (``opentelemetry-sdk`` and an exporter, set up by the service).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .context import TaskContext

try:
    from opentelemetry import trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    _PROPAGATOR: TraceContextTextMapPropagator | None = TraceContextTextMapPropagator()
except ImportError:  # opentelemetry-api is not installed: no spans.
    _PROPAGATOR = None


@contextlib.contextmanager
def attempt_span(ctx: TaskContext) -> Iterator[None]:
    """Runs the body as the span of attempt ``ctx.attempt`` of ``ctx``'s task (an exception
    escaping it is recorded on the span)."""
    if _PROPAGATOR is None:
        yield
        return
    carrier = {"traceparent": ctx.traceparent} if ctx.traceparent else {}
    parent = _PROPAGATOR.extract(carrier)
    attributes: dict[str, str | int] = {
        "errand.task_id": ctx.task_id,
        "errand.task": ctx.name,
        "errand.attempt": ctx.attempt,
    }
    if ctx.user_id is not None:
        attributes["enduser.id"] = ctx.user_id
    if ctx.tenant is not None:
        attributes["errand.tenant"] = ctx.tenant
    tracer = trace.get_tracer("errand")
    with tracer.start_as_current_span(
        f"run {ctx.name}", context=parent, kind=trace.SpanKind.CONSUMER, attributes=attributes
    ):
        yield
