//! Opening the configured store.

use crate::settings::StoreChoice;
use anyhow::Context as _;
use errand_core::{MemoryStore, Store};
use errand_postgres::{PostgresConfig, PostgresStore};
use errand_redis::{RedisConfig, RedisStore};
use errand_sqlite::{SqliteConfig, SqliteStore};
use std::sync::Arc;

/// Opens `choice`. SQLite creates its file (and directory); Redis connects lazily, so a Redis
/// that is down now is not an error (calls answer "unavailable" until it is back); PostgreSQL
/// must answer now, to create or upgrade its schema (later outages answer "unavailable").
pub async fn open(choice: &StoreChoice) -> anyhow::Result<Arc<dyn Store>> {
    Ok(match choice {
        StoreChoice::Sqlite(path) => {
            // Opening may migrate and wait for another process's lock: off the runtime.
            let at = path.clone();
            let opened = tokio::task::spawn_blocking(move || {
                SqliteStore::open(&at, SqliteConfig::default())
            })
            .await
            .context("the thread opening the SQLite store failed")?;
            Arc::new(
                opened.with_context(|| {
                    format!("cannot open the SQLite store at {}", path.display())
                })?,
            )
        }
        StoreChoice::Memory => Arc::new(MemoryStore::new()),
        StoreChoice::Redis { url, prefix } => Arc::new(
            RedisStore::connect(url, RedisConfig::default().prefix(prefix.clone()))
                .await
                .with_context(|| format!("cannot use the Redis store at {}", redact(url)))?,
        ),
        StoreChoice::Postgres {
            url,
            schema,
            poll_only,
        } => {
            let config = PostgresConfig {
                schema: schema.clone(),
                poll_only: *poll_only,
                ..PostgresConfig::default()
            };
            Arc::new(
                PostgresStore::connect(url, config).await.with_context(|| {
                    format!("cannot use the PostgreSQL store at {}", redact(url))
                })?,
            )
        }
    })
}

/// A Redis or PostgreSQL URL without its password, for messages and logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_string(),
    }
}

/// A short description of the store for logs.
pub fn describe(choice: &StoreChoice) -> String {
    match choice {
        StoreChoice::Sqlite(path) => format!("sqlite:{}", path.display()),
        StoreChoice::Memory => "memory".into(),
        StoreChoice::Redis { url, prefix } => format!("redis:{} (prefix {prefix})", redact(url)),
        StoreChoice::Postgres {
            url,
            schema,
            poll_only,
        } => {
            let polling = if *poll_only { ", polling only" } else { "" };
            format!("postgres:{} (schema {schema}{polling})", redact(url))
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            super::redact("redis://user:pw@host:6379/0"),
            "redis://***@host:6379/0"
        );
        assert_eq!(
            super::redact("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
    }
}
