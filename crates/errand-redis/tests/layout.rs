//! What the Redis layout promises beyond the conformance suite: cancelled entries never
//! count or run, a retried task has one entry, a ready entry never runs a task before it is
//! due, a claim looks at a bounded number of dead entries, several queues are claimed oldest
//! first, finished records carry a Redis TTL and leave the listing indexes when purged,
//! nothing is published for unwatched tasks, a resent enqueue changes nothing, a report batch
//! answers each lease, scripts reload after a flush, any number of reapers may run at once,
//! and prefixes never share keys.

mod common;

use common::{PrivateRedis, REDIS_URL};
use errand_core::{
    ClaimRequest, Claimed, Completion, ErrorInfo, Lease, LeaseState, ManualClock, NewTask, Outcome,
    Owner, Progress, StatusUpdate, Store, TaskState,
};
use errand_redis::{RedisConfig, RedisStore, RedisStoreError};
use futures::StreamExt;
use std::sync::Arc;
use std::time::Duration;

/// A store on the shared Redis, its keys deleted at the end.
struct Fixture {
    store: RedisStore,
    clock: Arc<ManualClock>,
    prefix: String,
}

impl Fixture {
    async fn new() -> Self {
        let prefix = common::unique_prefix();
        let clock = Arc::new(ManualClock::new());
        Self {
            store: common::store_on(&prefix, clock.clone()).await,
            clock,
            prefix,
        }
    }

    /// Another store (another "process") on the same keys and clock.
    async fn sibling(&self) -> RedisStore {
        common::store_on(&self.prefix, self.clock.clone()).await
    }

    /// A plain connection, to look at the keys.
    fn redis(&self) -> redis::Connection {
        redis::Client::open(REDIS_URL)
            .and_then(|c| c.get_connection())
            .expect("a plain connection")
    }

    fn key(&self, queue: &str, suffix: &str) -> String {
        format!("{{{}:{queue}}}:{suffix}", self.prefix)
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        common::delete_keys(REDIS_URL, &self.prefix);
    }
}

fn task(queue: &str) -> NewTask {
    let args = serde_json::value::to_raw_value(&serde_json::json!({"n": 1})).expect("json");
    let mut t = NewTask::new("layout", args);
    t.queue = queue.into();
    t.owner = Owner::new("alice", Some("acme".into()));
    t
}

fn request(queues: &[&str], limit: usize) -> ClaimRequest {
    ClaimRequest {
        queues: queues.iter().map(|q| q.to_string()).collect(),
        limit,
        lease: Duration::from_secs(30),
        worker_id: "layout".into(),
    }
}

fn success(c: &Claimed) -> Completion {
    Completion {
        lease: c.lease,
        outcome: Outcome::Success(serde_json::value::to_raw_value(&1).expect("json")),
        report: StatusUpdate::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_cancelled_while_waiting_is_neither_counted_nor_claimed() {
    let f = Fixture::new().await;
    let tasks: Vec<NewTask> = (0..3).map(|_| task("default")).collect();
    let ids: Vec<_> = tasks.iter().map(|t| t.id).collect();
    f.store.enqueue(tasks).await.expect("enqueue");
    f.store
        .cancel(ids[1], &Owner::new("operator", None))
        .await
        .expect("cancel");
    assert_eq!(f.store.depth().await.expect("depth").waiting, 2);
    let claimed = f
        .store
        .claim(&request(&["default"], 10))
        .await
        .expect("claim");
    assert_eq!(
        claimed.iter().map(|c| c.lease.id).collect::<Vec<_>>(),
        [ids[0], ids[2]]
    );
    let depth = f.store.depth().await.expect("depth");
    assert_eq!((depth.waiting, depth.running), (0, 2));
    let dead: i64 = redis::cmd("SCARD")
        .arg(f.key("default", "skip"))
        .query(&mut f.redis())
        .expect("SCARD");
    assert_eq!(
        dead, 0,
        "the claim dropped the dead entry and forgot its id"
    );
}

fn int(f: &Fixture, cmd: &str, key: &str) -> i64 {
    redis::cmd(cmd)
        .arg(f.key("default", key))
        .query(&mut f.redis())
        .expect("a count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_retried_after_a_cancel_has_one_entry_and_runs_once() {
    let f = Fixture::new().await;
    let t = task("default");
    let id = t.id;
    f.store.enqueue(vec![t]).await.expect("enqueue");
    f.store
        .cancel(id, &Owner::new("operator", None))
        .await
        .expect("cancel");
    assert_eq!(int(&f, "SCARD", "skip"), 1, "its entry is dead");
    f.store
        .retry(id, &Owner::new("operator", None))
        .await
        .expect("retry");
    assert_eq!(
        (int(&f, "LLEN", "ready"), int(&f, "SCARD", "skip")),
        (1, 0),
        "the dead entry came back to life; no second entry"
    );
    assert_eq!(f.store.depth().await.expect("depth").waiting, 1);
    let claimed = f
        .store
        .claim(&request(&["default"], 10))
        .await
        .expect("claim");
    assert_eq!(claimed.iter().map(|c| c.lease.id).collect::<Vec<_>>(), [id]);
    let depth = f.store.depth().await.expect("depth");
    assert_eq!((depth.waiting, depth.running), (0, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ready_entry_never_runs_a_task_before_it_is_due() {
    let f = Fixture::new().await;
    // Another process whose clock is two minutes ahead of this one's.
    let ahead_clock = Arc::new(ManualClock::new());
    ahead_clock.advance(Duration::from_secs(120));
    let ahead = common::store_on(&f.prefix, ahead_clock).await;

    let flaky = task("default");
    let id = flaky.id;
    f.store.enqueue(vec![flaky]).await.expect("enqueue");
    let c = f
        .store
        .claim(&request(&["default"], 1))
        .await
        .expect("claim");
    let retry = Completion {
        lease: c[0].lease,
        outcome: Outcome::Retry {
            error: ErrorInfo {
                message: "flaky".into(),
                kind: "flaky".into(),
                details: None,
                retryable: true,
            },
            delay: Duration::from_secs(60),
        },
        report: StatusUpdate::default(),
    };
    f.store.complete(vec![retry]).await.expect("complete");
    let other = task("default");
    let other_id = other.id;
    f.store.enqueue(vec![other]).await.expect("enqueue");

    // By its clock the retry is due: its claim moves it to the ready list, behind the other
    // task, which is all it takes.
    let taken = ahead.claim(&request(&["default"], 1)).await.expect("claim");
    assert_eq!(taken[0].lease.id, other_id);
    assert_eq!(int(&f, "LLEN", "ready"), 1);

    // By this process's clock it is not: its entry goes back to the schedule.
    let early = f
        .store
        .claim(&request(&["default"], 10))
        .await
        .expect("claim");
    assert!(early.is_empty(), "claimed before its backoff: {early:?}");
    assert_eq!(int(&f, "ZCARD", "schedule"), 1);
    let depth = f.store.depth().await.expect("depth");
    assert_eq!((depth.waiting, depth.running), (1, 1));

    f.clock.advance(Duration::from_secs(61));
    let due = f
        .store
        .claim(&request(&["default"], 10))
        .await
        .expect("claim");
    assert_eq!(due.iter().map(|c| c.lease.id).collect::<Vec<_>>(), [id]);
    let depth = f.store.depth().await.expect("depth");
    assert_eq!((depth.waiting, depth.running), (0, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_looks_past_dead_entries_but_only_so_far() {
    let f = Fixture::new().await;
    let tasks: Vec<NewTask> = (0..1101).map(|_| task("default")).collect();
    let ids: Vec<_> = tasks.iter().map(|t| t.id).collect();
    f.store.enqueue(tasks).await.expect("enqueue");
    let operator = Owner::new("operator", None);
    let cancels = ids[..1100].iter().map(|id| f.store.cancel(*id, &operator));
    for outcome in futures::future::join_all(cancels).await {
        let outcome = outcome.expect("cancel");
        assert!(
            matches!(outcome, errand_core::CancelOutcome::Cancelled(_)),
            "{outcome:?}"
        );
    }
    assert_eq!(f.store.depth().await.expect("depth").waiting, 1);
    // One claim pops at most its limit plus 1000 entries, so Redis is never held long...
    let first = f
        .store
        .claim(&request(&["default"], 1))
        .await
        .expect("claim");
    assert!(first.is_empty());
    assert_eq!(int(&f, "SCARD", "skip"), 99, "1001 dead entries dropped");
    // ...and the next one goes on from there.
    let second = f
        .store
        .claim(&request(&["default"], 1))
        .await
        .expect("claim");
    assert_eq!(
        second.iter().map(|c| c.lease.id).collect::<Vec<_>>(),
        [ids[1100]]
    );
    assert_eq!((int(&f, "LLEN", "ready"), int(&f, "SCARD", "skip")), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_batch_answers_each_lease() {
    let f = Fixture::new().await;
    let tasks: Vec<NewTask> = (0..3).map(|_| task("default")).collect();
    f.store.enqueue(tasks).await.expect("enqueue");
    let c = f
        .store
        .claim(&request(&["default"], 3))
        .await
        .expect("claim");
    f.store
        .cancel(c[2].lease.id, &Owner::new("operator", None))
        .await
        .expect("cancel");
    let progress = |n| StatusUpdate {
        progress: Some(Progress {
            current: n,
            total: 10,
            message: None,
        }),
        steps: None,
    };
    let stale = Lease {
        id: c[1].lease.id,
        token: errand_core::LeaseToken::random(),
    };
    let states = f
        .store
        .report(vec![
            (c[0].lease, progress(1)),
            (stale, progress(2)),
            (c[2].lease, progress(3)),
        ])
        .await
        .expect("report");
    assert_eq!(
        states,
        [
            LeaseState::Held,
            LeaseState::Lost,
            LeaseState::CancelRequested
        ]
    );
    let current = |i: usize| {
        let store = f.store.clone();
        let id = c[i].lease.id;
        async move {
            let r = store.get(id).await.expect("get").expect("record");
            r.progress.map(|p| p.current)
        }
    };
    assert_eq!(current(0).await, Some(1));
    assert_eq!(current(1).await, None, "a lost lease's report is dropped");
    assert_eq!(current(2).await, Some(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_queues_are_claimed_oldest_first() {
    let f = Fixture::new().await;
    let (a, b, c) = (task("q1"), task("q2"), task("q1"));
    let ids = [a.id, b.id, c.id];
    for t in [a, b, c] {
        f.store.enqueue(vec![t]).await.expect("enqueue");
    }
    let first = f
        .store
        .claim(&request(&["q2", "q1"], 2))
        .await
        .expect("claim");
    assert_eq!(
        first
            .iter()
            .map(|c| (c.lease.id, c.queue.as_str()))
            .collect::<Vec<_>>(),
        [(ids[0], "q1"), (ids[1], "q2")]
    );
    let rest = f
        .store
        .claim(&request(&["q2", "q1"], 2))
        .await
        .expect("claim");
    assert_eq!(
        rest.iter().map(|c| c.lease.id).collect::<Vec<_>>(),
        [ids[2]]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_records_get_a_redis_ttl_and_purge_empties_the_indexes() {
    let f = Fixture::new().await;
    let mut t = task("default");
    t.ttl = Duration::from_secs(60);
    let id = t.id;
    f.store.enqueue(vec![t]).await.expect("enqueue");
    let c = f
        .store
        .claim(&request(&["default"], 1))
        .await
        .expect("claim");
    f.store
        .complete(vec![success(&c[0])])
        .await
        .expect("complete");
    let mut redis = f.redis();
    let record = f.key("default", &format!("t:{id}"));
    let ttl: i64 = redis::cmd("PTTL")
        .arg(&record)
        .query(&mut redis)
        .expect("PTTL");
    assert!(
        (1..=60_000).contains(&ttl),
        "Redis deletes the record by itself: {ttl} ms left"
    );

    f.clock.advance(Duration::from_secs(61));
    assert_eq!(f.store.purge_expired().await.expect("purge"), 1);
    let exists: bool = redis::cmd("EXISTS")
        .arg(&record)
        .query(&mut redis)
        .expect("EXISTS");
    assert!(!exists);
    let leftovers: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{{{}:default}}:*", f.prefix))
        .query(&mut redis)
        .expect("KEYS");
    let indexes: Vec<&String> = leftovers
        .iter()
        .filter(|k| k.contains("}:o:") || k.ends_with(":ids") || k.contains(":finished:"))
        .collect();
    assert!(indexes.is_empty(), "indexes emptied: {indexes:?}");
    assert_eq!(f.store.purge_expired().await.expect("purge"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_published_for_unwatched_tasks() {
    let f = Fixture::new().await;
    let mut pubsub = redis::Client::open(REDIS_URL)
        .expect("url")
        .get_async_pubsub()
        .await
        .expect("pubsub");
    pubsub
        .psubscribe(format!("{{{}:*}}:ev:*", f.prefix))
        .await
        .expect("psubscribe");
    let mut events = pubsub.into_on_message();

    let run = |f: &Fixture| {
        let store = f.store.clone();
        async move {
            let id = store.enqueue(vec![task("default")]).await.expect("enqueue")[0].id;
            let c = store.claim(&request(&["default"], 1)).await.expect("claim");
            store
                .complete(vec![success(&c[0])])
                .await
                .expect("complete");
            id
        }
    };
    run(&f).await;
    let silence = tokio::time::timeout(Duration::from_millis(300), events.next()).await;
    assert!(silence.is_err(), "an unwatched task published an event");

    // Watched, it publishes; once the watcher is gone, it stops again.
    let id = f
        .store
        .enqueue(vec![task("default")])
        .await
        .expect("enqueue")[0]
        .id;
    let watcher = f.store.watch(id).await.expect("watch");
    let c = f
        .store
        .claim(&request(&["default"], 1))
        .await
        .expect("claim");
    let heard = tokio::time::timeout(Duration::from_secs(5), events.next())
        .await
        .expect("an event for the watched task")
        .expect("open");
    assert!(heard.get_channel_name().ends_with(&id.to_string()));
    drop(watcher);
    let mut redis = f.redis();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let watched: i64 = redis::cmd("HLEN")
            .arg(f.key("default", "watched"))
            .query(&mut redis)
            .expect("HLEN");
        if watched == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the watch count was not lowered"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    f.store
        .complete(vec![success(&c[0])])
        .await
        .expect("complete");
    run(&f).await;
    let silence = tokio::time::timeout(Duration::from_millis(300), events.next()).await;
    assert!(silence.is_err(), "events went on after the watcher left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resent_enqueue_changes_nothing() {
    let f = Fixture::new().await;
    let t = task("default");
    let again = t.clone();
    f.store.enqueue(vec![t]).await.expect("enqueue");
    let c = f
        .store
        .claim(&request(&["default"], 1))
        .await
        .expect("claim");
    let resent = f.store.enqueue(vec![again]).await.expect("enqueue again");
    assert_eq!(resent[0].id, c[0].lease.id);
    assert_eq!(resent[0].status, TaskState::Running);
    assert!(!resent[0].deduplicated);
    let r = f
        .store
        .get(c[0].lease.id)
        .await
        .expect("get")
        .expect("record");
    assert_eq!((r.status, r.attempt), (TaskState::Running, 1));
    assert_eq!(f.store.depth().await.expect("depth").waiting, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_number_of_stores_may_reap_at_once() {
    let f = Fixture::new().await;
    let tasks: Vec<NewTask> = (0..200).map(|_| task("default")).collect();
    f.store.enqueue(tasks).await.expect("enqueue");
    let claimed = f
        .store
        .claim(&request(&["default"], 200))
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 200);
    f.clock.advance(Duration::from_secs(31));
    let mut reapers = Vec::new();
    for _ in 0..4 {
        let store = f.sibling().await;
        reapers.push(tokio::spawn(async move { store.reap().await }));
    }
    let mut requeued = 0;
    for r in reapers {
        requeued += r.await.expect("join").expect("reap").requeued;
    }
    assert_eq!(requeued, 200, "each lapsed lease was reaped exactly once");
    let depth = f.store.depth().await.expect("depth");
    assert_eq!((depth.waiting, depth.running), (200, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_are_loaded_again_after_a_flush() {
    let redis = PrivateRedis::start();
    let store = RedisStore::connect(&redis.url(), RedisConfig::default())
        .await
        .expect("connects");
    store.enqueue(vec![task("default")]).await.expect("enqueue");
    let mut conn = redis::Client::open(redis.url())
        .and_then(|c| c.get_connection())
        .expect("connection");
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query(&mut conn)
        .expect("flush");
    let claimed = store
        .claim(&request(&["default"], 1))
        .await
        .expect("claim answers after NOSCRIPT");
    assert_eq!(claimed.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefixes_that_could_share_keys_are_refused() {
    // Prefix `a` with queue `b:c` and prefix `a:b` with queue `c` would both be `{a:b:c}`.
    for prefix in ["a:b", "a{b", "a}", ""] {
        match RedisStore::connect(REDIS_URL, RedisConfig::default().prefix(prefix)).await {
            Err(RedisStoreError::InvalidPrefix(p)) => assert_eq!(p, prefix),
            other => panic!("{prefix:?} was not refused: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clear_deletes_its_own_keys_and_no_others() {
    let f = Fixture::new().await;
    let neighbour = format!("{}x", f.prefix);
    let other = common::store_on(&neighbour, f.clock.clone()).await;
    let _cleanup = Cleanup(neighbour.clone());
    for store in [&f.store, &other] {
        store
            .enqueue(vec![task("default"), task("b:c")])
            .await
            .expect("enqueue");
        assert!(
            store
                .swap_meta("seal_key_id", None, "k1")
                .await
                .expect("meta")
        );
    }
    // A key that starts like the prefix's own but is none of errand's.
    let foreign = format!("{{{}}}:not-errand", f.prefix);
    let mut redis = f.redis();
    let _: () = redis::cmd("SET")
        .arg(&foreign)
        .arg(1)
        .query(&mut redis)
        .expect("SET");

    let deleted = f.store.clear().await.expect("clear");
    assert!(deleted > 0);
    let left = |pattern: String| -> Vec<String> {
        redis::cmd("KEYS")
            .arg(pattern)
            .query(&mut f.redis())
            .expect("KEYS")
    };
    assert!(left(format!("{{{}:*", f.prefix)).is_empty());
    assert!(left(format!("{{{}}}:queues", f.prefix)).is_empty());
    assert!(left(format!("{{{}}}:meta", f.prefix)).is_empty());
    assert_eq!(
        other
            .get_meta("seal_key_id")
            .await
            .expect("meta")
            .as_deref(),
        Some("k1"),
        "the neighbour's deployment record stays"
    );
    assert_eq!(
        left(foreign.clone()),
        [foreign.as_str()],
        "not errand's key"
    );
    assert!(
        !left(format!("{{{neighbour}:*")).is_empty(),
        "not this prefix"
    );
    assert_eq!(
        other
            .depth()
            .await
            .expect("the neighbour's tasks are intact")
            .waiting,
        2
    );
    let _: () = redis::cmd("DEL")
        .arg(&foreign)
        .query(&mut redis)
        .expect("DEL");
}

/// Deletes a prefix's keys when dropped.
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        common::delete_keys(REDIS_URL, &self.0);
    }
}
