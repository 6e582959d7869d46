//! [`PostgresError`]: what goes wrong talking to Postgres, and how it maps to
//! [`StoreError`] (a server that cannot be reached is [`StoreError::Unavailable`], so the API
//! answers 503).

use errand_core::StoreError;

/// A failure of the Postgres store.
#[derive(Debug, thiserror::Error)]
pub enum PostgresError {
    /// The driver failed: the server is unreachable, refused the statement, or sent
    /// something unexpected.
    #[error("postgres: {0}")]
    Driver(#[from] sqlx_core::Error),
    /// A value read back is not what errand wrote.
    #[error("postgres holds data errand cannot read: {0}")]
    Corrupt(String),
    /// The request cannot be stored.
    #[error("invalid request to the postgres store: {0}")]
    Invalid(String),
}

impl PostgresError {
    /// A stored value that does not decode.
    pub(crate) fn corrupt(what: impl std::fmt::Display) -> Self {
        PostgresError::Corrupt(what.to_string())
    }

    /// Whether the error means the server cannot be reached right now.
    pub fn is_unavailable(&self) -> bool {
        let PostgresError::Driver(e) = self else {
            return false;
        };
        match e {
            sqlx_core::Error::Io(_)
            | sqlx_core::Error::Tls(_)
            | sqlx_core::Error::PoolTimedOut
            | sqlx_core::Error::PoolClosed
            | sqlx_core::Error::WorkerCrashed => true,
            sqlx_core::Error::Database(db) => db.code().is_some_and(|code| {
                // Connection exceptions, insufficient resources, operator intervention
                // (shutdown, recovery), and "the database system is starting up".
                ["08", "53", "57"]
                    .iter()
                    .any(|class| code.starts_with(class))
            }),
            _ => false,
        }
    }
}

impl PostgresError {
    /// Whether a unique index refused the write (another transaction stored the same key).
    pub(crate) fn is_unique_violation(&self) -> bool {
        matches!(self, PostgresError::Driver(sqlx_core::Error::Database(db)) if db.code().as_deref() == Some("23505"))
    }
}

impl From<PostgresError> for StoreError {
    fn from(e: PostgresError) -> Self {
        if e.is_unavailable() {
            return StoreError::Unavailable(e.to_string());
        }
        match e {
            PostgresError::Corrupt(m) => StoreError::Corrupt(m),
            PostgresError::Invalid(m) => StoreError::Invalid(m),
            PostgresError::Driver(
                e @ (sqlx_core::Error::Decode(_) | sqlx_core::Error::ColumnDecode { .. }),
            ) => StoreError::Corrupt(e.to_string()),
            PostgresError::Driver(sqlx_core::Error::Database(db))
                if db.code().is_some_and(|c| c.starts_with("22")) =>
            {
                // Data exceptions: a value the column cannot hold (a NUL byte in text, ...).
                StoreError::Invalid(db.to_string())
            }
            other => StoreError::Backend(other.to_string()),
        }
    }
}

/// The store's results.
pub(crate) type Result<T, E = PostgresError> = std::result::Result<T, E>;
