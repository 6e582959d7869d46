//! The listing routes: `GET /v1/tasks` (the caller's tasks, filtered and paged) and
//! `GET /v1/tasks/counts` (the caller's tasks per state).
//!
//! Both are scoped like every task route: a caller sees its own tasks, an admin everyone's or
//! one owner's (`owner`, `owner_tenant`). For a caller who is not an admin, `owner` and
//! `owner_tenant` change nothing: the answer is always the caller's own tasks, so no filter,
//! search or owner reaches anybody else's.

use crate::caller::Caller;
use crate::error::ApiError;
use crate::extract::{Json, Query};
use crate::openapi::{
    self, BadRequest, EmptyAsAbsent, StoreUnavailable, TraceHeaders, Unauthorized,
};
use crate::state::AppState;
use axum::extract::State;
use chrono::{DateTime, Utc};
use errand_core::{ListQuery, Owner, OwnerFilter, StateCounts, TaskId, TaskRecord, TaskState};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::openapi::{KnownFormat, Object, ObjectBuilder, SchemaFormat, Type};
use utoipa::{IntoParams, ToSchema};

/// The largest page of a listing.
const MAX_PAGE: usize = 1000;
/// The longest search, owner or filter value accepted, in characters.
const MAX_TEXT: usize = 256;

/// Whose tasks, for an admin: `owner` and `owner_tenant` of a query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct OwnerParams {
    /// Admins only: the tasks of this user id instead of everyone's (a caller who is not an
    /// admin always gets its own tasks).
    #[param(schema_with = text_schema)]
    owner: Option<String>,
    /// Admins only, with `owner`: that user's tenant (default: the admin's own tenant).
    #[param(schema_with = text_schema)]
    owner_tenant: Option<String>,
}

/// The query of `GET /v1/tasks`, as text so each field's error can say what is wrong. An
/// empty value is taken as absent. Filters combine: a task is listed when it matches all.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListParams {
    /// Only tasks in this state.
    #[param(value_type = Option<TaskState>)]
    status: Option<String>,
    /// Only tasks of this name.
    #[param(schema_with = text_schema)]
    name: Option<String>,
    /// Only tasks of this queue.
    #[param(schema_with = text_schema)]
    queue: Option<String>,
    /// Only tasks created at or after this time (RFC 3339; to the millisecond of the task's
    /// id, a UUIDv7).
    #[param(schema_with = time_schema)]
    created_after: Option<String>,
    /// Only tasks created before this time (RFC 3339).
    #[param(schema_with = time_schema)]
    created_before: Option<String>,
    /// Search: the task with this id, or the tasks with this correlation id or request id
    /// (exact matches).
    #[param(schema_with = text_schema)]
    q: Option<String>,
    /// The most tasks on the page.
    #[param(schema_with = limit_schema)]
    limit: Option<String>,
    /// `next_cursor` of the previous page: the tasks older than that one.
    #[param(value_type = Option<TaskId>)]
    cursor: Option<String>,
    /// See [`OwnerParams`].
    #[param(schema_with = text_schema)]
    owner: Option<String>,
    /// See [`OwnerParams`].
    #[param(schema_with = text_schema)]
    owner_tenant: Option<String>,
}

/// The schema of a text parameter: at most [`MAX_TEXT`] characters (empty: absent).
fn text_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .max_length(Some(MAX_TEXT))
        .build()
}

/// The schema of a time parameter.
fn time_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
        .build()
}

/// The schema of `ListParams.limit`.
fn limit_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(1))
        .maximum(Some(MAX_PAGE))
        .default(Some(ListQuery::owner(OwnerFilter::Any).limit.into()))
        .build()
}

/// A page of `GET /v1/tasks`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TaskPage {
    /// The tasks, newest first.
    items: Vec<TaskRecord>,
    /// Pass it as `cursor` for the next page; `null` on the last page.
    #[schema(required)]
    next_cursor: Option<TaskId>,
}

/// A query parameter, with an empty value taken as absent.
fn present(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.is_empty())
}

/// A 400 `invalid_query` saying `message`.
fn invalid(message: String) -> ApiError {
    ApiError::bad_request("invalid_query", message)
}

/// A text parameter, checked against [`MAX_TEXT`].
fn text(field: &str, value: Option<String>) -> Result<Option<String>, ApiError> {
    match present(value) {
        Some(v) if v.chars().count() > MAX_TEXT => Err(invalid(format!(
            "`{field}` must be at most {MAX_TEXT} characters long"
        ))),
        v => Ok(v),
    }
}

/// A time parameter (RFC 3339).
fn time(field: &str, value: Option<String>) -> Result<Option<DateTime<Utc>>, ApiError> {
    present(value)
        .map(|v| {
            DateTime::parse_from_rfc3339(&v)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| {
                    invalid(format!(
                        "`{field}` must be an RFC 3339 time such as 2026-01-31T12:00:00Z: {e}"
                    ))
                })
        })
        .transpose()
}

/// Whose tasks the caller asks for: its own, everyone's for an admin, or the one owner an
/// admin names.
fn owner_of(
    caller: &Caller,
    owner: Option<String>,
    tenant: Option<String>,
) -> Result<OwnerFilter, ApiError> {
    let owner = text("owner", owner)?;
    let tenant = text("owner_tenant", tenant)?;
    if !caller.is_admin() {
        return Ok(caller.owner_filter());
    }
    Ok(match owner {
        Some(user) => OwnerFilter::Owner(Owner::new(
            user,
            tenant.or_else(|| caller.tenant().map(str::to_string)),
        )),
        None => OwnerFilter::Any,
    })
}

/// The store query of a listing's parameters, or a 400 `invalid_query`.
fn query_of(caller: &Caller, params: ListParams) -> Result<ListQuery, ApiError> {
    let mut query = ListQuery::owner(owner_of(caller, params.owner, params.owner_tenant)?);
    query.status = present(params.status)
        .map(|s| s.parse::<TaskState>())
        .transpose()
        .map_err(|e| invalid(e.to_string()))?;
    query.name = text("name", params.name)?;
    query.queue = text("queue", params.queue)?;
    query.search = text("q", params.q)?;
    query.created_after = time("created_after", params.created_after)?;
    query.created_before = time("created_before", params.created_before)?;
    if let Some(limit) = present(params.limit) {
        query.limit = limit
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_PAGE).contains(n))
            .ok_or_else(|| {
                invalid(format!(
                    "`limit` must be a whole number from 1 to {MAX_PAGE}"
                ))
            })?;
    }
    query.cursor = present(params.cursor)
        .map(|c| c.parse::<TaskId>())
        .transpose()
        .map_err(|e| {
            invalid(format!(
                "`cursor` is not a cursor from a previous page: {e}"
            ))
        })?;
    Ok(query)
}

/// `GET /v1/tasks`: the caller's tasks (everyone's, or one owner's, for an admin), newest
/// first, filtered.
#[utoipa::path(
    get,
    path = "/v1/tasks",
    operation_id = "listTasks",
    tag = openapi::TASKS_TAG,
    summary = "The caller's tasks, newest first, a page at a time",
    description = "Filters combine (a task is listed when it matches every one given). Each is answered from an index of the store, so a page costs the same however many tasks the caller has. An admin sees everyone's tasks, or one owner's with `owner`; for anybody else `owner` changes nothing.",
    params(EmptyAsAbsent<ListParams>, TraceHeaders),
    responses(
        (status = 200, description = "One page.", body = TaskPage),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 503, response = StoreUnavailable),
    )
)]
pub(crate) async fn list(
    State(app): State<Arc<AppState>>,
    caller: Caller,
    Query(params): Query<ListParams>,
) -> Result<Json<TaskPage>, ApiError> {
    let query = query_of(&caller, params)?;
    let page = app
        .store
        .list(&query)
        .await
        .map_err(|e| app.store_error("list", e))?;
    Ok(Json(TaskPage {
        items: page.items,
        next_cursor: page.next_cursor,
    }))
}

/// `GET /v1/tasks/counts`: how many of the caller's tasks (everyone's, or one owner's, for an
/// admin) are in each state.
#[utoipa::path(
    get,
    path = "/v1/tasks/counts",
    operation_id = "countTasks",
    tag = openapi::TASKS_TAG,
    summary = "How many of the caller's tasks are in each state",
    description = "From counters the store keeps with every change, so it costs the same however many tasks there are. Finished tasks count until their record expires. An admin gets everyone's counts, or one owner's with `owner`; for anybody else `owner` changes nothing.",
    params(EmptyAsAbsent<OwnerParams>, TraceHeaders),
    responses(
        (status = 200, description = "Tasks per state.", body = StateCounts),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 503, response = StoreUnavailable),
    )
)]
pub(crate) async fn counts(
    State(app): State<Arc<AppState>>,
    caller: Caller,
    Query(params): Query<OwnerParams>,
) -> Result<Json<StateCounts>, ApiError> {
    let owner = owner_of(&caller, params.owner, params.owner_tenant)?;
    let counts = app
        .store
        .counts(&owner)
        .await
        .map_err(|e| app.store_error("counts", e))?;
    Ok(Json(counts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_texts_are_checked() {
        assert!(time("t", Some("2026-01-31T12:00:00Z".into())).is_ok());
        assert!(time("t", Some("2026-01-31T12:00:00+02:00".into())).is_ok());
        assert!(time("t", Some("yesterday".into())).is_err());
        assert_eq!(time("t", Some(String::new())).expect("empty"), None);
        assert!(text("q", Some("x".repeat(MAX_TEXT + 1))).is_err());
        assert_eq!(
            text("q", Some("abc".into())).expect("ok").as_deref(),
            Some("abc")
        );
    }
}
