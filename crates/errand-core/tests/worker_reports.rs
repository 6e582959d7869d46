//! What a running task reports: its steps (a failed one recorded, the later ones skipped) and
//! its progress, written in coalesced batches.

mod common;

use common::faulty_store::FaultyStore;
use common::*;
use errand_core::*;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_step_is_recorded_and_later_steps_are_skipped() {
    let s = setup(Arc::new(MemoryStore::new()));
    let worker = s.worker(config(2));
    let bad = s
        .client
        .submit(Pipeline {
            fail_at: Some("embed".into()),
        })
        .await
        .expect("submit")
        .id;
    let good = s
        .client
        .submit(Pipeline { fail_at: None })
        .await
        .expect("submit")
        .id;
    let r = finished(&s.store, bad, LONG).await;
    assert_eq!(
        (r.status, r.attempt),
        (TaskState::Failed, 1),
        "fatal errors are not retried"
    );
    let steps: Vec<(&str, StepStatus)> = r
        .steps
        .iter()
        .map(|s| (s.name.as_str(), s.status))
        .collect();
    assert_eq!(
        steps,
        [
            ("chunk", StepStatus::Success),
            ("embed", StepStatus::Failed),
            ("index", StepStatus::Skipped),
            ("freshness", StepStatus::Skipped)
        ]
    );
    assert_eq!(r.steps[1].error.as_deref(), Some("embed failed: bad input"));
    let err = r.error.expect("error");
    assert_eq!(err.kind, "bad_input");
    assert_eq!(err.details, Some(serde_json::json!({"step": "embed"})));
    let ok = finished(&s.store, good, LONG).await;
    assert!(ok.steps.iter().all(|s| s.status == StepStatus::Success));
    assert_eq!(ok.progress.map(|p| (p.current, p.total)), Some((4, 4)));
    worker.shutdown(LONG).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_reports_are_coalesced() {
    let counting = Arc::new(FaultyStore::default());
    let s = setup(counting.clone());
    let worker = s.worker(WorkerConfig {
        report_interval: Duration::from_millis(100),
        ..config(4)
    });
    let ids: Vec<TaskId> = s
        .client
        .submit_batch((0..4).map(|_| Chatty { n: 300 }))
        .await
        .expect("submit")
        .into_iter()
        .map(|e| e.id)
        .collect();
    for id in &ids {
        let r = finished(&s.store, *id, LONG).await;
        assert_eq!(r.progress.map(|p| (p.current, p.total)), Some((300, 300)));
    }
    worker.shutdown(LONG).await;
    let writes = counting.reports.load(Ordering::Relaxed);
    // 1,200 progress calls over ~0.3 s+ become a handful of batched writes.
    assert!(
        (1..=30).contains(&writes),
        "{writes} report writes for 1,200 progress calls"
    );
}
