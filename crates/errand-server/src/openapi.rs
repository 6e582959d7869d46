//! The OpenAPI 3.1 document of errand's routes, served at `GET /openapi.json`.
//!
//! It is generated, not kept by hand: every route is added to the router with utoipa-axum's
//! `routes!`, which takes the route's method and path from the handler's `#[utoipa::path]`
//! (so a route cannot exist without being documented), and the schemas come from the types
//! the handlers read and answer (core's status model included, through its `openapi`
//! feature). [`document`] then adds what the layers around the handlers do to every route
//! (request and correlation ids), and the registry's tasks: each task's argument schema
//! becomes a component and `POST /v1/tasks` accepts one of the registered tasks (see
//! [`task_args`]).

mod responses;
mod task_args;

pub(crate) use responses::{
    AdminOnly, AdminRouteErrors, BadRequest, Conflict, IdentityProviderUnavailable, NotAWorker,
    NotFound, PayloadTooLarge, StoreBroken, StoreUnavailable, TaskAccepted, TaskCancelled,
    TaskDeduplicated, TaskRequeued, TaskRouteErrors, TaskTypeConflict, TooManyStreams,
    Unauthorized, UnprocessableArgs, UnsupportedMediaType, WorkerRouteErrors, WorkersUnavailable,
};

use crate::error::ErrorEnvelope;
use crate::observe::{CORRELATION_ID_HEADER, MAX_ID_LEN, REQUEST_ID_HEADER};
use crate::tasks::Submitted;
use errand_core::TaskType;
use serde_json::Value;
use std::marker::PhantomData;
use utoipa::openapi::path::{Operation, Parameter, ParameterBuilder, ParameterIn, PathItem};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Header, ObjectBuilder, RefOr, Required, Response, Type};
use utoipa::{IntoParams, Modify, OpenApi};

/// `operationId` of `POST /v1/tasks`.
pub(crate) const SUBMIT_TASK: &str = "submitTask";
/// `operationId` of `GET /v1/tasks/{id}`.
pub(crate) const GET_TASK: &str = "getTask";
/// `operationId` of `GET /v1/tasks/{id}/events`.
pub(crate) const TASK_EVENTS: &str = "taskEvents";
/// `operationId` of `POST /v1/tasks/{id}/cancel`.
pub(crate) const CANCEL_TASK: &str = "cancelTask";
/// `operationId` of `POST /v1/tasks/{id}/retry`.
pub(crate) const RETRY_TASK: &str = "retryTask";

/// The tag of the task routes.
pub(crate) const TASKS_TAG: &str = "tasks";
/// The tag of the worker protocol's routes.
pub(crate) const WORKERS_TAG: &str = "workers";
/// The tag of the operators' views (admin role).
pub(crate) const ADMIN_TAG: &str = "admin";
/// The tag of the unauthenticated operational routes.
pub(crate) const OPERATIONS_TAG: &str = "operations";

/// The name of the bearer security scheme (also in `ApiDoc`'s `security`).
const BEARER: &str = "bearer";

/// What the document says before any route is added.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "errand API",
        description = "Submit background tasks, follow their status (polling or Server-Sent Events), cancel and retry them. Every /v1 route needs `Authorization: Bearer <JWT>` and sees only the caller's own tasks (user and tenant): another user's task answers 404, like one that does not exist. The admin role sees all. Every response carries `x-request-id` and `x-correlation-id`. Errors are always `{\"error\": {\"code\", \"message\"}}`."
    ),
    tags(
        (name = TASKS_TAG, description = "Submit, follow, cancel and retry tasks (bearer token)."),
        (name = WORKERS_TAG, description = "The worker protocol (docs/worker-protocol.md): register task types, claim (long poll), heartbeat, complete. Worker tokens only (the `worker` role)."),
        (name = ADMIN_TAG, description = "The operators' views: workers, queues, and the last hour per minute. Tokens holding the admin role only."),
        (name = OPERATIONS_TAG, description = "Liveness, readiness, metrics and this document (no authentication)."),
    ),
    security(("bearer" = [])),
    modifiers(&BearerScheme),
    components(schemas(ErrorEnvelope, Submitted), responses(
        BadRequest,
        Unauthorized,
        NotFound,
        Conflict,
        PayloadTooLarge,
        UnsupportedMediaType,
        UnprocessableArgs,
        StoreUnavailable,
        IdentityProviderUnavailable,
        StoreBroken,
        TooManyStreams,
        NotAWorker,
        AdminOnly,
        TaskTypeConflict,
        WorkersUnavailable,
    ))
)]
struct ApiDoc;

/// Declares the bearer scheme every operation requires unless it says otherwise.
struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .bearer_format("JWT")
            .description(Some(
                "A JWT signed with one of the server's HS256 secrets (`errand token` mints one) or by an identity provider whose keys (RS256, ES256) the server reads from a JWKS file or URL; `iss` and `aud` are checked when configured. The user is the configured user claim (`sub` by default), the tenant the `tenant` claim, the roles the `roles` claim; `exp` is required.",
            ))
            .build();
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme(BEARER, SecurityScheme::Http(scheme));
    }
}

/// The document's start: information, tags, the security scheme and the shared responses.
/// The router adds the routes.
pub(crate) fn base() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The `traceparent` request header of the routes that capture the caller's context.
pub(crate) struct TraceHeaders;

impl IntoParams for TraceHeaders {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![optional_header(
            "traceparent",
            "W3C trace context, carried with the tasks the request submits. A value that is not a valid `traceparent` is ignored.".into(),
        )]
    }
}

/// The parameters of `P` (query parameters), each declared with `allowEmptyValue`: the
/// handler takes an empty value as an absent one.
pub(crate) struct EmptyAsAbsent<P>(PhantomData<P>);

impl<P: IntoParams> IntoParams for EmptyAsAbsent<P> {
    fn into_params(parameter_in: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        let mut parameters = P::into_params(parameter_in);
        for parameter in &mut parameters {
            // utoipa has no field for it (it is deprecated, though valid, in OpenAPI 3.1).
            parameter
                .extensions
                .get_or_insert_with(Default::default)
                .insert("allowEmptyValue".into(), Value::Bool(true));
        }
        parameters
    }
}

/// The routes' document: `api` (from the router) with the request and correlation id headers
/// on every operation and response, without the tasks (see [`with_tasks`]).
pub(crate) fn routes_document(mut api: utoipa::openapi::OpenApi) -> Value {
    add_request_ids(&mut api);
    serde_json::to_value(&api).unwrap_or_else(|e| {
        // Only string-keyed maps and plain values: serializing it cannot fail.
        tracing::error!(error = %e, "the OpenAPI document could not be serialized");
        Value::Null
    })
}

/// The finished document: the routes' document with the arguments of `tasks` (the registry's,
/// and those remote workers registered) in the body of `POST /v1/tasks`.
pub(crate) fn with_tasks(mut doc: Value, tasks: &[TaskType]) -> Value {
    task_args::add(&mut doc, tasks);
    doc
}

/// The schema of an id errand echoes: what the observe layer takes or generates.
fn echoed_id() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(MAX_ID_LEN))
        .pattern(Some("^[!-~]+$"))
}

/// Adds the request and correlation id headers that the observe layer reads on every request
/// and sets on every response.
fn add_request_ids(api: &mut utoipa::openapi::OpenApi) {
    let parameters = [
        optional_header(
            REQUEST_ID_HEADER.as_str(),
            format!(
                "The request's id, when it is 1 to {MAX_ID_LEN} visible ASCII characters; any other value is replaced by a generated UUIDv7 (the response's `x-request-id` says which id was used)."
            ),
        ),
        optional_header(
            CORRELATION_ID_HEADER.as_str(),
            format!(
                "Correlates this request with other work, when it is 1 to {MAX_ID_LEN} visible ASCII characters; otherwise it is the request id. Echoed on the response."
            ),
        ),
    ];
    let headers = [
        (
            REQUEST_ID_HEADER,
            "The request's id: the one sent, or a generated UUIDv7.",
        ),
        (
            CORRELATION_ID_HEADER,
            "The correlation id: the one sent, or the request id.",
        ),
    ];
    let add_headers = |response: &mut Response| {
        for (name, description) in &headers {
            let header = Header::builder()
                .schema(Some(echoed_id()))
                .description(Some(*description))
                .build();
            response
                .headers
                .insert(name.as_str().to_string(), RefOr::T(header));
        }
    };
    if let Some(components) = api.components.as_mut() {
        for response in components.responses.values_mut() {
            if let RefOr::T(response) = response {
                add_headers(response);
            }
        }
    }
    for item in api.paths.paths.values_mut() {
        for operation in operations(item) {
            operation
                .parameters
                .get_or_insert_with(Vec::new)
                .extend(parameters.iter().cloned().map(RefOr::T));
            for response in operation.responses.responses.values_mut() {
                if let RefOr::T(response) = response {
                    add_headers(response);
                }
            }
        }
    }
}

/// An optional request header of any text.
fn optional_header(name: &str, description: String) -> Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Header)
        .required(Required::False)
        .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
        .description(Some(description))
        .build()
}

/// The operations of a path item.
fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.options,
        &mut item.head,
        &mut item.patch,
        &mut item.trace,
    ]
    .into_iter()
    .flatten()
}

#[cfg(test)]
mod tests {
    use crate::{Server, ServerConfig};
    use errand_core::{MemoryStore, Registry, SealKey, Task, TaskCx, TaskError};
    use serde::{Deserialize, Serialize};
    use serde_json::Value;
    use std::collections::BTreeSet;
    use std::sync::Arc;

    /// A task whose arguments have a definition of their own (`$defs`).
    #[derive(Serialize, Deserialize, schemars::JsonSchema)]
    #[serde(deny_unknown_fields)]
    struct SendMail {
        to: Vec<Recipient>,
        subject: String,
    }

    #[derive(Serialize, Deserialize, schemars::JsonSchema)]
    struct Recipient {
        address: String,
    }

    impl Task for SendMail {
        const NAME: &'static str = "send_mail";
        type Output = ();

        async fn run(self, _cx: TaskCx) -> Result<(), TaskError> {
            Ok(())
        }
    }

    fn document() -> Value {
        let mut registry = Registry::new();
        registry.register::<SendMail>().expect("register");
        let config = ServerConfig {
            jwt_secrets: vec![vec![7; 32]],
            ..Default::default()
        };
        let server = Server::new(
            Arc::new(MemoryStore::new()),
            Arc::new(registry),
            SealKey::generate(),
            config,
        )
        .expect("server");
        server.openapi().clone()
    }

    fn refs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
        match value {
            Value::Object(map) => {
                for (k, v) in map {
                    match (k.as_str(), v) {
                        ("$ref", Value::String(r)) => out.push(r),
                        _ => refs(v, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }

    fn operations(doc: &Value) -> Vec<(String, String, &Value)> {
        let mut out = Vec::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (method, op) in item.as_object().expect("path item") {
                out.push((method.clone(), path.clone(), op));
            }
        }
        out
    }

    #[test]
    fn document_parses_and_every_ref_resolves() {
        let doc = document();
        let text = doc.to_string();
        let parsed: Value = serde_json::from_str(&text).expect("valid JSON");
        assert!(
            parsed["openapi"]
                .as_str()
                .is_some_and(|v| v.starts_with("3.1"))
        );
        let mut found = Vec::new();
        refs(&doc, &mut found);
        assert!(!found.is_empty());
        for r in found {
            let pointer = r.strip_prefix('#').expect("local ref");
            assert!(doc.pointer(pointer).is_some(), "unresolved $ref {r}");
        }
    }

    #[test]
    fn every_operation_has_an_id_responses_and_resolvable_links() {
        let doc = document();
        let ops = operations(&doc);
        let ids: BTreeSet<&str> = ops
            .iter()
            .map(|(method, path, op)| {
                assert!(
                    op["responses"].as_object().is_some_and(|r| !r.is_empty()),
                    "{method} {path} has no responses"
                );
                op["operationId"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{method} {path} has no operationId"))
            })
            .collect();
        assert_eq!(ids.len(), ops.len(), "operationIds are unique");
        let mut links = 0;
        for (_, _, op) in &ops {
            for response in op["responses"].as_object().expect("responses").values() {
                for link in response["links"]
                    .as_object()
                    .into_iter()
                    .flat_map(|l| l.values())
                {
                    links += 1;
                    let target = link["operationId"].as_str().expect("operationId");
                    assert!(ids.contains(target), "a link to unknown {target}");
                }
            }
        }
        assert!(links >= 4, "submissions link to the task's operations");
    }

    #[test]
    fn only_the_task_routes_need_the_bearer_token() {
        let doc = document();
        for (method, path, op) in operations(&doc) {
            let open = op["security"] == serde_json::json!([{}]);
            assert_eq!(open, !path.starts_with("/v1/"), "{method} {path} security");
        }
        assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    }

    #[test]
    fn submissions_list_each_registered_tasks_args() {
        let doc = document();
        let schemas = &doc["components"]["schemas"];
        let args = &schemas["send_mailArgs"];
        assert_eq!(args["type"], "object");
        assert!(args.get("$schema").is_none() && args.get("$defs").is_none());
        assert_eq!(
            args["properties"]["to"]["items"]["$ref"],
            "#/components/schemas/send_mailArgs.Recipient"
        );
        assert_eq!(
            schemas["send_mailArgs.Recipient"]["properties"]["address"]["type"],
            "string"
        );
        let body = doc
            .pointer("/paths/~1v1~1tasks/post/requestBody/content/application~1json/schema")
            .expect("submission body");
        let variant = "#/components/schemas/SubmitRequest.send_mail";
        assert_eq!(body["oneOf"], serde_json::json!([{ "$ref": variant }]));
        assert_eq!(body["discriminator"]["mapping"]["send_mail"], variant);
        let submission = &schemas["SubmitRequest.send_mail"];
        assert_eq!(submission["properties"]["name"]["const"], "send_mail");
        assert_eq!(
            submission["properties"]["args"]["$ref"],
            "#/components/schemas/send_mailArgs"
        );
        for generic in ["key", "delay_s", "max_attempts", "timeout_s"] {
            assert!(
                submission["properties"][generic].is_object(),
                "{generic} is described"
            );
        }
        assert_eq!(submission["additionalProperties"], false);
    }
}
