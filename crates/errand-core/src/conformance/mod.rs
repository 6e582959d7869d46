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
    ClaimRequest, Claimed, Client, CompleteResult, Completion, Context, Enqueued, ErrorInfo, Lease,
    ListQuery, ManualClock, NewTask, Outcome, OwnerFilter, Registry, SealKey, SealKeyRing, Secret,
    StatusUpdate, Store, Task, TaskCx, TaskError, TaskId, TaskState, Worker,
};
use futures::StreamExt;
use serde_json::value::RawValue;

mod enqueue;
pub use enqueue::{
    batch_enqueue_claims_oldest_first, delay_schedules_task, durations_are_clamped_not_overflowed,
    enqueue_then_get, idempotency_key_returns_live_task, keys_are_freed_by_every_final_state,
};
mod leases;
pub use leases::{
    heartbeat_extends_lease, lapsed_lease_is_reclaimed_with_same_context,
    lapsed_lease_of_a_cancel_requested_task_is_cancelled, lapsed_lease_without_attempts_left_fails,
    release_does_not_spend_attempt, stale_leases_are_rejected_for_every_outcome,
};
mod outcomes;
pub use outcomes::{
    reports_merge_progress_and_steps, retry_outcome_waits_for_backoff,
    success_and_failure_are_recorded,
};
mod actions;
pub use actions::{
    cancel_running_task, cancel_then_retry_then_backoff_is_respected, cancel_waiting_task,
    claims_skip_cancelled_entries, manual_retry_of_cancelled_expired_and_contested_tasks,
    manual_retry_requeues_with_context,
};
mod watching;
pub use watching::{
    a_watcher_leaving_does_not_end_the_others, watch_delivers_each_change,
    work_signal_wakes_idle_worker,
};
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
pub use cycle::{complete_and_claim_across_queues, complete_and_claim_ends_then_claims};
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
            complete_and_claim_ends_then_claims,
            complete_and_claim_across_queues
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
