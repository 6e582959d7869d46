//! [`Store::warnings`](errand_core::Store::warnings) for Postgres: settings under which a
//! commit the store reported may not survive a crash of the server.

use crate::error::Result;
use crate::store::PostgresStore;
use sqlx_core::query::query;
use sqlx_core::row::Row;

/// The sentence for an unsafe `setting` of `name`, if it is one.
fn risk(name: &str, setting: &str) -> Option<&'static str> {
    match (name, setting) {
        ("fsync", "off") => Some(
            "fsync is off: a crash of the Postgres server can lose or corrupt tasks; turn it on",
        ),
        ("full_page_writes", "off") => Some(
            "full_page_writes is off: a crash of the Postgres server can corrupt the task tables; turn it on",
        ),
        ("synchronous_commit", "off") => Some(
            "synchronous_commit is off: a crash of the Postgres server can lose the last enqueues and completions errand reported as stored (tasks vanish or run again); set it to on",
        ),
        _ => None,
    }
}

impl PostgresStore {
    pub(crate) async fn risky_settings(&self) -> Result<Vec<String>> {
        let rows = query(&self.sql().settings).fetch_all(self.pool()).await?;
        let mut found = Vec::new();
        for row in &rows {
            let (name, setting): (String, String) = (row.try_get(0)?, row.try_get(1)?);
            found.extend(risk(&name, &setting).map(String::from));
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::risk;

    #[test]
    fn only_unsafe_settings_are_risks() {
        assert!(risk("fsync", "off").is_some());
        assert!(risk("fsync", "on").is_none());
        assert!(risk("synchronous_commit", "local").is_none());
        assert!(risk("synchronous_commit", "off").is_some());
        assert!(risk("full_page_writes", "off").is_some());
    }
}
