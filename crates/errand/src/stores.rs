//! Opening the configured store.

use crate::backoff::Backoff;
use crate::settings::StoreChoice;
use anyhow::Context as _;
use errand_core::{MemoryStore, Store};
use errand_postgres::{PostgresConfig, PostgresError, PostgresStore};
use errand_redis::{RedisConfig, RedisStore};
use errand_sqlite::{SqliteConfig, SqliteStore};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Opens `choice`. SQLite creates its file (and directory); Redis connects lazily, so a Redis
/// that is down now is not an error (calls answer "unavailable" until it is back); PostgreSQL
/// must answer now, to create or upgrade its schema (later outages answer "unavailable"; see
/// [`open_waiting`] for a process that should wait for it).
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
        StoreChoice::Redis { url, .. } => Arc::new(
            RedisStore::connect(url, redis_config(choice))
                .await
                .with_context(|| format!("cannot use the Redis store at {}", redact(url)))?,
        ),
        StoreChoice::Postgres {
            url,
            schema,
            poll_only,
        } => Arc::new(
            open_postgres(url, schema, *poll_only)
                .await
                .with_context(|| format!("cannot use the PostgreSQL store at {}", redact(url)))?,
        ),
    })
}

/// Opens `choice` as [`open`] does, but waits while a PostgreSQL store's server cannot be
/// reached (refused connections, a server starting up or shutting down), trying again with
/// growing pauses of up to 5 s and logging each failed try, so that `serve` and `worker`
/// started before their database come up when it does. Other errors (a bad URL, a refused
/// password, a schema that cannot be upgraded) fail at once, as does `stop`.
pub async fn open_waiting(
    choice: &StoreChoice,
    stop: &CancellationToken,
) -> anyhow::Result<Arc<dyn Store>> {
    let StoreChoice::Postgres {
        url,
        schema,
        poll_only,
    } = choice
    else {
        return open(choice).await;
    };
    let mut backoff = Backoff::new(Duration::from_millis(200));
    loop {
        match open_postgres(url, schema, *poll_only).await {
            Ok(store) => return Ok(Arc::new(store)),
            Err(e) if e.is_unavailable() => {
                tracing::warn!(
                    error = %e,
                    url = %redact(url),
                    retry_in = ?backoff.pause(),
                    "waiting for PostgreSQL: it cannot be reached"
                );
            }
            Err(e) => {
                return Err(e).with_context(|| {
                    format!("cannot use the PostgreSQL store at {}", redact(url))
                });
            }
        }
        if !backoff.wait(stop).await {
            anyhow::bail!("stopped while waiting for PostgreSQL at {}", redact(url));
        }
    }
}

/// Connects a PostgreSQL store: the database at `url`, errand's tables in `schema`.
async fn open_postgres(
    url: &str,
    schema: &str,
    poll_only: bool,
) -> Result<PostgresStore, PostgresError> {
    let config = PostgresConfig {
        schema: schema.to_string(),
        poll_only,
        ..PostgresConfig::default()
    };
    PostgresStore::connect(url, config).await
}

/// The settings of a Redis store for `choice` (defaults for any other store).
pub fn redis_config(choice: &StoreChoice) -> RedisConfig {
    let StoreChoice::Redis {
        prefix,
        cluster,
        wait_replicas,
        ..
    } = choice
    else {
        return RedisConfig::default();
    };
    let config = RedisConfig::default()
        .prefix(prefix.clone())
        .cluster(*cluster);
    let wait_timeout = config.wait_timeout;
    config.wait_replicas(*wait_replicas, wait_timeout)
}

/// A Redis or PostgreSQL URL (or a comma-separated list of them: a cluster's seed nodes)
/// without its passwords, for messages and logs.
pub fn redact(url: &str) -> String {
    url.split(',')
        .map(|one| match (one.find("://"), one.rfind('@')) {
            (Some(scheme), Some(at)) if at > scheme => {
                format!("{}://***@{}", &one[..scheme], &one[at + 1..])
            }
            _ => one.to_string(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// A short description of the store for logs.
pub fn describe(choice: &StoreChoice) -> String {
    match choice {
        StoreChoice::Sqlite(path) => format!("sqlite:{}", path.display()),
        StoreChoice::Memory => "memory".into(),
        StoreChoice::Redis {
            url,
            prefix,
            cluster,
            wait_replicas,
        } => {
            let cluster = if *cluster { ", cluster" } else { "" };
            let wait = match wait_replicas {
                0 => String::new(),
                n => format!(", waiting for {n} replicas"),
            };
            format!("redis:{} (prefix {prefix}{cluster}{wait})", redact(url))
        }
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
