//! Core's store conformance suite on a Redis Cluster of the test's own (three primaries, one
//! replica each): every case under a key prefix of its own, so its queues (`{prefix:queue}`)
//! land in slots all over the cluster, and cases with several queues span several primaries.
//! Each case's keys are deleted when it ends (`clear`, which scans every primary).

mod common;

use common::cluster::TestCluster;
use errand_core::conformance::Guarded;
use errand_redis::{RedisConfig, RedisStore};

/// Deletes a prefix's keys on the cluster when dropped, through a store of its own on a
/// runtime of its own (the case's runtime may be ending).
struct ClusterKeys {
    url: String,
    prefix: String,
}

impl Drop for ClusterKeys {
    fn drop(&mut self) {
        let (url, prefix) = (self.url.clone(), self.prefix.clone());
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async {
                let config = RedisConfig::default().prefix(prefix).cluster(true);
                if let Ok(store) = RedisStore::connect(&url, config).await {
                    let _ = store.clear().await;
                }
            });
        })
        .join();
    }
}

errand_core::store_conformance!(|clock| async move {
    let url = TestCluster::shared().url();
    let prefix = common::unique_prefix();
    let config = RedisConfig::default()
        .prefix(prefix.clone())
        .clock(clock)
        .cluster(true);
    let store = RedisStore::connect(&url, config)
        .await
        .expect("store connects");
    Guarded::new(store, ClusterKeys { url, prefix })
});
