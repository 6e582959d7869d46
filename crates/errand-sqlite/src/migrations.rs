//! Versioned schema migrations: `sql/migrations/NNNN_name.sql`, applied in order inside one
//! transaction; the database's `PRAGMA user_version` records the last one applied, and its
//! `PRAGMA application_id` marks it as errand's.

use crate::database::Db;
use crate::error::SqliteError;
use rusqlite::{Connection, TransactionBehavior};

/// Marks errand task databases (`PRAGMA application_id`): "errd".
const APPLICATION_ID: i64 = 0x6572_7264;

/// One schema version.
struct Migration {
    version: i64,
    sql: &'static str,
}

/// Every schema version, oldest first. Never edit a released one; add the next.
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        sql: include_str!("../sql/migrations/0001_init.sql"),
    },
    Migration {
        version: 2,
        sql: include_str!("../sql/migrations/0002_lease_tokens.sql"),
    },
    Migration {
        version: 3,
        sql: include_str!("../sql/migrations/0003_listing.sql"),
    },
    Migration {
        version: 4,
        sql: include_str!("../sql/migrations/0004_history.sql"),
    },
    Migration {
        version: 5,
        sql: include_str!("../sql/migrations/0005_attempts.sql"),
    },
];

/// Every migration's SQL, oldest first (the whole schema when applied in order).
#[cfg(test)]
pub(crate) fn all() -> impl Iterator<Item = &'static str> {
    MIGRATIONS.iter().map(|m| m.sql)
}

/// The schema version this build writes.
pub(crate) fn latest() -> i64 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

/// Brings the schema of `conn`'s database up to date. A database already up to date is only
/// read, so opening does not need the write lock another process may hold.
pub(crate) fn run(conn: &mut Connection, db: &Db) -> Result<(), SqliteError> {
    let opening = |e| SqliteError::opening(&db.path, db.busy_timeout, e);
    if check(conn, db)? == latest() {
        return Ok(());
    }
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(opening)?;
    // Another process may have migrated while this one waited for the lock.
    let current = check(&tx, db)?;
    for m in MIGRATIONS.iter().filter(|m| m.version > current) {
        tx.execute_batch(m.sql)
            .and_then(|()| tx.pragma_update(None, "user_version", m.version))
            .map_err(|source| SqliteError::Migrate {
                path: db.path.clone(),
                version: m.version,
                source,
            })?;
    }
    tx.pragma_update(None, "application_id", APPLICATION_ID)
        .map_err(opening)?;
    tx.commit().map_err(opening)
}

/// The database's schema version, after checking that it is errand's (or empty) and not
/// newer than this build.
fn check(conn: &Connection, db: &Db) -> Result<i64, SqliteError> {
    let opening = |e| SqliteError::opening(&db.path, db.busy_timeout, e);
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(opening)?;
    let app: i64 = conn
        .pragma_query_value(None, "application_id", |r| r.get(0))
        .map_err(opening)?;
    let foreign = |why: String| SqliteError::Foreign {
        path: db.path.clone(),
        why,
    };
    if app != 0 && app != APPLICATION_ID {
        return Err(foreign(format!("application_id {app:#x}")));
    }
    if version == 0 {
        let objects: i64 = conn
            .query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))
            .map_err(opening)?;
        if objects > 0 {
            return Err(foreign(format!(
                "it holds {objects} schema objects but no errand schema"
            )));
        }
    }
    if version > latest() {
        return Err(SqliteError::TooNew {
            path: db.path.clone(),
            found: version,
            supported: latest(),
        });
    }
    Ok(version)
}
