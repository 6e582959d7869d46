//! The PostgreSQL proofs (issue 11): errand's rules hold across real processes sharing one
//! PostgreSQL database, as they do on Redis (`scale_out.rs`).
//!
//! 1. Crash: two `errand serve --store postgres` APIs take the tasks over HTTP from several
//!    users while three proof workers run them and, about once a second, one is killed with -9:
//!    nothing is lost, no run ever sees another user, and duplicate runs are only those of
//!    killed workers and no more than they held.
//! 2. Restart: a PostgreSQL of the test's own (`initdb`, `fsync=on`) stopped with
//!    `pg_ctl -m immediate` and started again mid-run loses no acknowledged (HTTP 202)
//!    enqueue; the API and the workers live through it and every task succeeds.
//! 3. Drain: SIGTERM drains a worker: its running tasks finish or go back to the queue
//!    without spending an attempt, and it exits 0 printing its stats.
//! 4. Outage at startup: `errand serve` and `errand worker` started while their PostgreSQL is
//!    down wait for it and come up when it starts; a later outage makes `/readyz` answer 503
//!    with its reason, and both live through it.
//!
//! Each test has a schema of its own on the shared server (`ERRAND_TEST_POSTGRES`, database
//! `test`), dropped at its end, or a server of its own. The sizes suit CI;
//! `ERRAND_PROOF_LARGE=1 cargo test -p errand --test postgres_proofs -- --nocapture` runs the
//! large ones. Each proof prints what it measured on stderr (shown with `--nocapture`). The
//! bloat proof (a million tasks drained) is `crates/errand-postgres/tests/bloat.rs`.

mod cluster;

use cluster::{
    Api, Backend, Restart, SchemaGuard, Server, Submitter, TestPostgres, apis_and_users,
    crash_over_http, drain_scenario, errand_worker, restart_scenario, serve, shared_postgres_url,
    unique_name,
};
use errand_core::SealKey;
use errand_postgres::{PostgresConfig, PostgresStore};
use std::sync::Arc;
use std::time::Duration;

/// The entry point of the proof workers: this test binary re-executed with
/// `ERRAND_PROOF_WORKER` set runs a worker here; in a normal test run it returns at once.
#[test]
fn proof_worker_process() {
    cluster::run_proof_worker_if_asked();
}

/// A schema of the test's own on the shared server, dropped when the guard drops.
fn shared_schema(test: &str) -> (Backend, SchemaGuard) {
    let (url, schema) = (shared_postgres_url(), unique_name(test));
    let guard = SchemaGuard::new(&url, &schema);
    (Backend::Postgres { url, schema }, guard)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_workers_killed_with_sigkill_lose_nothing_and_never_mix_users() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (backend, _drop_schema) = shared_schema("crash");
    crash_over_http(
        "crash proof (PostgreSQL, 2 APIs over HTTP, 20 users)",
        &backend,
        dir.path(),
        0,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarted_in_immediate_mode_loses_no_acknowledged_enqueue() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut postgres = TestPostgres::start_new().await;
    let schema = "errand".to_string();
    let backend = Backend::Postgres {
        url: postgres.url(),
        schema: schema.clone(),
    };
    let key = SealKey::generate();
    let (apis, users) = apis_and_users(1, 10, &backend, &key, dir.path()).await;
    let submitter = Submitter::http(&apis.iter().collect::<Vec<_>>(), users);
    // The test's client fails fast while the server is down.
    let config = PostgresConfig {
        schema,
        max_connections: 4,
        acquire_timeout: Duration::from_secs(1),
        ..PostgresConfig::default()
    };
    let store = PostgresStore::connect(&postgres.url(), config)
        .await
        .expect("connect to the test PostgreSQL");
    let deployment = Restart {
        backend: &backend,
        key: &key,
        submitter,
        store: Arc::new(store),
        others: apis.into_iter().map(|api| api.proc).collect(),
        dir: dir.path(),
    };
    let rounds = cluster::sized(1, 3);
    let per_phase = cluster::sized(100, 1_000);
    let restarted = restart_scenario(
        Server::Postgres(&mut postgres),
        deployment,
        rounds,
        per_phase,
    )
    .await;
    eprintln!(
        "{}",
        restarted.summary("restart proof (PostgreSQL, pg_ctl stop -m immediate, over HTTP)")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_sigterm_drains_a_worker_without_losing_or_spending_attempts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (backend, _drop_schema) = shared_schema("drain");
    drain_scenario("shutdown proof (PostgreSQL)", &backend, dir.path(), 0).await;
}

/// `GET /readyz` of `api`: its status and body.
async fn readiness(api: &Api) -> (u16, String) {
    let answer = reqwest::get(api.url("/readyz")).await.expect("GET /readyz");
    let status = answer.status().as_u16();
    (status, answer.text().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_down_at_startup_is_waited_for_and_an_outage_answers_503() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let mut postgres = TestPostgres::start_new().await;
    postgres.stop_immediate().await;
    let backend = Backend::Postgres {
        url: postgres.url(),
        schema: "errand".into(),
    };
    let key = SealKey::generate();
    // Both start while the database is down; they wait for it, and come up once it starts
    // (`serve` waits up to 30 s for the ready line).
    let (api, mut worker, ()) = tokio::join!(
        serve("api", &backend, Some(&key), dir.path(), &data),
        errand_worker("worker", &backend, Some(&key), dir.path(), &data, 4),
        async {
            // Longer than a connection attempt waits (the pool's acquire timeout, 5 s).
            tokio::time::sleep(Duration::from_secs(8)).await;
            postgres.start().await;
        }
    );
    let mut api = api;
    for proc in [&api.proc, &worker] {
        assert!(
            proc.log().contains("waiting for PostgreSQL"),
            "{} said it waited:\n{}",
            proc.name(),
            proc.log_tail()
        );
    }
    assert_eq!(readiness(&api).await.0, 200, "ready once PostgreSQL runs");

    // An outage once running: the API answers 503 with a reason, and nobody exits.
    postgres.stop_immediate().await;
    let (status, body) = readiness(&api).await;
    assert_eq!(status, 503, "not ready while PostgreSQL is down: {body}");
    assert!(!body.is_empty(), "the 503 says why");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(api.proc.is_running(), "the API lives through the outage");
    assert!(worker.is_running(), "the worker lives through the outage");
    postgres.start().await;
    cluster::wait_until("the API to be ready again", Duration::from_secs(30), || {
        let api = &api;
        async move { (readiness(api).await.0 == 200).then_some(()) }
    })
    .await;
    assert!(worker.is_running(), "the worker resumed");
    api.proc.terminate();
    worker.terminate();
}
