//! `GET /v1/tasks/{id}/events`: a task's record as Server-Sent Events, one `status` event per
//! change, from the current record until a final state.
//!
//! Opening a stream first checks that the caller may see the task (a stranger's request costs
//! one read and no watch), then subscribes to the store's watch, then reads the record again:
//! a change between the subscription and that read is in the record or comes through the
//! watch, so none is missed.
//!
//! Every record that differs from the last one sent is sent. Records are not ordered by
//! `updated_at`: those times come from the clocks of whichever hosts wrote them (an API
//! server's cancel, a worker's completion), read before any lock, so a later change can carry
//! an earlier time. The stream ends after the first final record it sends. An idle stream
//! re-reads the record now and then (see
//! [`ServerConfig::events_resync`](crate::ServerConfig::events_resync)), so a change the watch
//! missed still arrives; every stream ends when the server shuts down, and when the token that
//! opened it expires (the client reconnects with a fresh one).
//!
//! Open streams are capped per user ([`ServerConfig::streams_per_user`](crate::ServerConfig::streams_per_user),
//! default 32) and in all ([`ServerConfig::streams_total`](crate::ServerConfig::streams_total),
//! default 10,000): past either, opening one answers 429 `too_many_streams` with `Retry-After`.

use crate::caller::Caller;
use crate::error::ApiError;
use crate::extract::TaskPath;
use crate::metrics::StreamGuard;
use crate::openapi::{self, TaskRouteErrors, TooManyStreams, TraceHeaders};
use crate::state::AppState;
use crate::streams::{Refused, StreamSlot};
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use errand_core::{EventStream, TaskId, TaskRecord};
use futures::StreamExt;
use std::borrow::Cow;
use std::convert::Infallible;
use std::sync::Arc;
use tokio::time::{Interval, MissedTickBehavior};
use utoipa::openapi::extensions::Extensions;
use utoipa::openapi::schema::{Object, ObjectBuilder, Schema, Type};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{PartialSchema, ToSchema};

/// The SSE event name of a record.
const EVENT_NAME: &str = "status";

/// One event of the stream as a client's SSE parser sees it (its `event` and `data` fields):
/// the document's schema of the stream's events.
pub(crate) struct StatusEvent;

impl PartialSchema for StatusEvent {
    fn schema() -> RefOr<Schema> {
        // `data` is a TaskRecord as JSON text (JSON Schema's contentMediaType/contentSchema).
        let content_schema: Extensions = [(
            "contentSchema",
            serde_json::json!({ "$ref": Ref::from_schema_name(TaskRecord::name()).ref_location }),
        )]
        .into_iter()
        .collect();
        let data = ObjectBuilder::new()
            .schema_type(Type::String)
            .content_media_type("application/json")
            .extensions(Some(content_schema))
            .description(Some("The task's record (a TaskRecord) as JSON."));
        let event = ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some([EVENT_NAME]))
            .description(Some("Always `status`."));
        let object: Object = ObjectBuilder::new()
            .schema_type(Type::Object)
            .property("event", event)
            .property("data", data)
            .required("event")
            .required("data")
            .description(Some(
                "One Server-Sent Event: `event: status`, and `data:` the task's record as JSON.",
            ))
            .build();
        RefOr::T(Schema::Object(object))
    }
}

impl ToSchema for StatusEvent {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("StatusEvent")
    }

    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((TaskRecord::name().into_owned(), TaskRecord::schema()));
        TaskRecord::schemas(schemas);
    }
}

/// `GET /v1/tasks/{id}/events`.
#[utoipa::path(
    get,
    path = "/v1/tasks/{id}/events",
    operation_id = openapi::TASK_EVENTS,
    tag = openapi::TASKS_TAG,
    summary = "Follow a task's changes (Server-Sent Events)",
    description = "One `status` event per change of the record, whose `data` is the whole TaskRecord as JSON: first the current record, then each change, ending after a final state (success, failed, cancelled). Idle streams carry keep-alive comments. A client should not reconnect once it saw a final state.",
    params(TaskPath, TraceHeaders),
    responses(
        (status = 200, description = "The stream: `event: status` / `data: <TaskRecord JSON>`, one event per change.", content_type = "text/event-stream", body = StatusEvent),
        (status = 429, response = TooManyStreams),
        TaskRouteErrors,
    )
)]
pub(crate) async fn stream(
    State(app): State<Arc<AppState>>,
    caller: Caller,
    TaskPath(id): TaskPath,
) -> Result<Response, ApiError> {
    // Visibility first: a stranger's request (404) costs no watch, and takes no slot.
    app.visible_record(&caller, id).await?;
    let slot = app.streams.open(&caller.owner()).map_err(|refused| {
        ApiError::too_many_streams(match refused {
            Refused::User(n) => {
                app.metrics.stream_refused("user");
                format!(
                    "you have {n} event streams open, as many as one user may; close one, or poll the task's record"
                )
            }
            Refused::Total(n) => {
                app.metrics.stream_refused("total");
                format!(
                    "the server has {n} event streams open, as many as it keeps; try again shortly, or poll the task's record"
                )
            }
        })
    })?;
    let watch = app
        .store
        .watch(id)
        .await
        .map_err(|e| app.store_error("watch", e))?;
    // Read again after subscribing, so a change made before the subscription is not missed.
    let current = app.visible_record(&caller, id).await?;
    let period = app.config.events_resync;
    let mut resync = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    resync.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // The stream ends when the token that opened it expires.
    let token_left = (caller.token_expires_at() - chrono::Utc::now())
        .to_std()
        .unwrap_or_default();
    let events = Events {
        _open: app.metrics.stream_opened(),
        _slot: slot,
        expires: tokio::time::Instant::now() + token_left,
        app: Arc::clone(&app),
        id,
        watch,
        first: Some(current),
        last: None,
        done: false,
        resync,
    };
    let stream = futures::stream::unfold(events, Events::next);
    let sse = Sse::new(stream).keep_alive(KeepAlive::new().interval(app.config.sse_keep_alive));
    Ok(([("x-accel-buffering", "no")], sse).into_response())
}

/// One open stream's state.
struct Events {
    app: Arc<AppState>,
    id: TaskId,
    watch: EventStream,
    /// The record read when the stream opened, sent first.
    first: Option<TaskRecord>,
    /// The JSON of the last record sent.
    last: Option<String>,
    /// A final record was sent.
    done: bool,
    resync: Interval,
    /// When the token that opened the stream expires.
    expires: tokio::time::Instant,
    _open: StreamGuard,
    _slot: StreamSlot,
}

impl Events {
    /// The next event, or `None` once a final state was sent or the server shuts down.
    async fn next(mut self) -> Option<(Result<Event, Infallible>, Self)> {
        loop {
            if self.done {
                return None;
            }
            let record = match self.first.take() {
                Some(record) => record,
                None => self.changed().await?,
            };
            if let Some(event) = self.event(record) {
                return Some((Ok(event), self));
            }
        }
    }

    /// Waits for the next record: from the watch, or from a periodic re-read.
    async fn changed(&mut self) -> Option<TaskRecord> {
        loop {
            tokio::select! {
                () = self.app.shutdown.cancelled() => return None,
                () = tokio::time::sleep_until(self.expires) => {
                    tracing::debug!(task_id = %self.id, "event stream ended: its token expired");
                    return None;
                }
                next = self.watch.next() => match next {
                    Some(record) => return Some(record),
                    // The watch ended (a remote store lost its subscription): go on with
                    // re-reads alone.
                    None => self.watch = futures::stream::pending().boxed(),
                },
                _ = self.resync.tick() => match self.app.store.get(self.id).await {
                    Ok(Some(record)) => return Some(record),
                    // Expired and purged: nothing more will happen to it.
                    Ok(None) => return None,
                    Err(e) => {
                        self.app.metrics.store_error("get", &e);
                        tracing::debug!(task_id = %self.id, error = %e, "event stream re-read failed");
                    }
                },
            }
        }
    }

    /// The event for `record`, unless it is the same as the last one sent. Final records are
    /// never skipped for their time: `updated_at` is not monotonic across hosts. Events leave
    /// out the arguments (they never change; `GET /v1/tasks/{id}` has them), whether the record
    /// came from a re-read or from the store's watch.
    fn event(&mut self, mut record: TaskRecord) -> Option<Event> {
        record.args = None;
        let json = match serde_json::to_string(&record) {
            Ok(json) => json,
            Err(e) => {
                tracing::error!(task_id = %self.id, error = %e, "a task record could not be serialized");
                return None;
            }
        };
        if self.last.as_ref() == Some(&json) {
            return None;
        }
        self.done = record.status.is_terminal();
        let event = Event::default().event(EVENT_NAME).data(&json);
        self.last = Some(json);
        Some(event)
    }
}
