//! What the Redis layout promises beyond the conformance suite: cancelled entries never
//! count or run, several queues are claimed oldest first, finished records carry a Redis TTL
//! and leave the listing indexes when purged, nothing is published for unwatched tasks, a
//! resent enqueue changes nothing, scripts reload after a flush, and any number of reapers
//! may run at once.

mod common;

use common::{PrivateRedis, REDIS_URL};
use errand_core::{
    ClaimRequest, Claimed, Completion, ManualClock, NewTask, Outcome, Owner, StatusUpdate, Store,
    TaskState,
};
use errand_redis::{RedisConfig, RedisStore};
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
    f.store.cancel(ids[1]).await.expect("cancel");
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
