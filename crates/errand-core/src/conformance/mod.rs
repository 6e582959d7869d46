//! The store conformance suite: one set of tests every [`Store`] must pass.
//!
//! A store crate runs it from its tests with [`store_conformance!`](crate::store_conformance),
//! giving a closure that builds a fresh, empty store (its own file, key prefix or queue) on the
//! test's [`ManualClock`]:
//!
//! ```ignore
//! errand_core::store_conformance!(|clock| async move { MyStore::open_temp(clock).await });
//! ```
//!
//! Every test drives time through the clock instead of sleeping, except where a real worker
//! runs (the concurrent-users test) or a wake-up is measured.

use crate::{
    CancelOutcome, ClaimRequest, Claimed, Client, CompleteResult, Completion, Context, Enqueued,
    ErrorInfo, LEASE_EXPIRED, Lease, LeaseState, ListQuery, ManualClock, NewTask, Outcome,
    OwnerFilter, Progress, Registry, RetryOutcome, SealKey, SealKeyRing, Secret, StatusUpdate,
    Step, StepStatus, Store, Task, TaskCx, TaskError, TaskId, TaskState, Worker,
};
use futures::StreamExt;
use serde_json::value::RawValue;

mod attempts;
mod cycle;
mod guarded;
mod history;
mod listing;
mod tampering;
pub use attempts::{
    attempt_log_is_bounded_to_the_newest, attempt_log_records_cancellation,
    attempt_log_records_every_end_but_success, get_shows_args_and_trace_id,
};
pub use cycle::complete_and_claim_ends_then_claims;
pub use guarded::Guarded;
pub use history::{
    actions_of_two_admins_at_once_all_land, history_is_bounded_to_the_newest,
    history_names_the_actor_and_time, refused_actions_leave_history_unchanged,
};
pub use listing::{counts_stay_exact_under_concurrency, every_filter_answers_what_matches_admits};
use std::sync::Arc;
use std::time::Duration;
pub use tampering::{Victims, tampered_contexts_never_run};

/// Generates one `#[tokio::test]` per conformance case for the store built by `$make`, a
/// closure `|clock: Arc<ManualClock>| async { store }`.
#[macro_export]
macro_rules! store_conformance {
    ($make:expr) => {
        $crate::store_conformance!(@cases $make;
            enqueue_then_get,
            batch_enqueue_claims_oldest_first,
            idempotency_key_returns_live_task,
            delay_schedules_task,
            lapsed_lease_is_reclaimed_with_same_context,
            lapsed_lease_without_attempts_left_fails,
            heartbeat_extends_lease,
            retry_outcome_waits_for_backoff,
            success_and_failure_are_recorded,
            reports_merge_progress_and_steps,
            cancel_waiting_task,
            cancel_running_task,
            manual_retry_requeues_with_context,
            list_is_isolated_newest_first_and_paged,
            watch_delivers_each_change,
            finished_records_expire,
            release_does_not_spend_attempt,
            work_signal_wakes_idle_worker,
            concurrent_users_never_mix,
            a_watcher_leaving_does_not_end_the_others,
            stale_leases_are_rejected_for_every_outcome,
            lapsed_lease_of_a_cancel_requested_task_is_cancelled,
            keys_are_freed_by_every_final_state,
            manual_retry_of_cancelled_expired_and_contested_tasks,
            cancel_then_retry_then_backoff_is_respected,
            claims_skip_cancelled_entries,
            claims_across_queues_take_the_oldest,
            listing_owners_without_tenant_and_filtered_pages,
            durations_are_clamped_not_overflowed,
            deployment_facts_swap_atomically,
            history_names_the_actor_and_time,
            refused_actions_leave_history_unchanged,
            actions_of_two_admins_at_once_all_land,
            history_is_bounded_to_the_newest,
            every_filter_answers_what_matches_admits,
            counts_stay_exact_under_concurrency,
            attempt_log_records_every_end_but_success,
            attempt_log_records_cancellation,
            attempt_log_is_bounded_to_the_newest,
            get_shows_args_and_trace_id,
            complete_and_claim_ends_then_claims
        );
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let clock = ::std::sync::Arc::new($crate::ManualClock::new());
                let store = ($make)(clock.clone()).await;
                $crate::conformance::$case(::std::sync::Arc::new(store), clock).await;
            }
        )*
    };
}

type S = Arc<dyn Store>;
type C = Arc<ManualClock>;

const LEASE: Duration = Duration::from_secs(30);

fn ctx(user: &str) -> Context {
    Context::builder()
        .user_id(user)
        .tenant("acme")
        .request_id(format!("req-{user}"))
        .correlation_id(format!("corr-{user}"))
        .credential(Secret::new(format!("token-of-{user}")), None)
        .build()
}

/// Who acts in the cases that are not about the history.
fn actor() -> crate::Owner {
    crate::Owner::new("operator", Some("acme".into()))
}

fn args(v: serde_json::Value) -> Box<RawValue> {
    serde_json::value::to_raw_value(&v).expect("JSON value serializes")
}

fn ring() -> SealKeyRing {
    SealKey::generate().into()
}

/// A claimed task's context, opened as a worker opens it.
fn open(c: &Claimed, key: &SealKeyRing) -> Context {
    c.context
        .as_ref()
        .expect("context")
        .open(key, c.seal_binding())
        .expect("opens")
}

fn task_for(user: &str, key: &SealKeyRing) -> NewTask {
    NewTask::new("conformance", args(serde_json::json!({"user": user})))
        .with_context(&ctx(user), key)
        .expect("context seals")
}

async fn enqueue_one(store: &S, task: NewTask) -> Enqueued {
    let mut out = store.enqueue(vec![task]).await.expect("enqueue");
    assert_eq!(out.len(), 1, "one result per task");
    out.remove(0)
}

async fn claim(store: &S, limit: usize) -> Vec<Claimed> {
    store
        .claim(&ClaimRequest {
            queues: vec!["default".into()],
            limit,
            lease: LEASE,
            worker_id: "conformance".into(),
        })
        .await
        .expect("claim")
}

async fn claim_one(store: &S) -> Claimed {
    let mut got = claim(store, 1).await;
    assert_eq!(got.len(), 1, "expected one claimable task");
    got.remove(0)
}

async fn complete(store: &S, lease: Lease, outcome: Outcome) -> CompleteResult {
    store
        .complete(vec![Completion {
            lease,
            outcome,
            report: StatusUpdate::default(),
        }])
        .await
        .expect("complete")[0]
}

async fn get(store: &S, id: TaskId) -> crate::TaskRecord {
    store.get(id).await.expect("get").expect("record exists")
}

fn error(kind: &str, retryable: bool) -> ErrorInfo {
    ErrorInfo {
        message: format!("{kind} happened"),
        kind: kind.into(),
        details: Some(serde_json::json!({"detail": 1})),
        retryable,
    }
}

/// A new task reads back with everything it was given.
pub async fn enqueue_then_get(store: S, _clock: C) {
    let key = ring();
    let mut t = task_for("alice", &key);
    t.max_attempts = 4;
    t.timeout = Duration::from_secs(7);
    t.key = Some("k1".into());
    let id = t.id;
    let e = enqueue_one(&store, t).await;
    assert_eq!(e.id, id);
    assert!(!e.deduplicated);
    assert_eq!(e.status, TaskState::Pending);
    let r = get(&store, id).await;
    assert_eq!(r.status, TaskState::Pending);
    assert_eq!(r.name, "conformance");
    assert_eq!(r.queue, "default");
    assert_eq!(r.owner.user_id.as_deref(), Some("alice"));
    assert_eq!(r.owner.tenant.as_deref(), Some("acme"));
    assert_eq!(r.correlation_id.as_deref(), Some("corr-alice"));
    assert_eq!(r.request_id.as_deref(), Some("req-alice"));
    assert_eq!(r.key.as_deref(), Some("k1"));
    assert_eq!((r.attempt, r.max_attempts, r.timeout_ms), (0, 4, 7000));
    assert!(r.started_at.is_none() && r.completed_at.is_none() && r.expires_at.is_none());
    let json = serde_json::to_string(&r).expect("record serializes");
    assert!(!json.contains("token-of-alice"), "no secret in the record");
    assert!(store.get(TaskId::new()).await.expect("get").is_none());
}

/// A batch is stored in one call and claimed oldest first, within the limit and the queues.
pub async fn batch_enqueue_claims_oldest_first(store: S, _clock: C) {
    let key = ring();
    let batch: Vec<NewTask> = (0..10).map(|i| task_for(&format!("u{i}"), &key)).collect();
    let ids: Vec<TaskId> = batch.iter().map(|t| t.id).collect();
    let mut other = task_for("other-queue", &key);
    other.queue = "elsewhere".into();
    let out = store.enqueue(batch).await.expect("enqueue");
    assert_eq!(out.len(), 10);
    assert_eq!(out.iter().map(|e| e.id).collect::<Vec<_>>(), ids);
    enqueue_one(&store, other).await;
    let depth = store.depth().await.expect("depth");
    assert_eq!((depth.waiting, depth.running), (11, 0));

    let first = claim(&store, 4).await;
    let depth = store.depth().await.expect("depth");
    assert_eq!((depth.waiting, depth.running), (7, 4));
    assert_eq!(
        first.iter().map(|c| c.lease.id).collect::<Vec<_>>(),
        ids[..4]
    );
    for c in &first {
        assert_eq!(c.attempt, 1);
        assert_eq!(c.name, "conformance");
        assert_eq!(get(&store, c.lease.id).await.status, TaskState::Running);
        let opened = open(c, &key);
        assert_eq!(opened.user_id(), c.owner.user_id.as_deref());
    }
    let rest = claim(&store, 100).await;
    assert_eq!(
        rest.iter().map(|c| c.lease.id).collect::<Vec<_>>(),
        ids[4..]
    );
    assert!(
        claim(&store, 10).await.is_empty(),
        "default queue is drained"
    );
    let elsewhere = store
        .claim(&ClaimRequest {
            queues: vec!["elsewhere".into()],
            limit: 10,
            lease: LEASE,
            worker_id: "w".into(),
        })
        .await
        .expect("claim");
    assert_eq!(elsewhere.len(), 1);
}

/// A live key returns the existing task; other owners' keys and finished tasks do not count.
pub async fn idempotency_key_returns_live_task(store: S, _clock: C) {
    let key = ring();
    let keyed = |user: &str| {
        let mut t = task_for(user, &key);
        t.key = Some("same-key".into());
        t
    };
    let first = enqueue_one(&store, keyed("alice")).await;
    let again = enqueue_one(&store, keyed("alice")).await;
    assert!(again.deduplicated);
    assert_eq!(again.id, first.id);
    let bob = enqueue_one(&store, keyed("bob")).await;
    assert!(
        !bob.deduplicated,
        "another owner's equal key is a different task"
    );
    assert_ne!(bob.id, first.id);

    let in_batch = store
        .enqueue(vec![keyed("carol"), keyed("carol")])
        .await
        .expect("enqueue");
    assert!(!in_batch[0].deduplicated && in_batch[1].deduplicated);
    assert_eq!(in_batch[0].id, in_batch[1].id);

    // Still live while running.
    let c = claim(&store, 10).await;
    let alice_lease = c
        .iter()
        .find(|c| c.lease.id == first.id)
        .expect("claimed")
        .lease;
    let running = enqueue_one(&store, keyed("alice")).await;
    assert!(running.deduplicated);
    assert_eq!(running.status, TaskState::Running);

    // Finished: the key is free again.
    let done = complete(
        &store,
        alice_lease,
        Outcome::Success(args(serde_json::json!(1))),
    )
    .await;
    assert_eq!(done, CompleteResult::Applied);
    let fresh = enqueue_one(&store, keyed("alice")).await;
    assert!(!fresh.deduplicated);
    assert_ne!(fresh.id, first.id);
}

/// A delayed task is `scheduled` and not claimable before its time.
pub async fn delay_schedules_task(store: S, clock: C) {
    let key = ring();
    let mut t = task_for("alice", &key);
    t.delay = Some(Duration::from_secs(10));
    let e = enqueue_one(&store, t).await;
    assert_eq!(e.status, TaskState::Scheduled);
    let r = get(&store, e.id).await;
    assert_eq!(r.status, TaskState::Scheduled);
    let run_at = r.run_at.expect("run_at set");
    assert_eq!((run_at - r.created_at).num_seconds(), 10);
    assert!(claim(&store, 10).await.is_empty());
    clock.advance(Duration::from_secs(11));
    let c = claim_one(&store).await;
    assert_eq!(c.lease.id, e.id);
}

/// A lease that lapses hands the task to the next claim, with the same context, a higher
/// attempt and a new fence; the old holder is fenced out.
pub async fn lapsed_lease_is_reclaimed_with_same_context(store: S, clock: C) {
    let key = ring();
    let e = enqueue_one(&store, task_for("alice", &key)).await;
    let first = claim_one(&store).await;
    assert_eq!(
        store.reap().await.expect("reap").requeued,
        0,
        "lease still held"
    );
    clock.advance(LEASE + Duration::from_secs(1));
    let reaped = store.reap().await.expect("reap");
    assert_eq!(reaped.requeued, 1);
    let r = get(&store, e.id).await;
    assert_eq!(r.status, TaskState::Pending);
    assert_eq!(
        r.error.as_ref().map(|e| e.kind.as_str()),
        Some(LEASE_EXPIRED)
    );
    assert_eq!(
        store.reap().await.expect("reap").requeued,
        0,
        "reaping twice is harmless"
    );

    let second = claim_one(&store).await;
    assert_eq!(second.attempt, 2);
    assert_ne!(
        second.lease.token, first.lease.token,
        "a new claim, a new token"
    );
    assert_eq!(
        second.context.as_ref().map(|c| c.as_str().to_string()),
        first.context.as_ref().map(|c| c.as_str().to_string()),
        "the context document is unchanged"
    );
    let opened = open(&second, &key);
    assert_eq!(opened.user_id(), Some("alice"));
    assert_eq!(
        opened.credential().expect("credential").expose(),
        "token-of-alice"
    );

    // The worker that lost its lease is fenced out everywhere.
    let stale = first.lease;
    assert_eq!(
        store.heartbeat(&[stale], LEASE).await.expect("heartbeat"),
        [LeaseState::Lost]
    );
    let report = StatusUpdate {
        progress: Some(Progress {
            current: 9,
            total: 9,
            message: None,
        }),
        steps: None,
    };
    assert_eq!(
        store.report(vec![(stale, report)]).await.expect("report"),
        [LeaseState::Lost]
    );
    let old = complete(
        &store,
        stale,
        Outcome::Success(args(serde_json::json!("old"))),
    )
    .await;
    assert_eq!(old, CompleteResult::Stale);
    let r = get(&store, e.id).await;
    assert_eq!(r.status, TaskState::Running);
    assert!(r.progress.is_none(), "a fenced report changes nothing");
    let new = complete(
        &store,
        second.lease,
        Outcome::Success(args(serde_json::json!("new"))),
    )
    .await;
    assert_eq!(new, CompleteResult::Applied);
    let r = get(&store, e.id).await;
    assert_eq!(r.status, TaskState::Success);
    assert_eq!(r.result.expect("result").get(), r#""new""#);
    let again = complete(
        &store,
        second.lease,
        Outcome::Success(args(serde_json::json!("x"))),
    )
    .await;
    assert_eq!(
        again,
        CompleteResult::Stale,
        "a finished task takes no second completion"
    );
}

/// A lapsed lease with no attempts left fails the task.
pub async fn lapsed_lease_without_attempts_left_fails(store: S, clock: C) {
    let key = ring();
    let mut t = task_for("alice", &key);
    t.max_attempts = 1;
    let e = enqueue_one(&store, t).await;
    claim_one(&store).await;
    clock.advance(LEASE * 2);
    let reaped = store.reap().await.expect("reap");
    assert_eq!(reaped.failed, 1);
    let r = get(&store, e.id).await;
    assert_eq!(r.status, TaskState::Failed);
    let err = r.error.expect("error");
    assert_eq!(err.kind, LEASE_EXPIRED);
    assert!(!err.retryable);
    assert!(r.expires_at.is_some());
}

/// Heartbeats keep a lease.
pub async fn heartbeat_extends_lease(store: S, clock: C) {
    let key = ring();
    enqueue_one(&store, task_for("alice", &key)).await;
    let c = claim_one(&store).await;
    clock.advance(LEASE - Duration::from_secs(5));
    assert_eq!(
        store.heartbeat(&[c.lease], LEASE).await.expect("heartbeat"),
        [LeaseState::Held]
    );
    clock.advance(LEASE - Duration::from_secs(5));
    assert_eq!(
        store.reap().await.expect("reap").requeued,
        0,
        "renewed lease held"
    );
    clock.advance(Duration::from_secs(10));
    assert_eq!(
        store.reap().await.expect("reap").requeued,
        1,
        "lapsed after renewal ran out"
    );
}

/// A retry outcome leaves the task `retrying` until its backoff passes.
pub async fn retry_outcome_waits_for_backoff(store: S, clock: C) {
    let key = ring();
    let e = enqueue_one(&store, task_for("alice", &key)).await;
    let c = claim_one(&store).await;
    let retry = Outcome::Retry {
        error: error("flaky", true),
        delay: Duration::from_secs(30),
    };
    assert_eq!(
        complete(&store, c.lease, retry).await,
        CompleteResult::Applied
    );
    let r = get(&store, e.id).await;
    assert_eq!(r.status, TaskState::Retrying);
    assert_eq!(r.attempt, 1);
    let next = r.next_attempt_at.expect("next_attempt_at");
    assert!((next - r.updated_at).num_seconds() >= 29);
    assert_eq!(r.error.as_ref().map(|e| e.kind.as_str()), Some("flaky"));
    assert!(r.completed_at.is_none(), "retrying is not finished");
    assert!(claim(&store, 10).await.is_empty(), "not before the backoff");
    clock.advance(Duration::from_secs(31));
    let again = claim_one(&store).await;
    assert_eq!(again.attempt, 2);
    assert_eq!(
        again.context.map(|c| c.as_str().to_string()),
        c.context.map(|c| c.as_str().to_string())
    );
}

/// Success stores the result; failure stores the error; both expire after the TTL.
pub async fn success_and_failure_are_recorded(store: S, _clock: C) {
    let key = ring();
    let mut a = task_for("alice", &key);
    a.ttl = Duration::from_secs(600);
    let (ok_id, bad_id) = (a.id, TaskId::new());
    let mut b = task_for("alice", &key);
    b.id = bad_id;
    store.enqueue(vec![a, b]).await.expect("enqueue");
    let c = claim(&store, 2).await;
    let report = StatusUpdate {
        progress: Some(Progress {
            current: 2,
            total: 2,
            message: Some("done".into()),
        }),
        steps: None,
    };
    let results = store
        .complete(vec![
            Completion {
                lease: c[0].lease,
                outcome: Outcome::Success(args(serde_json::json!({"chunks": 3}))),
                report,
            },
            Completion {
                lease: c[1].lease,
                outcome: Outcome::Failed(error("broken", false)),
                report: StatusUpdate::default(),
            },
        ])
        .await
        .expect("complete");
    assert_eq!(results, [CompleteResult::Applied, CompleteResult::Applied]);
    let ok = get(&store, ok_id).await;
    assert_eq!(ok.status, TaskState::Success);
    let result: serde_json::Value =
        serde_json::from_str(ok.result.as_ref().expect("result").get()).expect("json");
    assert_eq!(result, serde_json::json!({"chunks": 3}));
    assert_eq!(ok.progress.as_ref().map(|p| p.current), Some(2));
    let (done, exp) = (
        ok.completed_at.expect("completed"),
        ok.expires_at.expect("expiry"),
    );
    assert_eq!((exp - done).num_seconds(), 600);
    assert!(ok.error.is_none());
    let bad = get(&store, bad_id).await;
    assert_eq!(bad.status, TaskState::Failed);
    let err = bad.error.expect("error");
    assert_eq!((err.kind.as_str(), err.retryable), ("broken", false));
    assert_eq!(err.details, Some(serde_json::json!({"detail": 1})));
}

/// Reports from the lease holder merge into the record.
pub async fn reports_merge_progress_and_steps(store: S, _clock: C) {
    let key = ring();
    let e = enqueue_one(&store, task_for("alice", &key)).await;
    let c = claim_one(&store).await;
    let step = |name: &str, status| Step {
        name: name.into(),
        status,
        started_at: None,
        completed_at: None,
        error: None,
    };
    let first = StatusUpdate {
        progress: Some(Progress {
            current: 1,
            total: 4,
            message: Some("chunking".into()),
        }),
        steps: Some(vec![
            step("chunk", StepStatus::Running),
            step("embed", StepStatus::Pending),
        ]),
    };
    assert_eq!(
        store.report(vec![(c.lease, first)]).await.expect("report"),
        [LeaseState::Held]
    );
    let progress_only = StatusUpdate {
        progress: Some(Progress {
            current: 2,
            total: 4,
            message: None,
        }),
        steps: None,
    };
    store
        .report(vec![(c.lease, progress_only)])
        .await
        .expect("report");
    let r = get(&store, e.id).await;
    assert_eq!(
        r.progress.as_ref().map(|p| (p.current, p.total)),
        Some((2, 4))
    );
    assert_eq!(
        r.steps
            .iter()
            .map(|s| (s.name.as_str(), s.status))
            .collect::<Vec<_>>(),
        [
            ("chunk", StepStatus::Running),
            ("embed", StepStatus::Pending)
        ],
        "steps keep their order and survive a progress-only report"
    );
}

/// Cancelling a waiting task ends it at once.
pub async fn cancel_waiting_task(store: S, clock: C) {
    let key = ring();
    let pending = enqueue_one(&store, task_for("alice", &key)).await;
    let mut delayed = task_for("alice", &key);
    delayed.delay = Some(Duration::from_secs(60));
    let scheduled = enqueue_one(&store, delayed).await;
    for id in [pending.id, scheduled.id] {
        match store.cancel(id, &actor()).await.expect("cancel") {
            CancelOutcome::Cancelled(r) => assert_eq!(r.status, TaskState::Cancelled),
            other => panic!("expected Cancelled, got {other:?}"),
        }
        let r = get(&store, id).await;
        assert_eq!(r.status, TaskState::Cancelled);
        assert!(r.completed_at.is_some());
        assert!(matches!(
            store.cancel(id, &actor()).await.expect("cancel"),
            CancelOutcome::Conflict(TaskState::Cancelled)
        ));
    }
    clock.advance(Duration::from_secs(120));
    assert!(
        claim(&store, 10).await.is_empty(),
        "cancelled tasks never run"
    );
    assert!(matches!(
        store.cancel(TaskId::new(), &actor()).await.expect("cancel"),
        CancelOutcome::NotFound
    ));
}

/// Cancelling a running task signals its worker, and the record ends `cancelled` even if the
/// worker reports a retry.
pub async fn cancel_running_task(store: S, _clock: C) {
    let key = ring();
    let mut cancels = store.cancellations().await.expect("cancellations");
    let a = enqueue_one(&store, task_for("alice", &key)).await;
    let b = enqueue_one(&store, task_for("bob", &key)).await;
    let c = claim(&store, 2).await;
    for id in [a.id, b.id] {
        match store.cancel(id, &actor()).await.expect("cancel") {
            CancelOutcome::Requested(r) => {
                assert_eq!(r.status, TaskState::Running);
                assert!(r.cancel_requested);
            }
            other => panic!("expected Requested, got {other:?}"),
        }
    }
    let mut heard = Vec::new();
    while heard.len() < 2 {
        let id = tokio::time::timeout(Duration::from_secs(5), cancels.next())
            .await
            .expect("cancellation announced within 5 s")
            .expect("stream open");
        heard.push(id);
    }
    heard.sort();
    assert_eq!(heard, [a.id, b.id]);
    let leases = [c[0].lease, c[1].lease];
    assert_eq!(
        store.heartbeat(&leases, LEASE).await.expect("heartbeat"),
        [LeaseState::CancelRequested, LeaseState::CancelRequested]
    );
    assert_eq!(
        complete(&store, c[0].lease, Outcome::Cancelled).await,
        CompleteResult::Applied
    );
    let retry = Outcome::Retry {
        error: error("stopped", true),
        delay: Duration::ZERO,
    };
    assert_eq!(
        complete(&store, c[1].lease, retry).await,
        CompleteResult::Applied
    );
    for id in [a.id, b.id] {
        assert_eq!(get(&store, id).await.status, TaskState::Cancelled);
    }
    assert!(claim(&store, 10).await.is_empty());
}

/// A manual retry requeues a failed or cancelled task with its original context; other
/// states conflict.
pub async fn manual_retry_requeues_with_context(store: S, _clock: C) {
    let key = ring();
    let mut t = task_for("alice", &key);
    t.key = Some("retry-key".into());
    let e = enqueue_one(&store, t).await;
    let first = claim_one(&store).await;
    assert!(matches!(
        store.retry(e.id, &actor()).await.expect("retry"),
        RetryOutcome::Conflict(TaskState::Running)
    ));
    complete(&store, first.lease, Outcome::Failed(error("broken", false))).await;
    match store.retry(e.id, &actor()).await.expect("retry") {
        RetryOutcome::Requeued(r) => {
            assert_eq!(r.status, TaskState::Pending);
            assert_eq!(r.attempt, 0);
            assert!(r.error.is_none() && r.completed_at.is_none() && r.expires_at.is_none());
        }
        other => panic!("expected Requeued, got {other:?}"),
    }
    let mut again = task_for("alice", &key);
    again.key = Some("retry-key".into());
    let dedup = enqueue_one(&store, again).await;
    assert!(dedup.deduplicated, "a retried task's key is live again");
    let second = claim_one(&store).await;
    assert_eq!(second.lease.id, e.id);
    assert_eq!(second.attempt, 1);
    assert_ne!(second.lease.token, first.lease.token);
    let opened = open(&second, &key);
    assert_eq!(opened.user_id(), Some("alice"));
    assert_eq!(opened.request_id(), Some("req-alice"));
    complete(
        &store,
        second.lease,
        Outcome::Success(args(serde_json::json!(null))),
    )
    .await;
    assert!(matches!(
        store.retry(e.id, &actor()).await.expect("retry"),
        RetryOutcome::Conflict(TaskState::Success)
    ));
    assert!(matches!(
        store.retry(TaskId::new(), &actor()).await.expect("retry"),
        RetryOutcome::NotFound
    ));
}

/// Listings show only the owner's tasks, newest first, filtered and paged.
pub async fn list_is_isolated_newest_first_and_paged(store: S, _clock: C) {
    let key = ring();
    let alice: Vec<NewTask> = (0..25).map(|_| task_for("alice", &key)).collect();
    let alice_ids: Vec<TaskId> = alice.iter().rev().map(|t| t.id).collect();
    store.enqueue(alice).await.expect("enqueue");
    let mut bobs: Vec<NewTask> = (0..5).map(|_| task_for("bob", &key)).collect();
    bobs[0].name = "other_name".into();
    store.enqueue(bobs).await.expect("enqueue");
    let owner = |u: &str| {
        OwnerFilter::Owner(crate::Owner {
            user_id: Some(u.into()),
            tenant: Some("acme".into()),
        })
    };

    let mut seen = Vec::new();
    let mut q = ListQuery::owner(owner("alice"));
    q.limit = 10;
    loop {
        let page = store.list(&q).await.expect("list");
        assert!(page.items.len() <= 10);
        assert!(
            page.items
                .iter()
                .all(|r| r.owner.user_id.as_deref() == Some("alice"))
        );
        seen.extend(page.items.iter().map(|r| r.id));
        match page.next_cursor {
            Some(c) => q.cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(seen, alice_ids, "every task once, newest first");

    let other_tenant = OwnerFilter::Owner(crate::Owner {
        user_id: Some("alice".into()),
        tenant: Some("other".into()),
    });
    assert!(
        store
            .list(&ListQuery::owner(other_tenant))
            .await
            .expect("list")
            .items
            .is_empty()
    );

    let mut by_name = ListQuery::owner(owner("bob"));
    by_name.name = Some("other_name".into());
    assert_eq!(store.list(&by_name).await.expect("list").items.len(), 1);

    claim(&store, 3).await;
    let mut running = ListQuery::owner(owner("alice"));
    running.status = Some(TaskState::Running);
    assert_eq!(store.list(&running).await.expect("list").items.len(), 3);

    let mut all = ListQuery::owner(OwnerFilter::Any);
    all.limit = 1000;
    assert_eq!(store.list(&all).await.expect("list").items.len(), 30);
}

/// A watcher sees each change of its task, ending with the final state.
pub async fn watch_delivers_each_change(store: S, _clock: C) {
    let key = ring();
    let e = enqueue_one(&store, task_for("alice", &key)).await;
    let mut events = store.watch(e.id).await.expect("watch");
    let c = claim_one(&store).await;
    let report = StatusUpdate {
        progress: Some(Progress {
            current: 1,
            total: 2,
            message: None,
        }),
        steps: None,
    };
    store.report(vec![(c.lease, report)]).await.expect("report");
    complete(
        &store,
        c.lease,
        Outcome::Success(args(serde_json::json!(true))),
    )
    .await;
    let mut states = Vec::new();
    while states.last() != Some(&TaskState::Success) {
        let r = tokio::time::timeout(Duration::from_secs(5), events.next())
            .await
            .expect("event within 5 s")
            .expect("stream open");
        assert_eq!(r.id, e.id);
        assert!(
            !serde_json::to_string(&r)
                .expect("json")
                .contains("token-of")
        );
        states.push(r.status);
    }
    assert_eq!(states.first(), Some(&TaskState::Running));
    assert!(
        states.len() >= 3,
        "running, progress and success each arrive: {states:?}"
    );
}

/// Finished records disappear after their TTL and are purged.
pub async fn finished_records_expire(store: S, clock: C) {
    let key = ring();
    let mut t = task_for("alice", &key);
    t.ttl = Duration::from_secs(60);
    let e = enqueue_one(&store, t).await;
    let live = enqueue_one(&store, task_for("alice", &key)).await;
    let c = claim_one(&store).await;
    assert_eq!(c.lease.id, e.id);
    complete(
        &store,
        c.lease,
        Outcome::Success(args(serde_json::json!(1))),
    )
    .await;
    clock.advance(Duration::from_secs(30));
    assert!(store.get(e.id).await.expect("get").is_some());
    clock.advance(Duration::from_secs(31));
    assert!(
        store.get(e.id).await.expect("get").is_none(),
        "expired records are gone"
    );
    assert!(store.purge_expired().await.expect("purge") >= 1);
    assert!(store.get(e.id).await.expect("get").is_none());
    assert!(
        store.get(live.id).await.expect("get").is_some(),
        "live tasks never expire"
    );
    let owner = OwnerFilter::Owner(crate::Owner {
        user_id: Some("alice".into()),
        tenant: Some("acme".into()),
    });
    let page = store.list(&ListQuery::owner(owner)).await.expect("list");
    assert_eq!(
        page.items.iter().map(|r| r.id).collect::<Vec<_>>(),
        [live.id]
    );
}

/// A released task goes back to `pending` without spending its attempt.
pub async fn release_does_not_spend_attempt(store: S, _clock: C) {
    let key = ring();
    let e = enqueue_one(&store, task_for("alice", &key)).await;
    let c = claim_one(&store).await;
    assert_eq!(c.attempt, 1);
    assert_eq!(
        complete(&store, c.lease, Outcome::Released).await,
        CompleteResult::Applied
    );
    let r = get(&store, e.id).await;
    assert_eq!((r.status, r.attempt), (TaskState::Pending, 0));
    let again = claim_one(&store).await;
    assert_eq!(again.attempt, 1);
    assert_ne!(
        again.lease.token, c.lease.token,
        "every claim issues a new token"
    );
}

/// New work wakes an idle worker's signal promptly.
pub async fn work_signal_wakes_idle_worker(store: S, _clock: C) {
    let key = ring();
    let mut signal = store
        .work_signal(&["default".into()])
        .await
        .expect("signal");
    signal.wait(Duration::from_millis(50)).await; // consume any initial wake-up
    let waiter = tokio::spawn(async move {
        let began = std::time::Instant::now();
        signal.wait(Duration::from_secs(20)).await;
        began.elapsed()
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    enqueue_one(&store, task_for("alice", &key)).await;
    let waited = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("woken")
        .expect("join");
    assert!(
        waited < Duration::from_secs(5),
        "woken by the enqueue, not the timeout: {waited:?}"
    );
}

/// A task that reports the user it sees, through [`Context::current`] and through its
/// [`TaskCx`].
#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct WhoAmI {
    /// The user who submitted it.
    pub submitted_by: String,
    /// Milliseconds to sleep, to interleave with other tasks.
    pub sleep_ms: u64,
}

impl Task for WhoAmI {
    const NAME: &'static str = "who_am_i";
    type Output = serde_json::Value;

    async fn run(self, cx: TaskCx) -> Result<serde_json::Value, TaskError> {
        let before = Context::current().and_then(|c| c.user_id().map(String::from));
        tokio::time::sleep(Duration::from_millis(self.sleep_ms)).await;
        let after = Context::current().and_then(|c| c.user_id().map(String::from));
        // Whether the credential is the submitter's, without putting it into the result.
        let expected = format!("token-of-{}", self.submitted_by);
        let token_matches = cx
            .context()
            .and_then(|c| c.credential().ok())
            .is_some_and(|s| s.expose() == expected);
        Ok(serde_json::json!({
            "before": before,
            "after": after,
            "cx": cx.user_id(),
            "token_matches": token_matches,
        }))
    }
}

/// 1,000 users submit at once and a worker runs their tasks with random sleeps: every task
/// sees its own user everywhere. Mismatches are counted, and there must be none.
pub async fn concurrent_users_never_mix(store: S, _clock: C) {
    const USERS: usize = 1000;
    let key = ring();
    let client = Client::new(store.clone(), key.clone());
    let mut submits = Vec::with_capacity(USERS);
    for i in 0..USERS {
        let client = client.clone();
        submits.push(tokio::spawn(async move {
            let user = format!("user-{i:04}");
            let ctx = ctx(&user);
            let task = WhoAmI {
                submitted_by: user.clone(),
                sleep_ms: rand::random::<u64>() % 20,
            };
            // Submitted from inside the user's own request scope.
            let id = ctx
                .scope(async { client.submit(task).await })
                .await
                .expect("submit")
                .id;
            (id, user)
        }));
    }
    let mut submitted = Vec::with_capacity(USERS);
    for s in submits {
        submitted.push(s.await.expect("join"));
    }
    let mut registry = Registry::new();
    registry.register::<WhoAmI>().expect("register");
    let worker = Worker::new(store.clone(), Arc::new(registry), key)
        .concurrency(64)
        .start();

    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let mut mismatches = 0usize;
    for (id, user) in &submitted {
        let record = loop {
            let r = get(&store, *id).await;
            if r.status.is_terminal() {
                break r;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "tasks did not finish in time"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        assert_eq!(record.status, TaskState::Success, "{:?}", record.error);
        let seen: serde_json::Value =
            serde_json::from_str(record.result.as_ref().expect("result").get()).expect("json");
        let views = [&seen["before"], &seen["after"], &seen["cx"]];
        mismatches += views.iter().filter(|v| v.as_str() != Some(user)).count();
        mismatches += usize::from(seen["token_matches"] != true);
        mismatches += usize::from(record.owner.user_id.as_deref() != Some(user));
    }
    let stats = worker.shutdown(Duration::from_secs(10)).await;
    assert_eq!(mismatches, 0, "tasks saw another user's identity");
    assert_eq!(stats.succeeded, USERS as u64);
}

async fn claim_from(store: &S, queues: &[&str], limit: usize) -> Vec<Claimed> {
    store
        .claim(&ClaimRequest {
            queues: queues.iter().map(|q| q.to_string()).collect(),
            limit,
            lease: LEASE,
            worker_id: "conformance".into(),
        })
        .await
        .expect("claim")
}

async fn next_event(events: &mut crate::EventStream) -> crate::TaskRecord {
    tokio::time::timeout(Duration::from_secs(5), events.next())
        .await
        .expect("an event within 5 s")
        .expect("the stream is open")
}

/// Two watchers follow one task; when one goes away, the other still gets every change.
pub async fn a_watcher_leaving_does_not_end_the_others(store: S, _clock: C) {
    let key = ring();
    let e = enqueue_one(&store, task_for("alice", &key)).await;
    let mut stays = store.watch(e.id).await.expect("watch");
    let leaves = store.watch(e.id).await.expect("watch");
    drop(leaves);
    let c = claim_one(&store).await;
    assert_eq!(next_event(&mut stays).await.status, TaskState::Running);
    complete(
        &store,
        c.lease,
        Outcome::Success(args(serde_json::json!(1))),
    )
    .await;
    let mut last = next_event(&mut stays).await;
    while !last.status.is_terminal() {
        last = next_event(&mut stays).await;
    }
    assert_eq!(last.status, TaskState::Success);
}

/// Once a task has been claimed again, its old lease can end it no way at all.
pub async fn stale_leases_are_rejected_for_every_outcome(store: S, clock: C) {
    let key = ring();
    let e = enqueue_one(&store, task_for("alice", &key)).await;
    let old = claim_one(&store).await.lease;
    clock.advance(LEASE + Duration::from_secs(1));
    store.reap().await.expect("reap");
    let new = claim_one(&store).await.lease;
    let outcomes = [
        Outcome::Success(args(serde_json::json!(1))),
        Outcome::Failed(error("broken", false)),
        Outcome::Cancelled,
        Outcome::Retry {
            error: error("flaky", true),
            delay: Duration::ZERO,
        },
        Outcome::Released,
    ];
    for outcome in outcomes {
        let what = format!("{outcome:?}");
        assert_eq!(
            complete(&store, old, outcome).await,
            CompleteResult::Stale,
            "{what}"
        );
        let r = get(&store, e.id).await;
        assert_eq!((r.status, r.attempt), (TaskState::Running, 2), "{what}");
    }
    assert_eq!(
        complete(&store, new, Outcome::Success(args(serde_json::json!(2)))).await,
        CompleteResult::Applied
    );
}

/// A task whose cancellation was requested, and whose worker then vanished, ends `cancelled`
/// when its lease lapses; a release after a cancel request ends it `cancelled` too.
pub async fn lapsed_lease_of_a_cancel_requested_task_is_cancelled(store: S, clock: C) {
    let key = ring();
    let a = enqueue_one(&store, task_for("alice", &key)).await;
    let b = enqueue_one(&store, task_for("bob", &key)).await;
    let claimed = claim(&store, 2).await;
    for id in [a.id, b.id] {
        assert!(matches!(
            store.cancel(id, &actor()).await.expect("cancel"),
            CancelOutcome::Requested(_)
        ));
    }
    let b_lease = claimed
        .iter()
        .find(|c| c.lease.id == b.id)
        .expect("claimed b")
        .lease;
    assert_eq!(
        complete(&store, b_lease, Outcome::Released).await,
        CompleteResult::Applied
    );
    assert_eq!(get(&store, b.id).await.status, TaskState::Cancelled);
    clock.advance(LEASE + Duration::from_secs(1));
    let reaped = store.reap().await.expect("reap");
    assert_eq!(
        (reaped.cancelled, reaped.requeued, reaped.failed),
        (1, 0, 0)
    );
    assert_eq!(get(&store, a.id).await.status, TaskState::Cancelled);
    assert!(claim(&store, 10).await.is_empty());
}

/// A key is free again after every final state: failed, cancelled while waiting, and failed
/// by the reaper.
pub async fn keys_are_freed_by_every_final_state(store: S, clock: C) {
    let key = ring();
    let keyed = |k: &str, attempts: u32| {
        let mut t = task_for("alice", &key);
        t.key = Some(k.into());
        t.max_attempts = attempts;
        t
    };
    let failed = enqueue_one(&store, keyed("k-failed", 3)).await;
    let c = claim_one(&store).await;
    complete(&store, c.lease, Outcome::Failed(error("broken", false))).await;
    let cancelled = enqueue_one(&store, keyed("k-cancelled", 3)).await;
    store.cancel(cancelled.id, &actor()).await.expect("cancel");
    let reaped = enqueue_one(&store, keyed("k-reaped", 1)).await;
    claim_one(&store).await;
    clock.advance(LEASE + Duration::from_secs(1));
    assert_eq!(store.reap().await.expect("reap").failed, 1);
    for (k, old) in [
        ("k-failed", failed.id),
        ("k-cancelled", cancelled.id),
        ("k-reaped", reaped.id),
    ] {
        let again = enqueue_one(&store, keyed(k, 3)).await;
        assert!(!again.deduplicated, "{k} is free again");
        assert_ne!(again.id, old);
    }
}

/// Manual retry: a cancelled task comes back; an expired record is gone; a task whose key was
/// taken by another live task meanwhile comes back without taking the key.
pub async fn manual_retry_of_cancelled_expired_and_contested_tasks(store: S, clock: C) {
    let key = ring();
    let mut t = task_for("alice", &key);
    t.key = Some("contested".into());
    t.ttl = Duration::from_secs(3600);
    let first = enqueue_one(&store, t).await;
    store.cancel(first.id, &actor()).await.expect("cancel");
    let mut t = task_for("alice", &key);
    t.key = Some("contested".into());
    let second = enqueue_one(&store, t).await;
    assert!(!second.deduplicated);
    match store.retry(first.id, &actor()).await.expect("retry") {
        RetryOutcome::Requeued(r) => assert_eq!(r.status, TaskState::Pending),
        other => panic!("expected Requeued, got {other:?}"),
    }
    let mut t = task_for("alice", &key);
    t.key = Some("contested".into());
    let third = enqueue_one(&store, t).await;
    assert!(third.deduplicated);
    assert_eq!(
        third.id, second.id,
        "the key stayed with the task that held it"
    );

    let mut t = task_for("alice", &key);
    t.ttl = Duration::from_secs(60);
    let short = enqueue_one(&store, t).await;
    store.cancel(short.id, &actor()).await.expect("cancel");
    clock.advance(Duration::from_secs(61));
    assert!(matches!(
        store.retry(short.id, &actor()).await.expect("retry"),
        RetryOutcome::NotFound
    ));
}

/// A task cancelled while pending, retried by hand, then failing with a backoff, is not
/// claimable before its backoff (no leftover queue entry may run it early).
pub async fn cancel_then_retry_then_backoff_is_respected(store: S, clock: C) {
    let key = ring();
    let e = enqueue_one(&store, task_for("alice", &key)).await;
    store.cancel(e.id, &actor()).await.expect("cancel");
    store.retry(e.id, &actor()).await.expect("retry");
    let c = claim_one(&store).await;
    assert_eq!(c.lease.id, e.id);
    let retry = Outcome::Retry {
        error: error("flaky", true),
        delay: Duration::from_secs(60),
    };
    complete(&store, c.lease, retry).await;
    assert!(claim(&store, 10).await.is_empty(), "not before the backoff");
    clock.advance(Duration::from_secs(61));
    assert_eq!(claim_one(&store).await.lease.id, e.id);
    assert!(claim(&store, 10).await.is_empty(), "exactly once");
}

/// Cancelled waiting tasks never take a claim's place: `claim(1)` returns the next live one.
pub async fn claims_skip_cancelled_entries(store: S, _clock: C) {
    let key = ring();
    let batch: Vec<NewTask> = (0..3).map(|i| task_for(&format!("u{i}"), &key)).collect();
    let ids: Vec<TaskId> = batch.iter().map(|t| t.id).collect();
    store.enqueue(batch).await.expect("enqueue");
    store.cancel(ids[0], &actor()).await.expect("cancel");
    store.cancel(ids[1], &actor()).await.expect("cancel");
    let got = claim(&store, 1).await;
    assert_eq!(got.iter().map(|c| c.lease.id).collect::<Vec<_>>(), [ids[2]]);
    let depth = store.depth().await.expect("depth");
    assert_eq!((depth.waiting, depth.running), (0, 1));
}

/// A claim over several queues takes the oldest tasks among them.
pub async fn claims_across_queues_take_the_oldest(store: S, _clock: C) {
    let key = ring();
    let mut ids = Vec::new();
    for (i, q) in ["q-a", "q-b", "q-a", "q-b"].iter().enumerate() {
        let mut t = task_for(&format!("u{i}"), &key);
        t.queue = (*q).into();
        ids.push(t.id);
        enqueue_one(&store, t).await;
    }
    let got = claim_from(&store, &["q-a", "q-b"], 3).await;
    assert_eq!(got.iter().map(|c| c.lease.id).collect::<Vec<_>>(), ids[..3]);
    assert_eq!(got[1].queue, "q-b");
}

/// Listing an owner without a tenant, and a status filter across pages.
pub async fn listing_owners_without_tenant_and_filtered_pages(store: S, _clock: C) {
    let key = ring();
    let no_tenant = Context::builder().user_id("nomad").build();
    let tasks: Vec<NewTask> = (0..7)
        .map(|_| {
            NewTask::new("conformance", args(serde_json::json!({})))
                .with_context(&no_tenant, &key)
                .expect("seal")
        })
        .collect();
    let ids: Vec<TaskId> = tasks.iter().map(|t| t.id).collect();
    store.enqueue(tasks).await.expect("enqueue");
    // The same user in a tenant is someone else.
    enqueue_one(&store, {
        let ctx = Context::builder().user_id("nomad").tenant("acme").build();
        NewTask::new("conformance", args(serde_json::json!({})))
            .with_context(&ctx, &key)
            .expect("seal")
    })
    .await;
    for id in [ids[1], ids[3], ids[5]] {
        store.cancel(id, &actor()).await.expect("cancel");
    }
    let owner = OwnerFilter::Owner(crate::Owner {
        user_id: Some("nomad".into()),
        tenant: None,
    });
    let all = store
        .list(&ListQuery {
            limit: 100,
            ..ListQuery::owner(owner.clone())
        })
        .await
        .expect("list");
    assert_eq!(all.items.len(), 7);
    let mut q = ListQuery::owner(owner);
    q.status = Some(TaskState::Cancelled);
    q.limit = 2;
    let mut seen = Vec::new();
    loop {
        let page = store.list(&q).await.expect("list");
        assert!(page.items.iter().all(|r| r.status == TaskState::Cancelled));
        seen.extend(page.items.iter().map(|r| r.id));
        match page.next_cursor {
            Some(c) => q.cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(seen, [ids[5], ids[3], ids[1]]);
}

/// "Forever" as `Duration::MAX` is clamped to [`MAX_DURATION`](crate::MAX_DURATION), and every
/// store handles it.
pub async fn durations_are_clamped_not_overflowed(store: S, _clock: C) {
    let key = ring();
    let policy = crate::Policy {
        queue: "default".into(),
        max_attempts: 1,
        timeout: Duration::MAX,
        ttl: Duration::MAX,
        backoff: crate::Backoff::none(),
    };
    let t = task_for("alice", &key).with_policy(&policy);
    assert_eq!(
        (t.ttl, t.timeout),
        (crate::MAX_DURATION, crate::MAX_DURATION)
    );
    let e = enqueue_one(&store, t).await;
    let c = claim_one(&store).await;
    complete(
        &store,
        c.lease,
        Outcome::Success(args(serde_json::json!(1))),
    )
    .await;
    let r = get(&store, e.id).await;
    assert_eq!(r.status, TaskState::Success);
    let years = (r.expires_at.expect("expiry") - r.completed_at.expect("done")).num_days() / 365;
    assert!(years >= 99, "kept about a century: {years} years");
    let mut later = task_for("alice", &key);
    later.delay = Some(crate::MAX_DURATION);
    assert_eq!(
        enqueue_one(&store, later).await.status,
        TaskState::Scheduled
    );
}

/// Deployment facts: nothing until recorded; a swap from the wrong value changes nothing; of
/// many processes swapping from the same value at once, exactly one wins.
pub async fn deployment_facts_swap_atomically(store: S, _clock: C) {
    let name = "conformance_fact";
    assert_eq!(store.get_meta(name).await.expect("get"), None);
    assert!(!store.swap_meta(name, Some("x"), "y").await.expect("swap"));
    assert_eq!(store.get_meta(name).await.expect("get"), None);
    assert!(store.swap_meta(name, None, "k1").await.expect("swap"));
    assert!(
        !store.swap_meta(name, None, "k2").await.expect("swap"),
        "already recorded"
    );
    assert_eq!(
        store.get_meta(name).await.expect("get").as_deref(),
        Some("k1")
    );
    let racers: Vec<_> = (0..8)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .swap_meta(name, Some("k1"), &format!("racer-{i}"))
                    .await
                    .expect("swap")
            })
        })
        .collect();
    let mut winners = 0;
    for r in racers {
        winners += usize::from(r.await.expect("joined"));
    }
    assert_eq!(winners, 1, "exactly one swap from k1 wins");
    let now = store.get_meta(name).await.expect("get").expect("recorded");
    assert!(now.starts_with("racer-"), "{now}");
    assert_eq!(store.get_meta("another_fact").await.expect("get"), None);
    store.healthy().await.expect("a working store is healthy");
}
