//! A task's action history as Redis keeps it: the optional blob after a record's payload (see
//! the `record` module), a JSON array of `{"k": outcome, "t": ms, "u": user, "tn": tenant}`
//! that `lua/cancel.lua` and `lua/retry.lua` append to (`add_action` in `lua/common.lua`) in
//! the script that changes the task, bounded to [`HISTORY_LIMIT`] entries.

use crate::error::corrupt;
use chrono::DateTime;
#[cfg(doc)]
use errand_core::HISTORY_LIMIT;
use errand_core::{Action, ActionOutcome, Owner, StoreError};
use serde::{Deserialize, Serialize};

/// One entry as stored.
#[derive(Serialize, Deserialize)]
struct StoredAction {
    /// What it did.
    k: ActionOutcome,
    /// When, in ms (the script's "now").
    t: i64,
    /// The actor's user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    u: Option<String>,
    /// The actor's tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tn: Option<String>,
}

/// The actor, as the scripts' argument: `{"u": user, "tn": tenant}`, absent parts left out.
pub(crate) fn actor_arg(by: &Owner) -> Result<String, StoreError> {
    #[derive(Serialize)]
    struct Actor<'a> {
        #[serde(skip_serializing_if = "Option::is_none")]
        u: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        tn: Option<&'a str>,
    }
    serde_json::to_string(&Actor {
        u: by.user_id.as_deref(),
        tn: by.tenant.as_deref(),
    })
    .map_err(|e| StoreError::Invalid(format!("the actor cannot be encoded: {e}")))
}

/// The actions a stored history blob holds (empty: none).
pub(crate) fn actions(blob: &[u8]) -> Result<Vec<Action>, StoreError> {
    if blob.is_empty() {
        return Ok(Vec::new());
    }
    let stored: Vec<StoredAction> = serde_json::from_slice(blob)
        .map_err(|e| corrupt(format!("a task's history is unreadable: {e}")))?;
    stored
        .into_iter()
        .map(|a| {
            let at = DateTime::from_timestamp_millis(a.t)
                .ok_or_else(|| corrupt(format!("a history time out of range: {}", a.t)))?;
            let by = Owner {
                user_id: a.u,
                tenant: a.tn,
            };
            Ok(Action::new(a.k, by, at))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_entries_read_back_as_actions() {
        let by = Owner::new("ops", None);
        assert_eq!(actor_arg(&by).expect("encodes"), r#"{"u":"ops"}"#);
        assert_eq!(actor_arg(&Owner::default()).expect("encodes"), "{}");
        // As Lua's cjson writes it: any key order, `/` escaped.
        let blob = br#"[{"t":1700000000000,"k":"cancel_requested","u":"o\/ps"},{"k":"requeued","tn":"acme","t":1700000000500}]"#;
        let got = actions(blob).expect("reads");
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].outcome, ActionOutcome::CancelRequested);
        assert_eq!(got[0].by, Owner::new("o/ps", None));
        assert_eq!(got[1].by.tenant.as_deref(), Some("acme"));
        assert_eq!(got[1].at.timestamp_millis(), 1_700_000_000_500);
        assert!(actions(b"").expect("empty").is_empty());
        assert!(actions(b"[{").is_err());
    }
}
