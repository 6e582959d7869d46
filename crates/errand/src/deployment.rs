//! What `serve` and `worker` check about the store before they start, and watch while they
//! run:
//! - every process of one deployment must hold the keys the others use (the seal key that the
//!   store records, the token secret the others mint with), or it refuses to start;
//! - settings of the store that lose tasks (Redis evicting keys, persistence off) are warned
//!   about;
//! - a store this process can no longer write through (SQLite's writer thread died) stops the
//!   process with a non-zero exit, so that a supervisor restarts it.

use crate::backoff::Backoff;
use anyhow::bail;
use errand_core::deployment::{DeploymentError, KeyCheck, KeySet, check_keys};
use errand_core::{SealKeyRing, Store};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The ids of the keys this process uses: its seal keys, and the HS256 secrets of the tokens
/// it mints and accepts (`None` when it mints none).
pub struct Keys<'a> {
    /// The seal key ring.
    pub seal: &'a SealKeyRing,
    /// The signing secret's id first, then every accepted one (the signing one included).
    pub token: Option<(&'a str, Vec<&'a str>)>,
}

/// Checks this process's keys against the deployment's record in `store`, waiting (and
/// saying so) while the store cannot be reached. Fails with a message naming both key ids when
/// the process does not hold the deployment's key, or when `stop` fires first.
pub async fn check(
    store: &dyn Store,
    keys: &Keys<'_>,
    stop: &CancellationToken,
) -> anyhow::Result<()> {
    let seal_ids = keys.seal.ids();
    let mut sets = vec![(
        KeySet {
            kind: errand_core::deployment::KeyKind::Seal,
            signing: keys.seal.sealing().id(),
            accepted: &seal_ids,
        },
        "ERRAND_SEAL_KEYS (comma-separated base64 keys, the first seals)",
    )];
    if let Some((signing, accepted)) = &keys.token {
        sets.push((
            KeySet {
                kind: errand_core::deployment::KeyKind::Token,
                signing,
                accepted,
            },
            "ERRAND_JWT_SECRETS (comma-separated secrets, the first signs)",
        ));
    }
    for (set, setting) in sets {
        let mut backoff = Backoff::new(Duration::from_millis(100));
        loop {
            match check_keys(store, set).await {
                Ok(outcome) => {
                    log(&set, &outcome);
                    break;
                }
                Err(DeploymentError::Store(e)) if e.is_unavailable() => {
                    tracing::warn!(error = %e, "waiting for the task store to check this deployment's keys");
                    if !backoff.wait(stop).await {
                        bail!("stopped before the deployment's keys could be checked");
                    }
                }
                Err(e @ DeploymentError::Mismatch { .. }) => {
                    bail!("{e}. Set {setting} to the deployment's keys.")
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(())
}

fn log(set: &KeySet<'_>, outcome: &KeyCheck) {
    let what = set.kind.meta_name();
    match outcome {
        KeyCheck::Recorded => {
            tracing::info!(
                key = what,
                id = set.signing,
                "recorded this deployment's key id in the store"
            );
        }
        KeyCheck::Matches => {
            tracing::debug!(
                key = what,
                id = set.signing,
                "this process holds the deployment's key"
            );
        }
        KeyCheck::Rotated { previous } => tracing::info!(
            key = what,
            id = set.signing,
            previous = %previous,
            "rotated forward: this process signs with a newer key; the store now records it"
        ),
    }
}

/// Logs, once, each setting of the store that puts tasks at risk.
pub async fn warn_about(store: &dyn Store) {
    match store.warnings().await {
        Ok(warnings) => {
            for w in warnings {
                tracing::warn!("{w}");
            }
        }
        Err(e) => tracing::debug!(error = %e, "could not read the store's settings"),
    }
}

/// Resolves when this process can no longer write through `store` (it checks every
/// `every`), with the reason; never while the store is healthy.
pub async fn unhealthy(store: &dyn Store, every: Duration) -> String {
    loop {
        if let Err(e) = store.healthy().await {
            return e.to_string();
        }
        tokio::time::sleep(every).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use errand_core::{MemoryStore, SealKey};

    #[tokio::test]
    async fn a_store_that_can_no_longer_write_is_noticed() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = errand_sqlite::SqliteStore::open(
            dir.path().join("errand.db"),
            errand_sqlite::SqliteConfig::default(),
        )
        .expect("opens");
        let watch = tokio::spawn({
            let store = store.clone();
            async move { unhealthy(&store, Duration::from_millis(10)).await }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!watch.is_finished(), "a working store is healthy");
        // The writer thread stops.
        store.close().await;
        let reason = tokio::time::timeout(Duration::from_secs(5), watch)
            .await
            .expect("noticed within the check interval")
            .expect("joined");
        assert!(reason.contains("writer"), "{reason}");
    }

    #[tokio::test]
    async fn a_process_without_the_deployments_key_refuses_naming_both_ids() {
        let store = MemoryStore::new();
        let stop = CancellationToken::new();
        let first: SealKeyRing = SealKey::generate().into();
        let keys = Keys {
            seal: &first,
            token: None,
        };
        check(&store, &keys, &stop).await.expect("first records");
        let other: SealKeyRing = SealKey::generate().into();
        let keys = Keys {
            seal: &other,
            token: None,
        };
        let err = check(&store, &keys, &stop).await.expect_err("refused");
        let message = format!("{err:#}");
        assert!(
            message.contains(first.sealing().id()) && message.contains(other.sealing().id()),
            "{message}"
        );
        assert!(message.contains("ERRAND_SEAL_KEYS"), "{message}");
        // A ring holding the recorded key (rotating forward) starts.
        let rotated =
            SealKeyRing::new([other.sealing().clone(), first.sealing().clone()]).expect("ring");
        let keys = Keys {
            seal: &rotated,
            token: Some(("t1", vec!["t1"])),
        };
        check(&store, &keys, &stop).await.expect("rotation starts");
        let keys = Keys {
            seal: &rotated,
            token: Some(("t2", vec!["t2"])),
        };
        let err = check(&store, &keys, &stop)
            .await
            .expect_err("token secret refused");
        assert!(format!("{err:#}").contains("ERRAND_JWT_SECRETS"));
    }
}
