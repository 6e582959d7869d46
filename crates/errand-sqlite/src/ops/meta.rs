//! Deployment facts: one named value each, swapped only from the value the caller expects.

use crate::error::OpError;
use crate::sql;
use crate::writer::WriteCx;
use rusqlite::{Connection, OptionalExtension, params};

/// One deployment fact.
pub(crate) fn get_meta(conn: &Connection, name: &str) -> Result<Option<String>, OpError> {
    Ok(conn
        .prepare_cached(sql::META_GET)?
        .query_row([name], |r| r.get(0))
        .optional()?)
}

/// Records `value` under `name` if `expected` is recorded (`None`: nothing); whether it did.
pub(crate) fn swap_meta(
    cx: &mut WriteCx<'_>,
    name: &str,
    expected: Option<&str>,
    value: &str,
) -> Result<bool, OpError> {
    let changed = match expected {
        None => cx
            .conn
            .prepare_cached(sql::META_INSERT)?
            .execute(params![name, value])?,
        Some(expected) => cx
            .conn
            .prepare_cached(sql::META_SWAP)?
            .execute(params![name, expected, value])?,
    };
    Ok(changed > 0)
}
