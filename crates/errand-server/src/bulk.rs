//! `POST /v1/tasks/bulk`: cancel or retry many tasks in one call, chosen by id or by a filter
//! over the caller's listing.
//!
//! Each task is acted on exactly as `POST /v1/tasks/{id}/cancel` or `/retry` would
//! ([`crate::actions`]): a task the caller may not see is `not_found` and is never touched
//! (an admin acts on anyone's), a state that does not allow the action is a `conflict` with
//! that state, and every change is recorded in the task's history naming the caller. The
//! tasks are acted on one by one (a few at a time), not in one transaction: two bulk calls on
//! the same tasks each win some of them, and each task changes once per winning action.

use crate::actions::{self, Acted};
use crate::caller::Caller;
use crate::error::ApiError;
use crate::extract::Json;
use crate::openapi::{
    self, BadRequest, PayloadTooLarge, StoreUnavailable, Unauthorized, UnsupportedMediaType,
};
use crate::state::AppState;
use axum::extract::State;
use errand_core::{ActionKind, ActionOutcome, ListQuery, TaskId, TaskState};
use futures::{StreamExt, TryStreamExt, stream};
use serde::{Deserialize, Deserializer, Serialize};
use std::collections::HashSet;
use std::sync::Arc;
use utoipa::openapi::schema::{AdditionalProperties, ArrayBuilder, OneOfBuilder, Schema};
use utoipa::openapi::{ObjectBuilder, Ref, RefOr};
use utoipa::{PartialSchema, ToSchema};

/// The most ids one call may name.
pub(crate) const MAX_IDS: usize = 1000;
/// The most tasks one call acts on in the filter form; `truncated` says more matched.
pub(crate) const MAX_MATCHED: usize = 10_000;
/// The largest listing page read for the filter form.
const PAGE: usize = 1000;
/// How many tasks one call acts on at a time.
const CONCURRENCY: usize = 16;

/// The body of `POST /v1/tasks/bulk`: an action and exactly one of `ids` and `filter`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BulkRequest {
    /// What to do to each task.
    action: ActionKind,
    /// The tasks, by id.
    #[serde(default, deserialize_with = "present")]
    ids: Option<Vec<TaskId>>,
    /// The tasks of the caller's listing that match.
    #[serde(default, deserialize_with = "present")]
    filter: Option<BulkFilter>,
}

/// Which of the caller's tasks the filter form acts on: those matching every field given
/// (none: all of them).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct BulkFilter {
    /// Only tasks in this state.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = TaskState)]
    status: Option<TaskState>,
    /// Only tasks of this name.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = String, min_length = 1)]
    name: Option<String>,
    /// Only tasks of this queue.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = String, min_length = 1)]
    queue: Option<String>,
}

/// An optional field that, when given, holds a value: `null` is refused like any other value
/// of the wrong type (the document does not allow it either).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// The tasks a request names.
enum Target {
    Ids(Vec<TaskId>),
    Filter(BulkFilter),
}

impl BulkRequest {
    /// The tasks named, checked: exactly one of `ids` (at most [`MAX_IDS`]) and `filter`.
    fn target(self) -> Result<Target, ApiError> {
        let invalid = |message: String| ApiError::bad_request("invalid_body", message);
        match (self.ids, self.filter) {
            (Some(ids), None) if ids.len() > MAX_IDS => Err(invalid(format!(
                "`ids` holds {} ids; one call takes at most {MAX_IDS}",
                ids.len()
            ))),
            (Some(ids), None) => Ok(Target::Ids(ids)),
            (None, Some(filter)) => {
                for (field, value) in [("name", &filter.name), ("queue", &filter.queue)] {
                    if value.as_ref().is_some_and(String::is_empty) {
                        return Err(invalid(format!("`filter.{field}` must not be empty")));
                    }
                }
                Ok(Target::Filter(filter))
            }
            _ => Err(invalid(
                "give exactly one of `ids` (the tasks by id) and `filter` (the tasks of your listing that match)".into(),
            )),
        }
    }
}

/// One form of the body: `action` and the field `name`, nothing else.
fn variant(name: &str, schema: impl Into<RefOr<Schema>>, description: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .property("action", Ref::from_schema_name(ActionKind::name()))
        .required("action")
        .property(name, schema)
        .required(name)
        .additional_properties(Some(AdditionalProperties::<Schema>::FreeForm(false)))
        .description(Some(description))
}

impl PartialSchema for BulkRequest {
    fn schema() -> RefOr<Schema> {
        let ids = ArrayBuilder::new()
            .items(TaskId::schema())
            .max_items(Some(MAX_IDS))
            .description(Some(format!(
                "At most {MAX_IDS} task ids; one named twice is acted on once."
            )));
        OneOfBuilder::new()
            .item(variant("ids", ids, "The tasks, by id."))
            .item(variant(
                "filter",
                Ref::from_schema_name(BulkFilter::name()),
                "The tasks of the caller's listing that match the filter.",
            ))
            .description(Some(
                "What to do (`cancel` or `retry`) to which tasks: exactly one of `ids` and `filter`.",
            ))
            .into()
    }
}

impl ToSchema for BulkRequest {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((ActionKind::name().into(), ActionKind::schema()));
        schemas.push((BulkFilter::name().into(), BulkFilter::schema()));
        BulkFilter::schemas(schemas);
    }
}

/// What one task's action did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum BulkOutcome {
    /// A waiting task was cancelled.
    Cancelled,
    /// A running task was asked to stop; its record ends `cancelled`.
    CancelRequested,
    /// A failed or cancelled task was requeued.
    Requeued,
    /// Its state does not allow the action (`status` says which it is).
    Conflict,
    /// No such task, or not the caller's: nothing was done.
    NotFound,
}

/// One task's result.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct BulkItem {
    /// The task's id.
    id: TaskId,
    /// What the action did.
    outcome: BulkOutcome,
    /// The task's state after the action; for a conflict, the state that refused it. Absent
    /// for `not_found`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = TaskState)]
    status: Option<TaskState>,
}

impl BulkItem {
    fn new(id: TaskId, acted: Acted) -> Self {
        let (outcome, status) = match acted {
            Acted::Done(outcome, record) => {
                let outcome = match outcome {
                    ActionOutcome::Cancelled => BulkOutcome::Cancelled,
                    ActionOutcome::CancelRequested => BulkOutcome::CancelRequested,
                    ActionOutcome::Requeued => BulkOutcome::Requeued,
                };
                (outcome, Some(record.status))
            }
            Acted::Conflict(state) => (BulkOutcome::Conflict, Some(state)),
            Acted::NotFound => (BulkOutcome::NotFound, None),
        };
        Self {
            id,
            outcome,
            status,
        }
    }
}

/// How many tasks had each outcome.
#[derive(Debug, Default, Serialize, ToSchema)]
pub(crate) struct BulkCounts {
    /// Cancelled at once.
    cancelled: u64,
    /// Running, asked to stop.
    cancel_requested: u64,
    /// Requeued.
    requeued: u64,
    /// Refused by their state.
    conflict: u64,
    /// Unknown or not the caller's.
    not_found: u64,
}

impl BulkCounts {
    fn of(items: &[BulkItem]) -> Self {
        let mut counts = Self::default();
        for item in items {
            *match item.outcome {
                BulkOutcome::Cancelled => &mut counts.cancelled,
                BulkOutcome::CancelRequested => &mut counts.cancel_requested,
                BulkOutcome::Requeued => &mut counts.requeued,
                BulkOutcome::Conflict => &mut counts.conflict,
                BulkOutcome::NotFound => &mut counts.not_found,
            } += 1;
        }
        counts
    }
}

/// The answer to `POST /v1/tasks/bulk`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct BulkAnswer {
    /// The action done.
    action: ActionKind,
    /// How many tasks had each outcome.
    counts: BulkCounts,
    /// Each task's result: in the order of `ids`, or newest first for a filter.
    results: Vec<BulkItem>,
    /// Whether more tasks matched the filter than one call acts on (10,000, the newest):
    /// call again for the rest. Always `false` for `ids`.
    truncated: bool,
}

/// `POST /v1/tasks/bulk`: cancels or retries the tasks named by `ids` or matched by `filter`,
/// each by the rules of the single-task routes, and reports what happened to each.
#[utoipa::path(
    post,
    path = "/v1/tasks/bulk",
    operation_id = "bulkTasks",
    tag = openapi::TASKS_TAG,
    summary = "Cancel or retry many tasks",
    description = "Acts on each task exactly as `POST /v1/tasks/{id}/cancel` or `/retry` would, and records the caller in its history. `ids` names at most 1,000 tasks; a task that does not exist or is not the caller's is `not_found` and untouched (an admin acts on anyone's). `filter` acts on the caller's tasks (everyone's for an admin) that match it, newest first, at most 10,000 per call (`truncated` says more matched). A task whose state does not allow the action is a `conflict`. Tasks are acted on one by one: when the store fails midway (503), what was done stays done, and calling again reports it as a conflict.",
    request_body(content = BulkRequest, description = "The action and the tasks."),
    responses(
        (status = 200, description = "What the action did to each task, and how many had each outcome.", body = BulkAnswer),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 503, response = StoreUnavailable),
    )
)]
pub(crate) async fn bulk(
    State(app): State<Arc<AppState>>,
    caller: Caller,
    Json(request): Json<BulkRequest>,
) -> Result<Json<BulkAnswer>, ApiError> {
    let action = request.action;
    let (results, truncated) = match request.target()? {
        Target::Ids(ids) => (by_ids(&app, &caller, ids, action).await?, false),
        Target::Filter(filter) => by_filter(&app, &caller, filter, action).await?,
    };
    let counts = BulkCounts::of(&results);
    tracing::info!(
        action = ?action,
        tasks = results.len(),
        changed = counts.cancelled + counts.cancel_requested + counts.requeued,
        conflict = counts.conflict,
        not_found = counts.not_found,
        truncated,
        "bulk action by request"
    );
    Ok(Json(BulkAnswer {
        action,
        counts,
        results,
        truncated,
    }))
}

/// Acts on each of `ids` (once per id, in order) that the caller may see.
async fn by_ids(
    app: &AppState,
    caller: &Caller,
    mut ids: Vec<TaskId>,
    action: ActionKind,
) -> Result<Vec<BulkItem>, ApiError> {
    let mut seen = HashSet::with_capacity(ids.len());
    ids.retain(|id| seen.insert(*id));
    stream::iter(ids)
        .map(|id| async move {
            let acted = actions::act(app, caller, id, action).await?;
            Ok::<_, ApiError>(BulkItem::new(id, acted))
        })
        .buffered(CONCURRENCY)
        .try_collect()
        .await
}

/// Acts on the newest [`MAX_MATCHED`] tasks of the caller's listing that match `filter`;
/// also whether more matched.
async fn by_filter(
    app: &AppState,
    caller: &Caller,
    filter: BulkFilter,
    action: ActionKind,
) -> Result<(Vec<BulkItem>, bool), ApiError> {
    let mut query = ListQuery::owner(caller.owner_filter());
    query.status = filter.status;
    query.name = filter.name;
    query.queue = filter.queue;
    let mut ids = Vec::new();
    let truncated = loop {
        query.limit = (MAX_MATCHED - ids.len()).min(PAGE);
        let page = app
            .store
            .list(&query)
            .await
            .map_err(|e| app.store_error("list", e))?;
        ids.extend(page.items.iter().map(|r| r.id));
        match page.next_cursor {
            Some(_) if ids.len() >= MAX_MATCHED => break true,
            Some(cursor) => query.cursor = Some(cursor),
            None => break false,
        }
    };
    ids.truncate(MAX_MATCHED);
    // The listing holds only tasks the caller may see.
    let by = caller.owner();
    let results = stream::iter(ids)
        .map(|id| {
            let by = &by;
            async move {
                let acted = actions::act_as(app, by, id, action).await?;
                Ok::<_, ApiError>(BulkItem::new(id, acted))
            }
        })
        .buffered(CONCURRENCY)
        .try_collect()
        .await?;
    Ok((results, truncated))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: serde_json::Value) -> Result<Target, String> {
        serde_json::from_value::<BulkRequest>(body)
            .map_err(|e| e.to_string())?
            .target()
            .map_err(|e| e.message().to_string())
    }

    #[test]
    fn exactly_one_of_ids_and_filter_is_taken() {
        let id = TaskId::new().to_string();
        assert!(matches!(
            parse(serde_json::json!({"action": "cancel", "ids": [id]})),
            Ok(Target::Ids(ids)) if ids.len() == 1
        ));
        assert!(matches!(
            parse(serde_json::json!({"action": "retry", "filter": {"status": "failed"}})),
            Ok(Target::Filter(f)) if f.status == Some(TaskState::Failed)
        ));
        for bad in [
            serde_json::json!({"action": "cancel"}),
            serde_json::json!({"action": "cancel", "ids": [], "filter": {}}),
            serde_json::json!({"action": "cancel", "ids": null}),
            serde_json::json!({"action": "cancel", "filter": {"name": null}}),
            serde_json::json!({"action": "cancel", "filter": {"name": ""}}),
            serde_json::json!({"action": "cancel", "filter": {"owner": "bob"}}),
            serde_json::json!({"action": "purge", "ids": []}),
            serde_json::json!({"ids": []}),
            serde_json::json!({"action": "cancel", "ids": ["not-a-uuid"]}),
            serde_json::json!({"action": "cancel", "ids": [], "extra": 1}),
        ] {
            assert!(parse(bad.clone()).is_err(), "{bad}");
        }
        let many: Vec<String> = (0..=MAX_IDS).map(|_| TaskId::new().to_string()).collect();
        let refused = parse(serde_json::json!({"action": "cancel", "ids": many}));
        assert!(refused.is_err_and(|m| m.contains("at most 1000")));
    }
}
