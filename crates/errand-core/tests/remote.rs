//! The runtime of remote workers' attempts, without HTTP: a process that stops hands the
//! attempts its remote workers hold back to the store without spending them, as a Rust worker
//! does at shutdown.

use errand_core::remote::types::RemoteTaskType;
use errand_core::remote::wire::ClaimSpec;
use errand_core::{MemoryStore, NewTask, RemoteConfig, RemoteWorkers, SealKey, Store, TaskState};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

fn spec() -> ClaimSpec {
    ClaimSpec {
        types: vec!["py_echo".into()],
        queues: None,
        max: 4,
        wait_s: Some(5.0),
        lease_s: Some(30.0),
        worker: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_process_hands_its_remote_attempts_back_unspent() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let key = SealKey::generate();
    let kind = RemoteTaskType::with_defaults("py_echo", "py");
    let types = BTreeMap::from([(kind.name.clone(), kind.clone())]);
    let args = serde_json::value::to_raw_value(&serde_json::json!({})).expect("json");
    let id = store
        .enqueue(vec![
            NewTask::new("py_echo", args).with_policy(&kind.policy()),
        ])
        .await
        .expect("enqueue")[0]
        .id;

    let first = RemoteWorkers::start(store.clone(), key.clone(), RemoteConfig::default());
    let claimed = first.claim("py-1", &spec(), &types).await.expect("claim");
    assert_eq!((claimed.len(), claimed[0].attempt), (1, 1));
    assert_eq!(first.held(), 1);
    let began = std::time::Instant::now();
    let stats = first.shutdown(Duration::ZERO).await.expect("stats");
    assert_eq!(stats.released, 1);
    assert!(
        began.elapsed() < Duration::from_secs(2),
        "handed back at once, not after the cancel grace: {:?}",
        began.elapsed()
    );

    let record = store.get(id).await.expect("get").expect("record");
    assert_eq!(record.status, TaskState::Pending, "{record:?}");
    let second = RemoteWorkers::start(store.clone(), key, RemoteConfig::default());
    let again = second.claim("py-2", &spec(), &types).await.expect("claim");
    assert_eq!(again[0].attempt, 1, "the handed-back attempt was not spent");
    assert_ne!(again[0].lease_token, claimed[0].lease_token);
    second.shutdown(Duration::ZERO).await;
}
