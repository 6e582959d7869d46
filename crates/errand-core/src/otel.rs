//! OpenTelemetry: every attempt of a task as a span in the trace of its submission.
//!
//! errand makes its spans with `tracing`. They become OpenTelemetry spans only where the
//! process installs a `tracing-opentelemetry` layer (the `errand` binary does with
//! `--otlp-endpoint`); without one, every function here returns after a failed downcast.
//!
//! - **Parent.** An attempt's parent is the task's `traceparent` (the one its [`Context`]
//!   carries: the submitting request's, or the submit span's when the server traced the
//!   submission). A task without one is a trace of its own whose trace id is the task id.
//! - **Ids.** Attempt `n` of task `t` has the span id [`attempt_span_id`]`(t, n)`, derived from
//!   both, so that attempt `n` links to attempt `n - 1` (a retry, or a redelivery after a lost
//!   lease) without anything stored. The span id is pinned for the one span start of
//!   [`start_attempt`]; the tracer provider's id generator must take it from
//!   [`take_pinned_span_id`] (and [`take_pinned_trace_id`]), as the `errand` binary's does. With
//!   another generator, attempts get random ids and no links.
//! - **What is not unique.** An attempt handed back without being spent (a release, a worker
//!   shutting down) and a manual retry (which starts again from attempt 1) reuse an attempt
//!   number, so their spans reuse its span id: a backend shows them as one span.
//! - **Attributes.** `errand.task_id`, `errand.task`, `errand.attempt`, `enduser.id` and
//!   `errand.tenant`, beside the span's `tracing` fields; never the credential.

use crate::context::Context;
use crate::id::TaskId;
use crate::seal::SealKeyRing;
use crate::store::Claimed;
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use sha2::{Digest, Sha256};
use std::cell::Cell;
use tracing_opentelemetry::OpenTelemetrySpanExt;

thread_local! {
    static PINNED_SPAN: Cell<Option<SpanId>> = const { Cell::new(None) };
    static PINNED_TRACE: Cell<Option<TraceId>> = const { Cell::new(None) };
}

/// The span id pinned for the span being started on this thread, if any, taken (the next call
/// returns `None`). For an OpenTelemetry SDK id generator: return it when it is `Some`.
pub fn take_pinned_span_id() -> Option<SpanId> {
    PINNED_SPAN.with(Cell::take)
}

/// The trace id pinned for the root span being started on this thread, if any, taken. For an
/// OpenTelemetry SDK id generator: return it when it is `Some`.
pub fn take_pinned_trace_id() -> Option<TraceId> {
    PINNED_TRACE.with(Cell::take)
}

/// Runs `f` with `span` (and, for a root span, `trace`) pinned on this thread, unpinned after.
fn pinned<R>(trace: Option<TraceId>, span: SpanId, f: impl FnOnce() -> R) -> R {
    PINNED_SPAN.with(|c| c.set(Some(span)));
    PINNED_TRACE.with(|c| c.set(trace));
    let out = f();
    PINNED_SPAN.with(|c| c.set(None));
    PINNED_TRACE.with(|c| c.set(None));
    out
}

/// The span id of attempt `attempt` of task `task`: the first 8 bytes of a SHA-256 of both.
pub fn attempt_span_id(task: TaskId, attempt: u32) -> SpanId {
    let mut hash = Sha256::new();
    hash.update(b"errand.attempt\0");
    hash.update(task.as_uuid().as_bytes());
    hash.update(attempt.to_be_bytes());
    let digest = hash.finalize();
    let mut id = [0u8; 8];
    id.copy_from_slice(&digest[..8]);
    if id == [0; 8] {
        // The invalid span id; astronomically unlikely, but a span must have a valid one.
        id[7] = 1;
    }
    SpanId::from_bytes(id)
}

/// The trace id of a task submitted without a trace context: its id's 16 bytes.
pub fn task_trace_id(task: TaskId) -> TraceId {
    TraceId::from_bytes(*task.as_uuid().as_bytes())
}

/// The remote span context a W3C `traceparent` names (`00-<trace id>-<span id>-<flags>`), or
/// `None` when it is malformed or names an invalid id.
pub fn parse_traceparent(traceparent: &str) -> Option<SpanContext> {
    let mut parts = traceparent.trim().split('-');
    let (version, trace, span, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
    if !hex(version, 2) || version == "ff" || !hex(trace, 32) || !hex(span, 16) || !hex(flags, 2) {
        return None;
    }
    // Version 00 has exactly four fields; later versions may append more.
    if version == "00" && parts.next().is_some() {
        return None;
    }
    let context = SpanContext::new(
        TraceId::from_hex(trace).ok()?,
        SpanId::from_hex(span).ok()?,
        TraceFlags::new(u8::from_str_radix(flags, 16).ok()? & TraceFlags::SAMPLED.to_u8()),
        true,
        TraceState::default(),
    );
    context.is_valid().then_some(context)
}

/// The W3C `traceparent` of `context`.
pub fn traceparent(context: &SpanContext) -> String {
    format!(
        "00-{}-{}-{:02x}",
        context.trace_id(),
        context.span_id(),
        context.trace_flags().to_u8()
    )
}

/// The `traceparent` of the current `tracing` span as OpenTelemetry sees it: `None` without an
/// OpenTelemetry layer, or outside any span it records.
pub fn current_traceparent() -> Option<String> {
    let span = tracing::Span::current();
    if span.is_none() {
        return None;
    }
    let cx = span.context();
    let otel = cx.span();
    let context = otel.span_context();
    context.is_valid().then(|| traceparent(context))
}

/// Makes `span` join the trace `traceparent` names (or start a trace of its own when there is
/// none). Whether an OpenTelemetry layer records `span`: `false` without one, and then nothing
/// else was done. Call it before `span` is first entered.
pub fn join(span: &tracing::Span, traceparent: Option<&str>) -> bool {
    let parent = traceparent
        .and_then(parse_traceparent)
        .map(|remote| opentelemetry::Context::new().with_remote_span_context(remote))
        .unwrap_or_default();
    span.set_parent(parent).is_ok()
}

/// The context `context` as a task submitted inside the current span should carry: its
/// `traceparent` names the current span when an OpenTelemetry layer records it (so the task's
/// attempts are children of the submission), and is the caller's otherwise.
pub fn submitted(context: &Context) -> Option<Context> {
    let current = current_traceparent()?;
    Some(context.to_builder().traceparent(current).build())
}

/// Sets the errand attributes on `span`: the task, and who it is for. A no-op without an
/// OpenTelemetry layer.
pub fn set_task_attributes(
    span: &tracing::Span,
    task: TaskId,
    name: &str,
    user: Option<&str>,
    tenant: Option<&str>,
) {
    span.set_attribute("errand.task_id", task.to_string());
    span.set_attribute("errand.task", name.to_string());
    if let Some(user) = user {
        span.set_attribute("enduser.id", user.to_string());
    }
    if let Some(tenant) = tenant {
        span.set_attribute("errand.tenant", tenant.to_string());
    }
}

/// Makes `span`, not yet entered, the OpenTelemetry span of the claimed attempt `task`: a child
/// of the task's `traceparent` (read from its sealed context), with its derived span id, the
/// errand attributes, and a link to the previous attempt. A no-op without an OpenTelemetry
/// layer.
pub(crate) fn start_attempt(span: &tracing::Span, keys: &SealKeyRing, task: &Claimed) {
    let id = task.lease.id;
    // The context is opened (again) only when spans are exported; a context that cannot be
    // opened fails the attempt anyway, and its span then starts a trace of its own.
    let context = || {
        task.context
            .as_ref()
            .and_then(|sealed| sealed.open(keys, task.seal_binding()).ok())
    };
    let opened = if join(span, None) { context() } else { return };
    let parent = opened
        .as_ref()
        .and_then(Context::traceparent)
        .and_then(parse_traceparent);
    if let Some(remote) = &parent {
        join(span, Some(&traceparent(remote)));
    }
    set_task_attributes(
        span,
        id,
        &task.name,
        task.owner.user_id.as_deref(),
        task.owner.tenant.as_deref(),
    );
    span.set_attribute("errand.attempt", i64::from(task.attempt));
    let trace = parent
        .as_ref()
        .map_or_else(|| task_trace_id(id), SpanContext::trace_id);
    let own = attempt_span_id(id, task.attempt);
    // Starts the span now, with its id pinned.
    let started = pinned(parent.is_none().then_some(trace), own, || span.context());
    let started = started.span().span_context().clone();
    // Only when the id generator honoured the pin does the previous attempt have the id the
    // link names.
    if task.attempt > 1 && started.span_id() == own && started.trace_id() == trace {
        span.add_link(SpanContext::new(
            trace,
            attempt_span_id(id, task.attempt - 1),
            started.trace_flags(),
            false,
            TraceState::default(),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparents_parse_and_print_back() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let context = parse_traceparent(tp).expect("valid");
        assert!(context.is_remote());
        assert!(context.is_sampled());
        assert_eq!(traceparent(&context), tp);
        for bad in [
            "garbage",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        ] {
            assert_eq!(parse_traceparent(bad), None, "{bad}");
        }
    }

    #[test]
    fn attempt_ids_are_stable_and_distinct() {
        let task = TaskId::new();
        assert_eq!(attempt_span_id(task, 1), attempt_span_id(task, 1));
        assert_ne!(attempt_span_id(task, 1), attempt_span_id(task, 2));
        assert_ne!(attempt_span_id(task, 1), attempt_span_id(TaskId::new(), 1));
        assert!(task_trace_id(task) != TraceId::INVALID);
    }

    #[test]
    fn pins_are_taken_once_and_cleared_after() {
        let id = SpanId::from_bytes([1; 8]);
        let seen = pinned(None, id, || (take_pinned_span_id(), take_pinned_span_id()));
        assert_eq!(seen, (Some(id), None));
        pinned(Some(TraceId::from_bytes([2; 16])), id, || ());
        assert_eq!(take_pinned_span_id(), None);
        assert_eq!(take_pinned_trace_id(), None);
    }

    #[test]
    fn without_a_layer_nothing_is_recorded() {
        let span = tracing::info_span!("task");
        assert!(!join(&span, None));
        assert_eq!(current_traceparent(), None);
    }
}
