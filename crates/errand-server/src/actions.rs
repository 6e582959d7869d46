//! Cancelling and retrying one task on behalf of a caller: the rules that
//! `POST /v1/tasks/{id}/cancel`, `POST /v1/tasks/{id}/retry` and `POST /v1/tasks/bulk` share.
//!
//! A task the caller may not see is [`Acted::NotFound`], exactly like one that does not exist,
//! and nothing is done to it. The store records the caller (its user and tenant: an admin
//! acting on someone else's task is named, not the owner) in the task's history with the
//! change.

use crate::caller::Caller;
use crate::error::ApiError;
use crate::state::AppState;
use errand_core::{
    ActionKind, ActionOutcome, CancelOutcome, Owner, RetryOutcome, TaskId, TaskRecord, TaskState,
};

/// What acting on one task did.
#[derive(Debug)]
pub(crate) enum Acted {
    /// The task changed: cancelled, its cancellation requested, or requeued; its record now.
    Done(ActionOutcome, Box<TaskRecord>),
    /// Its state does not allow the action.
    Conflict(TaskState),
    /// No such task, or not the caller's.
    NotFound,
}

/// Does `action` to task `id` if `caller` may see it, as `caller`. A store error is the API's
/// answer to it (503 when the store is unreachable).
pub(crate) async fn act(
    app: &AppState,
    caller: &Caller,
    id: TaskId,
    action: ActionKind,
) -> Result<Acted, ApiError> {
    if app.visible(caller, id).await?.is_none() {
        return Ok(Acted::NotFound);
    }
    act_as(app, &caller.owner(), id, action).await
}

/// Does `action` to task `id` as `by`, whose right to act on it was checked already.
pub(crate) async fn act_as(
    app: &AppState,
    by: &Owner,
    id: TaskId,
    action: ActionKind,
) -> Result<Acted, ApiError> {
    Ok(match action {
        ActionKind::Cancel => match app.store.cancel(id, by).await {
            Ok(CancelOutcome::Cancelled(r)) => Acted::Done(ActionOutcome::Cancelled, r),
            Ok(CancelOutcome::Requested(r)) => Acted::Done(ActionOutcome::CancelRequested, r),
            Ok(CancelOutcome::Conflict(state)) => Acted::Conflict(state),
            Ok(CancelOutcome::NotFound) => Acted::NotFound,
            Err(e) => return Err(app.store_error("cancel", e)),
        },
        ActionKind::Retry => match app.store.retry(id, by).await {
            Ok(RetryOutcome::Requeued(r)) => Acted::Done(ActionOutcome::Requeued, r),
            Ok(RetryOutcome::Conflict(state)) => Acted::Conflict(state),
            Ok(RetryOutcome::NotFound) => Acted::NotFound,
            Err(e) => return Err(app.store_error("retry", e)),
        },
    })
}

/// The 409 message of `action` refused in `state`.
pub(crate) fn conflict_message(id: TaskId, action: ActionKind, state: TaskState) -> String {
    match action {
        ActionKind::Cancel => format!(
            "task {id} is {state}; only pending, scheduled, retrying or running tasks can be cancelled"
        ),
        ActionKind::Retry => {
            format!("task {id} is {state}; only failed or cancelled tasks can be retried")
        }
    }
}
