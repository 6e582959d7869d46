//! A task's action history: who cancelled or retried it, and when ([`Action`], kept in
//! [`TaskRecord::history`](crate::TaskRecord::history)).
//!
//! Every store appends the entry in the same atomic write as the state change it records, so
//! an action that was refused (a conflict, an unknown task) leaves no entry, and of two
//! concurrent actions each one that changed the task has its entry. The history is bounded:
//! it keeps the last [`HISTORY_LIMIT`] entries, oldest first.

use crate::status::Owner;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The most entries a task's history keeps: appending to a full history drops its oldest
/// entry.
pub const HISTORY_LIMIT: usize = 50;

/// What was done to a task by request.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    /// Cancelled, or cancellation of the running task requested.
    Cancel,
    /// Requeued after it failed or was cancelled.
    Retry,
}

/// What an action did.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionOutcome {
    /// A waiting task was cancelled at once.
    Cancelled,
    /// A running task's cancellation was requested (its worker's token fired; the record ends
    /// `cancelled`).
    CancelRequested,
    /// A failed or cancelled task was requeued.
    Requeued,
}

impl ActionOutcome {
    /// The action that has this outcome.
    pub fn kind(self) -> ActionKind {
        match self {
            ActionOutcome::Cancelled | ActionOutcome::CancelRequested => ActionKind::Cancel,
            ActionOutcome::Requeued => ActionKind::Retry,
        }
    }

    /// The snake_case name used in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            ActionOutcome::Cancelled => "cancelled",
            ActionOutcome::CancelRequested => "cancel_requested",
            ActionOutcome::Requeued => "requeued",
        }
    }
}

/// One entry of a task's history: a cancel or retry that changed the task.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Action {
    /// What was done.
    pub action: ActionKind,
    /// What it did; always one of `action`'s outcomes.
    pub outcome: ActionOutcome,
    /// Who did it: the acting user and tenant (an admin acting on someone else's task is
    /// named here, not the task's owner).
    pub by: Owner,
    /// When, as the store recorded the change (the record's `updated_at` of that write).
    pub at: DateTime<Utc>,
}

impl Action {
    /// The entry for `outcome`, done by `by` at `at`; its `action` follows from the outcome.
    pub fn new(outcome: ActionOutcome, by: Owner, at: DateTime<Utc>) -> Self {
        Self {
            action: outcome.kind(),
            outcome,
            by,
            at,
        }
    }
}

/// Appends `action` to `history`, dropping the oldest entries beyond [`HISTORY_LIMIT`].
///
/// ```
/// use errand_core::{Action, ActionOutcome, HISTORY_LIMIT, Owner, push_action};
/// let mut history = Vec::new();
/// for _ in 0..HISTORY_LIMIT + 5 {
///     push_action(&mut history, Action::new(ActionOutcome::Requeued, Owner::default(), chrono::Utc::now()));
/// }
/// assert_eq!(history.len(), HISTORY_LIMIT);
/// ```
pub fn push_action(history: &mut Vec<Action>, action: Action) {
    history.push(action);
    if history.len() > HISTORY_LIMIT {
        let excess = history.len() - HISTORY_LIMIT;
        history.drain(..excess);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_serialize_snake_case_and_keep_the_newest() {
        let at = DateTime::from_timestamp_millis(1_700_000_000_000).expect("in range");
        let a = Action::new(
            ActionOutcome::CancelRequested,
            Owner::new("ops", Some("acme".into())),
            at,
        );
        assert_eq!(a.action, ActionKind::Cancel);
        let json = serde_json::to_value(&a).expect("serializes");
        assert_eq!(
            json,
            serde_json::json!({
                "action": "cancel",
                "outcome": "cancel_requested",
                "by": {"user_id": "ops", "tenant": "acme"},
                "at": "2023-11-14T22:13:20Z",
            })
        );
        assert_eq!(json["outcome"], a.outcome.as_str());
        let mut history = Vec::new();
        for i in 0..HISTORY_LIMIT + 3 {
            push_action(
                &mut history,
                Action::new(ActionOutcome::Requeued, Owner::new(i.to_string(), None), at),
            );
        }
        assert_eq!(history.len(), HISTORY_LIMIT);
        assert_eq!(history[0].by.user_id.as_deref(), Some("3"));
        assert_eq!(
            history[HISTORY_LIMIT - 1].by.user_id,
            Some((HISTORY_LIMIT + 2).to_string())
        );
    }
}
