//! The store reports the settings of its Redis that lose tasks: an eviction policy other than
//! `noeviction`, and persistence turned off. On a Redis of the test's own, changed with
//! `CONFIG SET` while the store runs.

mod common;

use common::PrivateRedis;
use errand_core::Store;
use errand_redis::{RedisConfig, RedisStore};
use std::time::Duration;

fn config_set(url: &str, name: &str, value: &str) {
    let mut conn = redis::Client::open(url)
        .expect("client")
        .get_connection_with_timeout(Duration::from_secs(2))
        .expect("connection");
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg(name)
        .arg(value)
        .query(&mut conn)
        .expect("CONFIG SET");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eviction_and_missing_persistence_are_warned_about() {
    let redis = PrivateRedis::start();
    let store = RedisStore::connect(
        &redis.url(),
        RedisConfig::default().prefix(common::unique_prefix()),
    )
    .await
    .expect("connects");
    // As the test starts it: no AOF, no snapshots, no eviction.
    let warnings = store.warnings().await.expect("warnings");
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("persistence is off"), "{warnings:?}");

    config_set(&redis.url(), "maxmemory-policy", "allkeys-lru");
    let warnings = store.warnings().await.expect("warnings");
    assert!(
        warnings.iter().any(|w| w.contains("allkeys-lru")),
        "{warnings:?}"
    );

    config_set(&redis.url(), "maxmemory-policy", "noeviction");
    config_set(&redis.url(), "appendonly", "yes");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let warnings = store.warnings().await.expect("warnings");
        if warnings.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still warned with AOF on: {warnings:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
