//! Where the store reads "now": Redis's own clock by default, so every host compares leases
//! and due times on one clock; an injected clock when the configuration names one. The store
//! talks to the shared Redis through a proxy that shows what it sends.

mod common;

use common::proxy::Proxy;
use common::{REDIS_URL, unique_prefix};
use errand_core::{
    ClaimRequest, Clock, Completion, ManualClock, NewTask, Outcome, StatusUpdate, Store,
};
use errand_redis::{RedisConfig, RedisStore};
use std::sync::Arc;
use std::time::Duration;

fn task() -> NewTask {
    let args = serde_json::value::to_raw_value(&serde_json::json!({"n": 1})).expect("json");
    NewTask::new("clock", args)
}

fn request() -> ClaimRequest {
    ClaimRequest {
        queues: vec!["default".into()],
        limit: 10,
        lease: Duration::from_secs(30),
        worker_id: "clock".into(),
    }
}

/// Redis's clock, in ms.
fn redis_now(conn: &mut redis::Connection) -> i64 {
    let (secs, micros): (i64, i64) = redis::cmd("TIME").query(conn).expect("TIME");
    secs * 1000 + micros / 1000
}

/// The `now` argument of every script call sent through `proxy`.
fn script_nows(proxy: &Proxy) -> Vec<String> {
    proxy
        .commands()
        .into_iter()
        .filter(|c| c[0] == "EVALSHA")
        .map(|c| c[4].clone())
        .collect()
}

struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        common::delete_keys(REDIS_URL, &self.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_default_scripts_read_redis_time_and_records_show_it() {
    let proxy = Proxy::start("127.0.0.1:6379").await;
    let prefix = unique_prefix();
    let _cleanup = Cleanup(prefix.clone());
    let store = RedisStore::connect(&proxy.url(), RedisConfig::default().prefix(&prefix))
        .await
        .expect("connects");
    let mut conn = redis::Client::open(REDIS_URL)
        .and_then(|c| c.get_connection())
        .expect("a plain connection");

    let before = redis_now(&mut conn);
    let mut delayed = task();
    delayed.delay = Some(Duration::from_secs(3600));
    let delayed_id = delayed.id;
    let id = store.enqueue(vec![task()]).await.expect("enqueue")[0].id;
    store.enqueue(vec![delayed]).await.expect("enqueue");
    let claimed = store.claim(&request()).await.expect("claim");
    assert_eq!(claimed.len(), 1);
    let lease_end: f64 = redis::cmd("ZSCORE")
        .arg(format!("{{{prefix}:default}}:leases"))
        .arg(id.to_string())
        .query(&mut conn)
        .expect("ZSCORE");
    store
        .heartbeat(&[claimed[0].lease], Duration::from_secs(30))
        .await
        .expect("heartbeat");
    store
        .complete(vec![Completion {
            lease: claimed[0].lease,
            outcome: Outcome::Success(serde_json::value::to_raw_value(&1).expect("json")),
            report: StatusUpdate::default(),
        }])
        .await
        .expect("complete");
    store.reap().await.expect("reap");
    let after = redis_now(&mut conn);

    let nows = script_nows(&proxy);
    assert!(nows.len() >= 5, "scripts ran: {nows:?}");
    assert!(
        nows.iter().all(String::is_empty),
        "the store sent a time of its own: {nows:?}"
    );
    let within = |what: &str, ms: i64| {
        assert!(
            (before..=after).contains(&ms),
            "{what} {ms} is not Redis's time (between {before} and {after})"
        );
    };
    let record = store.get(id).await.expect("get").expect("record");
    within("created_at", record.created_at.timestamp_millis());
    within("updated_at", record.updated_at.timestamp_millis());
    within(
        "started_at",
        record.started_at.expect("started").timestamp_millis(),
    );
    within(
        "completed_at",
        record.completed_at.expect("completed").timestamp_millis(),
    );
    within("lease end - 30 s", lease_end as i64 - 30_000);
    let scheduled = store.get(delayed_id).await.expect("get").expect("record");
    within(
        "run_at - 1 h",
        scheduled.run_at.expect("run_at").timestamp_millis() - 3_600_000,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_injected_clock_drives_every_time() {
    let proxy = Proxy::start("127.0.0.1:6379").await;
    let prefix = unique_prefix();
    let _cleanup = Cleanup(prefix.clone());
    let clock = Arc::new(ManualClock::new());
    clock.advance(Duration::from_secs(1000 * 24 * 3600));
    let store = RedisStore::connect(
        &proxy.url(),
        RedisConfig::default().prefix(&prefix).clock(clock.clone()),
    )
    .await
    .expect("connects");
    let id = store.enqueue(vec![task()]).await.expect("enqueue")[0].id;
    let now = clock.now().timestamp_millis();
    assert_eq!(script_nows(&proxy), [now.to_string()]);
    let record = store.get(id).await.expect("get").expect("record");
    assert_eq!(record.created_at.timestamp_millis(), now);
    assert_eq!(record.updated_at.timestamp_millis(), now);
}
