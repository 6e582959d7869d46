//! A Postgres server that cannot be reached is "unavailable" (the API answers 503), never a
//! panic, and the store works again once the server is back. The outage is a TCP proxy in
//! front of the test server that the test stops and starts.

mod common;

use common::{Ping, TempDb, claim_request};
use errand_core::{Client, Context, SealKey, Store, StoreError, SystemClock};
use errand_postgres::{PostgresConfig, PostgresStore};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Forwards 127.0.0.1:`port` to the test server while running.
struct Proxy {
    port: u16,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Proxy {
    async fn start(port: u16) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        let tasks = Arc::new(Mutex::new(Vec::new()));
        let connections = tasks.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let forward = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect("127.0.0.1:5432").await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                connections.lock().expect("lock").push(forward);
            }
        });
        tasks.lock().expect("lock").push(accept);
        Self { port, tasks }
    }

    /// Drops every connection and stops accepting.
    fn stop(&self) {
        for task in self.tasks.lock().expect("lock").drain(..) {
            task.abort();
        }
    }
}

fn unavailable<T: std::fmt::Debug>(result: Result<T, StoreError>) -> bool {
    matches!(result, Err(StoreError::Unavailable(_)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_is_unavailable_until_it_is_back() {
    let db = TempDb::new().await;
    let proxy = Proxy::start(0).await;
    let name = db
        .url
        .rsplit('/')
        .next()
        .expect("database name")
        .to_string();
    let url = format!("postgres://postgres@127.0.0.1:{}/{name}", proxy.port);
    let config = PostgresConfig {
        acquire_timeout: Duration::from_millis(500),
        clock: Arc::new(SystemClock),
        ..PostgresConfig::default()
    };
    let store = PostgresStore::connect(&url, config).await.expect("opens");
    let client = Client::new(Arc::new(store.clone()), SealKey::generate());
    let ctx = Context::builder().user_id("alice").build();
    let submit = || client.submit(Ping).context(ctx.clone());
    let id = submit().await.expect("submit").id;

    proxy.stop();
    assert!(unavailable(store.get(id).await));
    assert!(unavailable(store.ping().await));
    let claim = claim_request(1);
    assert!(unavailable(store.claim(&claim).await));
    match submit().await {
        Err(errand_core::SubmitError::Store(e)) => assert!(e.is_unavailable(), "{e}"),
        other => panic!("expected unavailable, got {other:?}"),
    }
    store.healthy().await.expect("the process itself is fine");

    let proxy = Proxy::start(proxy.port).await;
    let mut back = false;
    for _ in 0..50 {
        if store.get(id).await.is_ok_and(|r| r.is_some()) {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(back, "the store works again once the server is back");
    assert_eq!(store.claim(&claim).await.expect("claim").len(), 1);
    proxy.stop();
}

#[tokio::test]
async fn a_server_that_is_not_there_is_unavailable_at_connect() {
    let config = PostgresConfig {
        acquire_timeout: Duration::from_millis(500),
        ..PostgresConfig::default()
    };
    // Port 1 on the loopback: nothing listens there.
    let err = PostgresStore::connect("postgres://postgres@127.0.0.1:1/errand", config)
        .await
        .expect_err("nothing to connect to");
    assert!(err.is_unavailable(), "{err}");
    assert!(StoreError::from(err).is_unavailable());
}
