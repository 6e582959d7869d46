//! Redis going away: every call answers `Unavailable` quickly (bounded by the configured
//! timeouts) without panicking, and the same store works again, pub/sub included, once Redis
//! is back; a connection lost in the middle of an enqueue never hides a stored task. Uses a
//! `redis-server` of its own, killed and restarted by the test, and a proxy that cuts a
//! connection.

mod common;

use common::PrivateRedis;
use common::proxy::Proxy;
use errand_core::{
    ClaimRequest, ListQuery, NewTask, Owner, OwnerFilter, Store, StoreError, TaskId,
};
use errand_redis::{RedisConfig, RedisStore};
use futures::StreamExt;
use std::time::{Duration, Instant};

/// Short timeouts, so an outage is noticed fast.
fn config() -> RedisConfig {
    RedisConfig::default()
        .prefix(common::unique_prefix())
        .connect_timeout(Duration::from_millis(300))
        .response_timeout(Duration::from_millis(500))
        .reconnect_delay(Duration::from_millis(50), Duration::from_millis(400))
        .keepalive_interval(Duration::from_millis(300))
}

/// The longest a call may take while Redis is down: connect + response timeout, and slack
/// for a loaded machine.
const BOUND: Duration = Duration::from_secs(3);

fn task() -> NewTask {
    let args = serde_json::value::to_raw_value(&serde_json::json!({"n": 1})).expect("json");
    NewTask::new("outage", args)
}

fn claim_request() -> ClaimRequest {
    ClaimRequest {
        queues: vec!["default".into()],
        limit: 10,
        lease: Duration::from_secs(30),
        worker_id: "outage-test".into(),
    }
}

/// Asserts that `result` is `Unavailable`, naming the server, and came within [`BOUND`].
fn assert_unavailable<T: std::fmt::Debug>(
    what: &str,
    began: Instant,
    result: Result<T, StoreError>,
    server: &str,
) {
    let took = began.elapsed();
    match result {
        Err(StoreError::Unavailable(message)) => {
            assert!(
                message.contains(server),
                "{what}: the message names the server: {message}"
            );
        }
        other => panic!("{what}: expected Unavailable, got {other:?}"),
    }
    assert!(took < BOUND, "{what} took {took:?} to fail");
}

/// Retries `f` until it succeeds or `within` passes.
async fn eventually<T, F, Fut>(within: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    let deadline = Instant::now() + within;
    loop {
        match f().await {
            Ok(v) => return v,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "the store did not recover within {within:?}: {e}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_started_without_redis_answers_unavailable() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let url = format!("redis://127.0.0.1:{port}");
    let store = RedisStore::connect(&url, config())
        .await
        .expect("connect does not need Redis to be up");
    let server = format!("127.0.0.1:{port}");
    let began = Instant::now();
    assert_unavailable("ping", began, store.ping().await, &server);
    let began = Instant::now();
    assert_unavailable("enqueue", began, store.enqueue(vec![task()]).await, &server);
    let began = Instant::now();
    assert_unavailable("get", began, store.get(TaskId::new()).await, &server);
    let began = Instant::now();
    assert_unavailable(
        "work_signal",
        began,
        store.work_signal(&["default".into()]).await.map(drop),
        &server,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_fail_fast_while_redis_is_down_and_the_store_resumes_when_it_returns() {
    let mut redis = PrivateRedis::start();
    let server = redis.url().trim_start_matches("redis://").to_string();
    let store = RedisStore::connect(&redis.url(), config())
        .await
        .expect("connects");
    let first = store.enqueue(vec![task()]).await.expect("enqueue while up")[0].id;
    let mut cancels = store.cancellations().await.expect("cancellations");
    let mut signal = store
        .work_signal(&["default".into()])
        .await
        .expect("work signal");
    signal.wait(Duration::from_millis(10)).await;

    redis.kill();

    let began = Instant::now();
    assert_unavailable("ping", began, store.ping().await, &server);
    let began = Instant::now();
    assert_unavailable("enqueue", began, store.enqueue(vec![task()]).await, &server);
    let began = Instant::now();
    assert_unavailable("claim", began, store.claim(&claim_request()).await, &server);
    let began = Instant::now();
    assert_unavailable("get", began, store.get(first).await, &server);
    let began = Instant::now();
    assert_unavailable(
        "list",
        began,
        store.list(&ListQuery::owner(OwnerFilter::Any)).await,
        &server,
    );
    let began = Instant::now();
    assert_unavailable(
        "cancel",
        began,
        store.cancel(first, &Owner::new("operator", None)).await,
        &server,
    );
    let began = Instant::now();
    assert_unavailable("reap", began, store.reap().await, &server);
    let began = Instant::now();
    assert_unavailable("depth", began, store.depth().await, &server);
    let began = Instant::now();
    assert_unavailable("watch", began, store.watch(first).await.map(drop), &server);
    // A worker waiting for work while Redis is down is not stuck: the wait ends by itself.
    let began = Instant::now();
    signal.wait(Duration::from_millis(300)).await;
    assert!(began.elapsed() < BOUND);

    // Back, empty (it keeps nothing on disk): the same store resumes on its own, its scripts
    // loaded again (Redis answers NOSCRIPT first).
    redis.restart();
    eventually(Duration::from_secs(10), || store.ping()).await;
    let id = eventually(Duration::from_secs(10), || store.enqueue(vec![task()])).await[0].id;
    let claimed = store
        .claim(&claim_request())
        .await
        .expect("claim after the restart");
    assert_eq!(claimed.iter().map(|c| c.lease.id).collect::<Vec<_>>(), [id]);

    // The pub/sub connection came back too: a cancellation reaches the stream opened before
    // the outage. (A message published while it was still reconnecting is lost, as on any
    // pub/sub; heartbeats carry cancellation then. So try a few times.)
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let t = store.enqueue(vec![task()]).await.expect("enqueue")[0].id;
        let lease = store.claim(&claim_request()).await.expect("claim");
        assert_eq!(lease.len(), 1);
        store
            .cancel(t, &Owner::new("operator", None))
            .await
            .expect("cancel");
        match tokio::time::timeout(Duration::from_millis(500), cancels.next()).await {
            Ok(Some(heard)) => {
                assert_eq!(heard, t);
                break;
            }
            _ => assert!(
                Instant::now() < deadline,
                "the cancellation stream never resumed"
            ),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_lost_mid_enqueue_never_hides_a_stored_task() {
    let proxy = Proxy::start("127.0.0.1:6379").await;
    let prefix = common::unique_prefix();
    let store = RedisStore::connect(&proxy.url(), RedisConfig::default().prefix(&prefix))
        .await
        .expect("connects");
    // The connection drops right after Redis received the script storing the task.
    let base = format!("{{{prefix}:emails}}");
    proxy.cut_after(move |c| c[0] == "EVALSHA" && c.get(3) == Some(&base));
    let mut t = task();
    t.queue = "emails".into();
    let id = t.id;
    assert!(
        store.enqueue(vec![t]).await.is_err(),
        "the caller hears of the loss"
    );
    // Whatever Redis ran before the drop, another process finds the task by its id.
    let other = RedisStore::connect(common::REDIS_URL, RedisConfig::default().prefix(&prefix))
        .await
        .expect("connects");
    let found = other.get(id).await.expect("get");
    common::delete_keys(common::REDIS_URL, &prefix);
    assert_eq!(found.map(|r| r.queue).as_deref(), Some("emails"));
}
