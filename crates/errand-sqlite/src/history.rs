//! A task's action history as stored: the `history` column holds the JSON array of its
//! [`Action`]s (NULL: none yet), replaced by the cancel or retry it records, in that write's
//! transaction, so a refused action records nothing.

use crate::codec;
use crate::error::OpError;
use crate::sql;
use errand_core::{Action, push_action};
use rusqlite::{Connection, params};

/// Appends `action` to the history of the task stored at `seq`, whose `history` column read
/// `stored` in this transaction, keeping the last [`errand_core::HISTORY_LIMIT`] entries.
pub(crate) fn append(
    conn: &Connection,
    seq: i64,
    stored: Option<&str>,
    action: Action,
) -> Result<(), OpError> {
    let mut history: Vec<Action> = match stored {
        None => Vec::new(),
        Some(text) => serde_json::from_str(text)
            .map_err(|e| OpError::Corrupt(format!("a task's history is unreadable: {e}")))?,
    };
    push_action(&mut history, action);
    conn.prepare_cached(sql::HISTORY_SET)?
        .execute(params![seq, codec::json(&history)?])?;
    Ok(())
}
