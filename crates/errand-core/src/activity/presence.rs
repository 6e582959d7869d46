//! Which workers are alive: each worker process publishes an entry for itself (or, for the
//! runtime of remote workers, one per remote worker instance), with a timestamp the readers
//! judge it by.

use super::{merge_meta, read_meta};
use crate::store::{Store, StoreError};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// The meta record holding the deployment's workers.
pub const WORKERS_META: &str = "activity.workers";

/// An entry not refreshed for this long is dropped by the next publisher.
pub const FORGET_AFTER: Duration = Duration::from_secs(120);

/// One worker, as it last described itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WorkerPresence {
    /// The worker's id (unique per process or remote instance).
    pub id: String,
    /// The host it runs on.
    pub host: String,
    /// What it is written in: `rust` for errand's own workers, or what a remote worker says
    /// (`python` for the Python SDK).
    pub language: String,
    /// The queues it claims from.
    pub queues: Vec<String>,
    /// How many tasks it runs at once.
    pub concurrency: u32,
    /// How many it was running when it published.
    pub running: u32,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it last published (its heartbeat for this view).
    pub last_seen: DateTime<Utc>,
}

impl WorkerPresence {
    /// Whether it published less than `within` before `now` (an entry stamped after `now`,
    /// by a clock ahead of this one, counts as fresh).
    pub fn seen_within(&self, within: Duration, now: DateTime<Utc>) -> bool {
        (now - self.last_seen)
            .to_std()
            .map_or(true, |age| age < within)
    }
}

/// The stored record: workers by id.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Workers {
    workers: BTreeMap<String, WorkerPresence>,
}

/// Records `entries` (replacing earlier entries of the same ids), removes `gone`, and drops
/// every entry older than [`FORGET_AFTER`].
pub(crate) async fn publish(
    store: &dyn Store,
    entries: &[WorkerPresence],
    gone: &[String],
) -> Result<bool, StoreError> {
    let now = Utc::now();
    merge_meta(store, WORKERS_META, |w: &mut Workers| {
        for e in entries {
            w.workers.insert(e.id.clone(), e.clone());
        }
        for id in gone {
            w.workers.remove(id);
        }
        w.workers.retain(|_, e| e.seen_within(FORGET_AFTER, now));
    })
    .await
}

/// The workers that published within [`FORGET_AFTER`], most recently seen first.
pub async fn workers(store: &dyn Store) -> Result<Vec<WorkerPresence>, StoreError> {
    let now = Utc::now();
    let record: Workers = read_meta(store, WORKERS_META).await?;
    let mut list: Vec<WorkerPresence> = record
        .workers
        .into_values()
        .filter(|e| e.seen_within(FORGET_AFTER, now))
        .collect();
    list.sort_by(|a, b| b.last_seen.cmp(&a.last_seen).then_with(|| a.id.cmp(&b.id)));
    Ok(list)
}

/// This machine's host name (`unknown` when it cannot be read).
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryStore;

    fn entry(id: &str, seen: DateTime<Utc>) -> WorkerPresence {
        WorkerPresence {
            id: id.into(),
            host: "h".into(),
            language: "rust".into(),
            queues: vec!["default".into()],
            concurrency: 4,
            running: 1,
            started_at: seen,
            last_seen: seen,
        }
    }

    #[tokio::test]
    async fn publishers_share_one_record_and_stale_entries_go() {
        let store = MemoryStore::new();
        let now = Utc::now();
        let old = now - chrono::Duration::seconds(600);
        publish(&store, &[entry("a", now), entry("stale", old)], &[])
            .await
            .unwrap();
        publish(&store, &[entry("b", now)], &[]).await.unwrap();
        let ids: Vec<String> = workers(&store)
            .await
            .unwrap()
            .into_iter()
            .map(|w| w.id)
            .collect();
        assert_eq!(ids, ["a", "b"]);
        publish(&store, &[], &["a".into()]).await.unwrap();
        let ids: Vec<String> = workers(&store)
            .await
            .unwrap()
            .into_iter()
            .map(|w| w.id)
            .collect();
        assert_eq!(ids, ["b"]);
    }

    #[tokio::test]
    async fn concurrent_publishers_all_land() {
        let store = std::sync::Arc::new(MemoryStore::new());
        let mut joins = Vec::new();
        for i in 0..8 {
            let store = store.clone();
            joins.push(tokio::spawn(async move {
                publish(&*store, &[entry(&format!("w{i}"), Utc::now())], &[]).await
            }));
        }
        for j in joins {
            assert!(j.await.unwrap().unwrap());
        }
        assert_eq!(workers(&*store).await.unwrap().len(), 8);
    }
}
