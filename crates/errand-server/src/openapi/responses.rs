//! The responses of the document that more than one operation answers, or that carry headers
//! and links: each is a type implementing [`ToResponse`], named in `#[utoipa::path]` with
//! `response = Name` (a reference to `#/components/responses/Name`) or `inline(Name)`.
//!
//! The links tell a client (and schemathesis's stateful tests) which operations take the
//! answered task's `id`.

use super::{CANCEL_TASK, GET_TASK, RETRY_TASK, TASK_EVENTS};
use crate::error::ErrorEnvelope;
use crate::tasks::Submitted;
use errand_core::TaskRecord;
use std::collections::BTreeMap;
use utoipa::openapi::link::Link;
use utoipa::openapi::{
    Content, Header, ObjectBuilder, Ref, RefOr, Response, ResponseBuilder, Type,
};
use utoipa::{IntoResponses, ToResponse, ToSchema};

/// Declares a unit type whose [`ToResponse`] is `$build`, named after the type.
macro_rules! response {
    ($(#[$doc:meta])* $name:ident => $build:expr) => {
        $(#[$doc])*
        pub(crate) struct $name;

        impl<'r> ToResponse<'r> for $name {
            fn response() -> (&'r str, RefOr<Response>) {
                (stringify!($name), RefOr::T($build))
            }
        }
    };
}

/// A JSON answer whose body is the schema named `schema`.
fn json(description: &str, schema: &str) -> ResponseBuilder {
    ResponseBuilder::new().description(description).content(
        "application/json",
        Content::new(Some(Ref::from_schema_name(schema))),
    )
}

/// An error answer: `{"error": {"code", "message"}}`.
fn error(description: &str) -> ResponseBuilder {
    json(description, &ErrorEnvelope::name())
}

/// A header holding whole seconds to wait before trying again.
fn retry_after(description: &str) -> Header {
    Header::builder()
        .schema(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some("^[0-9]+$")),
        ))
        .description(Some(description))
        .build()
}

/// A header of free text.
fn text_header(description: &str) -> Header {
    Header::builder()
        .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
        .description(Some(description))
        .build()
}

/// Links from an answer whose body has the task's `id` to the operations in `targets`.
fn task_links(mut response: ResponseBuilder, targets: &[(&str, &str)]) -> ResponseBuilder {
    for (operation_id, description) in targets {
        let link = Link::builder()
            .operation_id(*operation_id)
            .parameter("id", "$response.body#/id")
            .description(*description)
            .build();
        response = response.link(*operation_id, link);
    }
    response
}

/// The answer to a submission: `Submitted`, the record's URL in `Location`, and links to
/// what can be done with the task.
fn submitted(description: &str) -> Response {
    let response = json(description, &Submitted::name()).header(
        "Location",
        text_header("The task's status URL (`status_url`)."),
    );
    task_links(
        response,
        &[
            (GET_TASK, "The task's record."),
            (TASK_EVENTS, "The task's changes as they happen."),
            (CANCEL_TASK, "Cancel the task."),
            (
                RETRY_TASK,
                "Run the task again once it failed or was cancelled.",
            ),
        ],
    )
    .build()
}

response! {
    /// 202 of `POST /v1/tasks`.
    TaskAccepted => submitted("Stored; follow it at `status_url` or `events_url`.")
}

response! {
    /// 200 of `POST /v1/tasks`: the live task of the same key.
    TaskDeduplicated => submitted(
        "A live task of the caller was submitted with the same `key`: it is answered instead (`deduplicated: true`), and nothing new is stored."
    )
}

response! {
    /// 202 of `POST /v1/tasks/{id}/cancel`.
    TaskCancelled => task_links(
        json(
            "Cancelled (a waiting task), or cancellation requested (a running task: `cancel_requested: true`, and its record ends `cancelled`).",
            &TaskRecord::name(),
        ),
        &[
            (GET_TASK, "The task's record."),
            (RETRY_TASK, "Run the cancelled task again."),
        ],
    )
    .build()
}

response! {
    /// 202 of `POST /v1/tasks/{id}/retry`.
    TaskRequeued => task_links(
        json(
            "Requeued: `pending`, with a fresh set of attempts and its original context.",
            &TaskRecord::name(),
        ),
        &[
            (GET_TASK, "The task's record."),
            (TASK_EVENTS, "The task's changes as they happen."),
            (CANCEL_TASK, "Cancel the task again."),
        ],
    )
    .build()
}

response! {
    /// 400.
    BadRequest => error(
        "Malformed: JSON that does not parse (`invalid_json`), a body that is not a valid request (`invalid_body`), a task id that is not a UUID (`invalid_id`), a bad query (`invalid_query`), or a request the task store cannot hold (`invalid_request`)."
    )
    .build()
}

response! {
    /// 401.
    Unauthorized => error(
        "No usable bearer token: `missing_token`, `malformed_authorization`, `malformed_token`, `unsupported_algorithm`, `invalid_signature`, `token_expired`, `token_not_yet_valid`, `invalid_claims`."
    )
    .header(
        "WWW-Authenticate",
        text_header("The Bearer challenge (`error=\"invalid_token\"` when a token was sent)."),
    )
    .build()
}

response! {
    /// 403 of the worker routes.
    NotAWorker => error(
        "The token does not hold the `worker` role (`not_a_worker`): the worker routes are for workers (`errand token --worker NAME`)."
    )
    .build()
}

response! {
    /// 403 of the operator views.
    AdminOnly => error(
        "The token does not hold the admin role (`admin_only`): the operator views show every user's work."
    )
    .build()
}

response! {
    /// 409 of `PUT /v1/worker/task-types`.
    TaskTypeConflict => error(
        "A task of that name is a Rust task of this server (`task_type_conflict`)."
    )
    .build()
}

response! {
    /// 503 of the worker routes.
    WorkersUnavailable => error(
        "The task store cannot be reached (`store_unavailable`), the identity provider's keys, which the token needs, cannot be fetched (`identity_provider_unavailable`), this server is shutting down (`shutting_down`), or it runs no remote workers (`workers_disabled`); try again (another server, or after a pause)."
    )
    .header("Retry-After", retry_after("Seconds to wait before trying again."))
    .build()
}

response! {
    /// 404.
    NotFound => error(
        "No such task (`not_found`): it does not exist, expired, or is not the caller's."
    )
    .build()
}

response! {
    /// 409.
    Conflict => error("The task's state does not allow the operation (`conflict`).").build()
}

response! {
    /// 413.
    PayloadTooLarge => error("The body is over the server's limit (`payload_too_large`).").build()
}

response! {
    /// 415.
    UnsupportedMediaType => error(
        "The body is not sent as `Content-Type: application/json` (`unsupported_media_type`)."
    )
    .build()
}

response! {
    /// 422.
    UnprocessableArgs => error(
        "No task of that name is registered (`unknown_task`), or `args` do not fit the task's arguments (`invalid_args`, saying which field and why)."
    )
    .build()
}

response! {
    /// 503.
    StoreUnavailable => error(
        "The task store cannot be reached (`store_unavailable`), or the bearer token names a key that only the identity provider's keys, which cannot be fetched now, could hold (`identity_provider_unavailable`); try again."
    )
        .header("Retry-After", retry_after("Seconds to wait before trying again."))
        .build()
}

response! {
    /// 503 of a route that only authenticates.
    IdentityProviderUnavailable => error(
        "The bearer token names a key that only the identity provider's keys, which cannot be fetched now, could hold (`identity_provider_unavailable`); try again."
    )
    .header("Retry-After", retry_after("Seconds to wait before trying again."))
    .build()
}

response! {
    /// 503 of `GET /healthz`: this process can no longer write through its store.
    StoreBroken => error(
        "This process can no longer write through its task store (`store_broken`: SQLite's writer thread stopped); restart it."
    )
    .build()
}

response! {
    /// 429 of `GET /v1/tasks/{id}/events`: the caller (or the server) has as many event
    /// streams open as it may.
    TooManyStreams => error(
        "The caller has as many event streams open as one user may (default 32), or the server as many as it keeps (default 10,000): `too_many_streams`. Close one, or poll the task's record."
    )
    .header("Retry-After", retry_after("Seconds to wait before opening another stream."))
    .build()
}

/// A reference to the shared response `R`.
fn shared<'r, R: ToResponse<'r>>() -> RefOr<Response> {
    RefOr::Ref(Ref::from_response_name(R::response().0))
}

/// What every route of one task (`/v1/tasks/{id}...`) may answer besides its own answers: 400
/// for an id that is not one, 401, 404 for a task that is not the caller's, 503.
pub(crate) struct TaskRouteErrors;

impl IntoResponses for TaskRouteErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        BTreeMap::from([
            ("400".to_string(), shared::<BadRequest>()),
            ("401".to_string(), shared::<Unauthorized>()),
            ("404".to_string(), shared::<NotFound>()),
            ("503".to_string(), shared::<StoreUnavailable>()),
        ])
    }
}

/// What every operator route may answer besides its own answer: 401, 403 for a token without
/// the admin role, 503.
pub(crate) struct AdminRouteErrors;

impl IntoResponses for AdminRouteErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        BTreeMap::from([
            ("401".to_string(), shared::<Unauthorized>()),
            ("403".to_string(), shared::<AdminOnly>()),
            ("503".to_string(), shared::<StoreUnavailable>()),
        ])
    }
}

/// What every worker route may answer besides its own answer: 400, 401, 403 for a token that
/// is not a worker's, 413, 415, 503.
pub(crate) struct WorkerRouteErrors;

impl IntoResponses for WorkerRouteErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        BTreeMap::from([
            ("400".to_string(), shared::<BadRequest>()),
            ("401".to_string(), shared::<Unauthorized>()),
            ("403".to_string(), shared::<NotAWorker>()),
            ("413".to_string(), shared::<PayloadTooLarge>()),
            ("415".to_string(), shared::<UnsupportedMediaType>()),
            ("503".to_string(), shared::<WorkersUnavailable>()),
        ])
    }
}
