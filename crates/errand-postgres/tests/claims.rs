//! Claims from many processes at once: each task is claimed by exactly one of them (rows
//! another claim holds are skipped, not waited for nor taken twice).

mod common;

use common::{TempDb, claim_request};
use errand_core::{NewTask, Store, SystemClock, TaskId};
use std::collections::HashSet;
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_claims_take_each_task_once() {
    let db = TempDb::new().await;
    let stores = [
        db.store(Arc::new(SystemClock)).await,
        db.store(Arc::new(SystemClock)).await,
    ];
    let args = serde_json::value::to_raw_value(&serde_json::json!({})).expect("JSON");
    let tasks: Vec<NewTask> = (0..2000).map(|_| NewTask::new("t", args.clone())).collect();
    let ids: HashSet<TaskId> = tasks.iter().map(|t| t.id).collect();
    stores[0].enqueue(tasks).await.expect("enqueue");
    let claimers: Vec<_> = (0..8)
        .map(|i| {
            let store = stores[i % 2].clone();
            tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let got = store.claim(&claim_request(37)).await.expect("claim");
                    if got.is_empty() {
                        return mine;
                    }
                    mine.extend(got.iter().map(|c| c.lease.id));
                }
            })
        })
        .collect();
    let mut claimed = Vec::new();
    for c in claimers {
        claimed.extend(c.await.expect("joined"));
    }
    let unique: HashSet<TaskId> = claimed.iter().copied().collect();
    assert_eq!(claimed.len(), unique.len(), "no task was claimed twice");
    assert_eq!(unique, ids, "every task was claimed");
}
