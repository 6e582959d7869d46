//! What the workers of a deployment are doing, shared through the store so that any API
//! process can show it: which workers are alive ([`presence`]) and what their attempts did,
//! minute by minute ([`minutes`]).
//!
//! Every worker keeps both in memory and publishes them to the store's meta records every
//! [`WorkerConfig::publish_interval`](crate::WorkerConfig::publish_interval) (5 s by default):
//! a few reads and one compare-and-swap per record, whatever the number of tasks. Readers get
//! pre-aggregated data: a list of workers, and one bucket per minute and queue for the last
//! hour, with histograms that merge by adding.

pub mod minutes;
pub mod presence;
mod publish;

pub use minutes::{Histogram, MinuteBucket, Minutes, QueueMinute, Recorder};
pub use presence::{WorkerPresence, workers};
pub(crate) use publish::{Instances, Publisher, publish_loop};

use crate::store::{Store, StoreError};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::time::Duration;

/// Changes the JSON meta record `name` with `change` (given the current value, or the
/// default when there is none or it does not parse) until the swap wins, up to 8 tries.
/// Returns whether it was written.
pub(crate) async fn merge_meta<T, F>(
    store: &dyn Store,
    name: &str,
    mut change: F,
) -> Result<bool, StoreError>
where
    T: Serialize + DeserializeOwned + Default,
    F: FnMut(&mut T),
{
    for round in 0..8u32 {
        let current = store.get_meta(name).await?;
        let mut value: T = current
            .as_deref()
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or_default();
        change(&mut value);
        let encoded = serde_json::to_string(&value)
            .map_err(|e| StoreError::Backend(format!("meta record `{name}`: {e}")))?;
        if store.swap_meta(name, current.as_deref(), &encoded).await? {
            return Ok(true);
        }
        // Another process wrote in between: read again after a short, spread-out pause.
        let jitter = u64::from(rand::random::<u8>() % 20) + u64::from(round) * 5;
        tokio::time::sleep(Duration::from_millis(jitter)).await;
    }
    Ok(false)
}

/// Reads the JSON meta record `name` (the default when absent or unreadable).
pub(crate) async fn read_meta<T>(store: &dyn Store, name: &str) -> Result<T, StoreError>
where
    T: DeserializeOwned + Default,
{
    Ok(store
        .get_meta(name)
        .await?
        .as_deref()
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or_default())
}
