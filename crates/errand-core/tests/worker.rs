//! The worker's rules: context restored per execution and never leaked, kept across retries
//! and redeliveries, captured by value; timeouts, panics, cancellation, shutdown and fencing.

mod common;

use common::*;
use errand_core::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

const LONG: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn context_less_task_never_sees_the_previous_tasks_context() {
    let s = setup(Arc::new(MemoryStore::new()));
    let mut ids = Vec::new();
    for i in 0..40 {
        let submit = s.client.submit(Observe { sleep_ms: 0 });
        let submit = if i % 2 == 0 {
            submit.context(user(&format!("user-{i}")))
        } else {
            submit.without_context()
        };
        ids.push((i, submit.await.expect("submit").id));
    }
    // One slot: every task runs on the heels of the previous one.
    let worker = s.worker(config(1));
    for (i, id) in &ids {
        let r = finished(&s.store, *id, LONG).await;
        assert_eq!(r.status, TaskState::Success);
        let seen = s.journal.of(*id);
        assert_eq!(seen.len(), 1);
        if i % 2 == 0 {
            let expected = format!("user-{i}");
            assert_eq!(seen[0].current_user.as_deref(), Some(expected.as_str()));
            assert_eq!(seen[0].cx_user.as_deref(), Some(expected.as_str()));
        } else {
            assert_eq!(seen[0].current_user, None, "task {i} saw a leaked context");
            assert_eq!(seen[0].cx_user, None);
            assert_eq!(r.owner, Owner::default());
        }
    }
    worker.shutdown(LONG).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_keep_the_original_context() {
    let s = setup(Arc::new(MemoryStore::new()));
    let worker = s.worker(config(8));
    let mut ids = Vec::new();
    for i in 0..20 {
        let ctx = user(&format!("flaky-{i}"));
        ids.push(
            s.client
                .submit(Flaky { fail_times: 2 })
                .context(ctx)
                .await
                .expect("submit")
                .id,
        );
    }
    for (i, id) in ids.iter().enumerate() {
        let r = finished(&s.store, *id, LONG).await;
        assert_eq!(r.status, TaskState::Success);
        assert_eq!(r.attempt, 3);
        let seen = s.journal.of(*id);
        assert_eq!(
            seen.iter().map(|s| s.attempt).collect::<Vec<_>>(),
            [1, 2, 3]
        );
        let expected = format!("flaky-{i}");
        for s in seen {
            assert_eq!(s.current_user.as_deref(), Some(expected.as_str()));
            assert_eq!(s.request_id, Some(format!("req-{expected}")));
        }
    }
    let stats = worker.shutdown(LONG).await;
    assert_eq!((stats.retried, stats.succeeded), (40, 20));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redelivery_after_a_lapsed_lease_keeps_the_context() {
    let clock = Arc::new(ManualClock::new());
    let s = setup(Arc::new(MemoryStore::with_clock(clock.clone())));
    let id = s
        .client
        .submit(Observe { sleep_ms: 0 })
        .context(user("carol"))
        .await
        .expect("submit")
        .id;
    // A worker claims it and dies without a word.
    let crashed = s
        .store
        .claim(&ClaimRequest {
            queues: vec![DEFAULT_QUEUE.into()],
            limit: 1,
            lease: Duration::from_secs(30),
            worker_id: "crashed".into(),
        })
        .await
        .expect("claim");
    assert_eq!(crashed.len(), 1);
    let worker = s.worker(WorkerConfig {
        reap_interval: Duration::from_millis(20),
        ..config(4)
    });
    clock.advance(Duration::from_secs(31));
    let r = finished(&s.store, id, LONG).await;
    assert_eq!(r.status, TaskState::Success);
    assert_eq!(r.attempt, 2, "the crashed attempt counts");
    let seen = s.journal.of(id);
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].current_user.as_deref(), Some("carol"));
    assert_eq!(seen[0].request_id.as_deref(), Some("req-carol"));
    worker.shutdown(LONG).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn context_is_captured_by_value_at_submission() {
    let s = setup(Arc::new(MemoryStore::new()));
    // The caller's own mutable state, from which it builds contexts.
    let state = std::sync::Mutex::new(String::from("alice"));
    let ctx = Context::builder()
        .user_id(state.lock().expect("lock").clone())
        .request_id("req-1")
        .build();
    let id = ctx
        .clone()
        .scope(async { s.client.submit(Observe { sleep_ms: 0 }).await })
        .await
        .expect("submit")
        .id;
    // The caller moves on: new state, new context, new scope.
    *state.lock().expect("lock") = "mallory".into();
    let later = ctx
        .to_builder()
        .user_id(state.lock().expect("lock").clone())
        .build();
    let worker = s.worker(config(2));
    later
        .scope(async {
            let r = finished(&s.store, id, LONG).await;
            assert_eq!(r.result.expect("result").get(), r#""alice""#);
        })
        .await;
    assert_eq!(s.journal.of(id)[0].current_user.as_deref(), Some("alice"));
    assert_eq!(ctx.user_id(), Some("alice"), "contexts are immutable");
    worker.shutdown(LONG).await;
}

#[tokio::test(start_paused = true)]
async fn timeouts_fail_the_attempt_and_retry_by_policy() {
    let s = setup(Arc::new(MemoryStore::with_clock(Arc::new(
        TokioClock::new(),
    ))));
    let worker = s.worker(config(2));
    let id = s
        .client
        .submit(Sleepy {
            ms: 3_600_000,
            cooperative: false,
        })
        .context(user("tim"))
        .timeout(Duration::from_secs(2))
        .max_attempts(2)
        .await
        .expect("submit")
        .id;
    let r = finished(&s.store, id, Duration::from_secs(7200)).await;
    assert_eq!(r.status, TaskState::Failed);
    assert_eq!(r.attempt, 2, "the first timeout was retried");
    let err = r.error.expect("error");
    assert_eq!(err.kind, "timeout");
    assert!(err.message.contains("timeout"), "{}", err.message);
    let stats = worker.shutdown(LONG).await;
    assert_eq!((stats.timed_out, stats.retried, stats.failed), (2, 1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_is_a_failed_attempt_not_a_dead_worker() {
    let s = setup(Arc::new(MemoryStore::new()));
    let worker = s.worker(config(1));
    let boom = s
        .client
        .submit(PanicOnce)
        .context(user("pat"))
        .await
        .expect("submit")
        .id;
    let after = s
        .client
        .submit(Observe { sleep_ms: 0 })
        .await
        .expect("submit")
        .id;
    let r = finished(&s.store, boom, LONG).await;
    assert_eq!((r.status, r.attempt), (TaskState::Success, 2));
    assert_eq!(
        finished(&s.store, after, LONG).await.status,
        TaskState::Success
    );
    let stats = worker.shutdown(LONG).await;
    assert_eq!(stats.panicked, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_pending_and_running_tasks() {
    let s = setup(Arc::new(MemoryStore::new()));
    let worker = s.worker(config(4));
    let later = s
        .client
        .submit(Observe { sleep_ms: 0 })
        .delay(Duration::from_secs(3600))
        .await
        .expect("submit")
        .id;
    assert!(matches!(
        s.store
            .cancel(later, &Owner::new("tester", None))
            .await
            .expect("cancel"),
        CancelOutcome::Cancelled(_)
    ));
    assert_eq!(
        s.store.get(later).await.expect("get").expect("rec").status,
        TaskState::Cancelled
    );

    let polite = s
        .client
        .submit(Sleepy {
            ms: 3_600_000,
            cooperative: true,
        })
        .await
        .expect("submit")
        .id;
    let stubborn = s
        .client
        .submit(Sleepy {
            ms: 3_600_000,
            cooperative: false,
        })
        .await
        .expect("submit")
        .id;
    for id in [polite, stubborn] {
        until(&s.store, id, LONG, |r| r.status == TaskState::Running).await;
        assert!(matches!(
            s.store
                .cancel(id, &Owner::new("tester", None))
                .await
                .expect("cancel"),
            CancelOutcome::Requested(_)
        ));
    }
    for id in [polite, stubborn] {
        let r = finished(&s.store, id, LONG).await;
        assert_eq!(r.status, TaskState::Cancelled, "{id}");
        assert_eq!(r.attempt, 1);
    }
    assert!(
        s.journal.of(later).is_empty(),
        "the cancelled pending task never ran"
    );
    let stats = worker.shutdown(LONG).await;
    assert_eq!(stats.cancelled, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_finishing_tasks() {
    let s = setup(Arc::new(MemoryStore::new()));
    let worker = s.worker(config(8));
    let ids: Vec<TaskId> = s
        .client
        .submit_batch((0..8).map(|n| Held { n }))
        .await
        .expect("submit")
        .into_iter()
        .map(|e| e.id)
        .collect();
    for id in &ids {
        until(&s.store, *id, LONG, |r| r.status == TaskState::Running).await;
    }
    // All eight are held until the shutdown has begun, then let go to finish within it.
    let release = tokio::spawn(async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        HELD_OPEN.store(true, std::sync::atomic::Ordering::SeqCst);
    });
    let stats = worker.shutdown(LONG).await;
    release.await.expect("the release runs");
    assert_eq!(stats.status, WorkerStatus::Completed);
    assert_eq!(
        (stats.running_at_shutdown, stats.succeeded, stats.released),
        (8, 8, 0)
    );
    for id in ids {
        assert_eq!(
            s.store.get(id).await.expect("get").expect("rec").status,
            TaskState::Success
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_past_the_drain_hands_tasks_back_without_spending_attempts() {
    let s = setup(Arc::new(MemoryStore::new()));
    let worker = s.worker(config(3));
    let ids: Vec<TaskId> = s
        .client
        .submit_batch((0..5).map(|_| Sleepy {
            ms: 3_600_000,
            cooperative: false,
        }))
        .await
        .expect("submit")
        .into_iter()
        .map(|e| e.id)
        .collect();
    until(&s.store, ids[2], LONG, |r| r.status == TaskState::Running).await;
    let stats = worker.shutdown(Duration::from_millis(100)).await;
    assert_eq!(stats.status, WorkerStatus::Timeout);
    assert_eq!((stats.running_at_shutdown, stats.released), (3, 3));
    for id in &ids {
        let r = s.store.get(*id).await.expect("get").expect("rec");
        assert_eq!((r.status, r.attempt), (TaskState::Pending, 0), "{id}");
    }
    // A fresh worker picks them up as first attempts.
    let next = s.worker(config(5));
    until(&s.store, ids[4], LONG, |r| r.status == TaskState::Running).await;
    for id in &ids {
        let r = until(&s.store, *id, LONG, |r| r.status == TaskState::Running).await;
        assert_eq!(r.attempt, 1);
    }
    next.shutdown(Duration::from_millis(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_returning_as_shutdown_stops_it_is_handed_back_not_failed() {
    let s = setup(Arc::new(MemoryStore::new()));
    let worker = s.worker(config(1));
    let id = s
        .client
        .submit(SpinUntilCancelled)
        .await
        .expect("submit")
        .id;
    until(&s.store, id, LONG, |r| r.status == TaskState::Running).await;
    // The shutdown's cancel fires on another thread while the task spins inside its poll; the
    // task then returns an error in that same poll.
    let stats = worker.shutdown(Duration::from_millis(50)).await;
    assert_eq!((stats.released, stats.retried, stats.failed), (1, 0, 0));
    let r = s.store.get(id).await.expect("get").expect("rec");
    assert_eq!(
        (r.status, r.attempt),
        (TaskState::Pending, 0),
        "no attempt spent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_lost_its_lease_cannot_complete() {
    let clock = Arc::new(ManualClock::new());
    let s = setup(Arc::new(MemoryStore::with_clock(clock.clone())));
    let worker = s.worker(WorkerConfig {
        lease: Duration::from_millis(300),
        maintenance: false,
        ..config(1)
    });
    let id = s
        .client
        .submit(Sleepy {
            ms: 3_600_000,
            cooperative: true,
        })
        .await
        .expect("submit")
        .id;
    until(&s.store, id, LONG, |r| r.status == TaskState::Running).await;
    // The worker stalls past its lease; another worker takes the task over.
    clock.advance(Duration::from_secs(60));
    assert_eq!(s.store.reap().await.expect("reap").requeued, 1);
    let takeover = s
        .store
        .claim(&ClaimRequest {
            queues: vec![DEFAULT_QUEUE.into()],
            limit: 1,
            lease: Duration::from_secs(600),
            worker_id: "takeover".into(),
        })
        .await
        .expect("claim");
    assert_eq!(takeover[0].attempt, 2);
    // The first worker learns at its next heartbeat, stops the task and writes nothing.
    let deadline = std::time::Instant::now() + LONG;
    while worker.stats().lost == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "lease loss not noticed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let r = s.store.get(id).await.expect("get").expect("rec");
    assert_eq!((r.status, r.attempt), (TaskState::Running, 2));
    let done = s
        .store
        .complete(vec![Completion {
            lease: takeover[0].lease,
            outcome: Outcome::Success(serde_json::value::to_raw_value(&"takeover").expect("json")),
            report: StatusUpdate::default(),
        }])
        .await
        .expect("complete");
    assert_eq!(done, [CompleteResult::Applied]);
    let stats = worker.shutdown(LONG).await;
    assert_eq!((stats.lost, stats.succeeded, stats.failed), (1, 0, 0));
    let r = s.store.get(id).await.expect("get").expect("rec");
    assert_eq!(r.result.expect("result").get(), r#""takeover""#);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_tasks_and_bad_args_fail_clearly() {
    let s = setup(Arc::new(MemoryStore::new()));
    let worker = s.worker(config(2));
    let raw = |name: &str, args: &str| {
        NewTask::new(
            name,
            serde_json::value::RawValue::from_string(args.into()).expect("json"),
        )
    };
    let out = s
        .store
        .enqueue(vec![
            raw("no_such_task", "{}"),
            raw("observe", r#"{"sleep_ms":"soon"}"#),
        ])
        .await
        .expect("enqueue");
    let unknown = finished(&s.store, out[0].id, LONG).await;
    assert_eq!(unknown.status, TaskState::Failed);
    let err = unknown.error.expect("error");
    assert_eq!((err.kind.as_str(), err.retryable), ("unregistered", false));
    assert!(err.message.contains("no_such_task"), "{}", err.message);
    let bad = finished(&s.store, out[1].id, LONG).await;
    assert_eq!((bad.status, bad.attempt), (TaskState::Failed, 1));
    let err = bad.error.expect("error");
    assert_eq!(err.kind, "invalid_args");
    assert!(
        err.message.contains("invalid type"),
        "serde's message: {}",
        err.message
    );
    worker.shutdown(LONG).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_reach_the_task_only_while_valid() {
    let s = setup(Arc::new(MemoryStore::new()));
    let soon = chrono::Utc::now() + chrono::Duration::hours(1);
    let past = chrono::Utc::now() - chrono::Duration::seconds(1);
    let valid = user("val")
        .to_builder()
        .credential(Secret::new("abcd"), Some(soon))
        .build();
    let expired = user("exp")
        .to_builder()
        .credential(Secret::new("abcd"), Some(past))
        .build();
    let a = s
        .client
        .submit(UseCredential)
        .context(valid)
        .await
        .expect("submit")
        .id;
    let b = s
        .client
        .submit(UseCredential)
        .context(expired)
        .await
        .expect("submit")
        .id;
    let worker = s.worker(config(2));
    let ra = finished(&s.store, a, LONG).await;
    assert_eq!(ra.result.expect("result").get(), r#""credential:4""#);
    let rb = finished(&s.store, b, LONG).await;
    assert_eq!(
        rb.status,
        TaskState::Success,
        "the task runs, without the credential"
    );
    assert!(
        rb.result
            .expect("result")
            .get()
            .contains("refused:the credential expired")
    );
    worker.shutdown(LONG).await;
}

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

/// A memory store with faults to switch on: slow completions, an outage, stalled heartbeats,
/// a result it refuses for good; it counts `report` calls.
#[derive(Default)]
struct FaultyStore {
    inner: MemoryStore,
    reports: AtomicUsize,
    complete_delay: Duration,
    down: AtomicBool,
    heartbeats_stalled: AtomicBool,
    refuse_result_of: std::sync::Mutex<Option<TaskId>>,
}

impl FaultyStore {
    fn up(&self) -> Result<(), StoreError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable("switched off by the test".into()));
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Store for FaultyStore {
    async fn enqueue(&self, t: Vec<NewTask>) -> Result<Vec<Enqueued>, StoreError> {
        self.up()?;
        self.inner.enqueue(t).await
    }
    async fn claim(&self, r: &ClaimRequest) -> Result<Vec<Claimed>, StoreError> {
        self.up()?;
        self.inner.claim(r).await
    }
    async fn heartbeat(&self, l: &[Lease], e: Duration) -> Result<Vec<LeaseState>, StoreError> {
        self.up()?;
        if self.heartbeats_stalled.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable(
                "heartbeats stalled by the test".into(),
            ));
        }
        self.inner.heartbeat(l, e).await
    }
    async fn report(&self, u: Vec<(Lease, StatusUpdate)>) -> Result<Vec<LeaseState>, StoreError> {
        self.up()?;
        self.reports.fetch_add(1, Ordering::Relaxed);
        self.inner.report(u).await
    }
    async fn complete(&self, c: Vec<Completion>) -> Result<Vec<CompleteResult>, StoreError> {
        tokio::time::sleep(self.complete_delay).await;
        self.up()?;
        let refused = *self.refuse_result_of.lock().expect("lock");
        if c.iter().any(|c| Some(c.lease.id) == refused) {
            return Err(StoreError::Invalid(
                "this result is too large for the store".into(),
            ));
        }
        self.inner.complete(c).await
    }
    async fn get(&self, id: TaskId) -> Result<Option<TaskRecord>, StoreError> {
        self.inner.get(id).await
    }
    async fn list(&self, q: &ListQuery) -> Result<Page, StoreError> {
        self.inner.list(q).await
    }
    async fn cancel(&self, id: TaskId, by: &Owner) -> Result<CancelOutcome, StoreError> {
        self.inner.cancel(id, by).await
    }
    async fn retry(&self, id: TaskId, by: &Owner) -> Result<RetryOutcome, StoreError> {
        self.inner.retry(id, by).await
    }
    async fn watch(&self, id: TaskId) -> Result<EventStream, StoreError> {
        self.inner.watch(id).await
    }
    async fn cancellations(
        &self,
    ) -> Result<futures::stream::BoxStream<'static, TaskId>, StoreError> {
        self.inner.cancellations().await
    }
    async fn work_signal(&self, q: &[String]) -> Result<Box<dyn WorkSignal>, StoreError> {
        self.inner.work_signal(q).await
    }
    async fn reap(&self) -> Result<Reaped, StoreError> {
        self.up()?;
        self.inner.reap().await
    }
    async fn purge_expired(&self) -> Result<u64, StoreError> {
        self.inner.purge_expired().await
    }
    async fn depth(&self) -> Result<QueueDepth, StoreError> {
        self.inner.depth().await
    }
    async fn counts(&self, owner: &OwnerFilter) -> Result<StateCounts, StoreError> {
        self.inner.counts(owner).await
    }
    async fn queues(&self) -> Result<Vec<QueueCounts>, StoreError> {
        self.inner.queues().await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.up()
    }
    async fn healthy(&self) -> Result<(), StoreError> {
        self.inner.healthy().await
    }
    async fn warnings(&self) -> Result<Vec<String>, StoreError> {
        self.inner.warnings().await
    }
    async fn get_meta(&self, name: &str) -> Result<Option<String>, StoreError> {
        self.inner.get_meta(name).await
    }
    async fn swap_meta(
        &self,
        name: &str,
        expected: Option<&str>,
        value: &str,
    ) -> Result<bool, StoreError> {
        self.inner.swap_meta(name, expected, value).await
    }
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

#[tokio::test(start_paused = true)]
async fn a_finished_attempt_keeps_its_lease_until_its_result_is_written() {
    // Every result takes three leases to write (a slow or briefly unreachable store); the
    // worker's own reaper runs often. No task may run twice. Time is tokio's, paused.
    let slow = Arc::new(FaultyStore {
        inner: MemoryStore::with_clock(Arc::new(TokioClock::new())),
        complete_delay: Duration::from_millis(900),
        ..Default::default()
    });
    let s = setup(slow);
    let worker = s.worker(WorkerConfig {
        lease: Duration::from_millis(300),
        reap_interval: Duration::from_millis(50),
        ..config(2)
    });
    let ids: Vec<TaskId> = s
        .client
        .submit_batch((0..6).map(|_| Observe { sleep_ms: 0 }))
        .await
        .expect("submit")
        .into_iter()
        .map(|e| e.id)
        .collect();
    for id in &ids {
        let r = finished(&s.store, *id, LONG).await;
        assert_eq!((r.status, r.attempt), (TaskState::Success, 1), "{id}");
        assert_eq!(s.journal.of(*id).len(), 1, "task {id} ran more than once");
    }
    let stats = worker.shutdown(LONG).await;
    assert_eq!((stats.claimed, stats.succeeded), (6, 6));
}

#[tokio::test(start_paused = true)]
async fn shutdown_with_the_store_down_gives_up_after_a_lease() {
    let faulty = Arc::new(FaultyStore {
        inner: MemoryStore::with_clock(Arc::new(TokioClock::new())),
        ..Default::default()
    });
    let s = setup(faulty.clone());
    let worker = s.worker(WorkerConfig {
        lease: Duration::from_millis(500),
        ..config(2)
    });
    let id = s
        .client
        .submit(Sleepy {
            ms: 200,
            cooperative: false,
        })
        .await
        .expect("submit")
        .id;
    until(&s.store, id, LONG, |r| r.status == TaskState::Running).await;
    // The store goes away while the task runs; its result cannot be written.
    faulty.down.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let stats = tokio::time::timeout(Duration::from_secs(10), worker.shutdown(LONG))
        .await
        .expect("shutdown returns even though the store never comes back");
    assert_eq!(stats.succeeded, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_the_store_refuses_does_not_hold_up_the_others() {
    let faulty = Arc::new(FaultyStore::default());
    let s = setup(faulty.clone());
    let ids: Vec<TaskId> = s
        .client
        .submit_batch((0..5).map(|_| Observe { sleep_ms: 0 }))
        .await
        .expect("submit")
        .into_iter()
        .map(|e| e.id)
        .collect();
    *faulty.refuse_result_of.lock().expect("lock") = Some(ids[2]);
    let worker = s.worker(config(8));
    for (i, id) in ids.iter().enumerate() {
        if i != 2 {
            assert_eq!(
                finished(&s.store, *id, LONG).await.status,
                TaskState::Success
            );
        }
    }
    let refused = s.store.get(ids[2]).await.expect("get").expect("rec");
    assert_eq!(
        refused.status,
        TaskState::Running,
        "left to its lease, which lapses"
    );
    let more = s
        .client
        .submit(Observe { sleep_ms: 0 })
        .await
        .expect("submit")
        .id;
    assert_eq!(
        finished(&s.store, more, LONG).await.status,
        TaskState::Success,
        "still claiming"
    );
    tokio::time::timeout(Duration::from_secs(10), worker.shutdown(LONG))
        .await
        .expect("shutdown returns");
}

#[tokio::test(start_paused = true)]
async fn a_worker_that_reclaims_its_own_lapsed_task_stops_the_older_attempt() {
    let faulty = Arc::new(FaultyStore {
        inner: MemoryStore::with_clock(Arc::new(TokioClock::new())),
        ..Default::default()
    });
    let s = setup(faulty.clone());
    faulty.heartbeats_stalled.store(true, Ordering::SeqCst);
    let worker = s.worker(WorkerConfig {
        lease: Duration::from_millis(600),
        reap_interval: Duration::from_millis(50),
        ..config(2)
    });
    let id = s
        .client
        .submit(Sleepy {
            ms: 1_500,
            cooperative: true,
        })
        .await
        .expect("submit")
        .id;
    // The stalled heartbeat lets the lease lapse; this same worker's reaper requeues the task
    // and its claim loop takes it again while the first attempt still runs.
    until(&s.store, id, LONG, |r| r.attempt == 2).await;
    faulty.heartbeats_stalled.store(false, Ordering::SeqCst);
    let r = finished(&s.store, id, LONG).await;
    assert_eq!((r.status, r.attempt), (TaskState::Success, 2));
    let stats = tokio::time::timeout(Duration::from_secs(10), worker.shutdown(LONG))
        .await
        .expect("no untracked attempt keeps the worker from stopping");
    assert_eq!(
        (stats.succeeded, stats.lost),
        (1, 1),
        "the first attempt was stopped, not finished"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_outside_the_run_fails_the_attempt() {
    let s = setup(Arc::new(MemoryStore::new()));
    let worker = s.worker(config(2));
    // Submitted raw: computing its policy panics in the submitter too.
    let task = NewTask::new(
        "bad_policy",
        serde_json::value::to_raw_value(&serde_json::json!({"items": []})).expect("json"),
    );
    let id = s.store.enqueue(vec![task]).await.expect("enqueue")[0].id;
    let r = finished(&s.store, id, LONG).await;
    assert_eq!(r.status, TaskState::Failed);
    let err = r.error.expect("error");
    assert_eq!((err.kind.as_str(), err.retryable), ("panic", false));
    let stats = worker.shutdown(LONG).await;
    assert_eq!(stats.panicked, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handed_back_task_shows_its_interrupted_step_as_pending() {
    let s = setup(Arc::new(MemoryStore::new()));
    let worker = s.worker(config(1));
    let id = s
        .client
        .submit(SlowStep { ms: 3_600_000 })
        .await
        .expect("submit")
        .id;
    until(&s.store, id, LONG, |r| {
        r.steps
            .first()
            .is_some_and(|s| s.status == StepStatus::Running)
    })
    .await;
    let stats = worker.shutdown(Duration::from_millis(20)).await;
    assert_eq!(stats.released, 1);
    let r = s.store.get(id).await.expect("get").expect("rec");
    assert_eq!(r.status, TaskState::Pending);
    let steps: Vec<_> = r
        .steps
        .iter()
        .map(|s| (s.name.as_str(), s.status))
        .collect();
    assert_eq!(
        steps,
        [("a", StepStatus::Pending), ("b", StepStatus::Pending)]
    );
}
