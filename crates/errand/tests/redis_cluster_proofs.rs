//! The scale-out proof on a Redis Cluster (issue 10): two `errand serve --redis-cluster` APIs
//! take tasks over HTTP from several users while three proof workers on the cluster run them
//! and, about once a second, one is killed with -9: nothing is lost, no run ever sees another
//! user, and duplicate runs are only those of killed workers and no more than they held.
//!
//! The cluster is the test's own: 3 primaries and 3 replicas on free loopback ports
//! (`redis-server --cluster-enabled yes`, `redis-cli --cluster create`), stopped at its end.
//! The size suits CI; `ERRAND_PROOF_LARGE=1 cargo test -p errand --test redis_cluster_proofs
//! -- --nocapture` runs the large one. The proof prints what it measured on stderr.

mod cluster;

use cluster::{Backend, TestCluster, crash_over_http, unique_name};

/// The entry point of the proof workers: this test binary re-executed with
/// `ERRAND_PROOF_WORKER` set runs a worker here; in a normal test run it returns at once.
#[test]
fn proof_worker_process() {
    cluster::run_proof_worker_if_asked();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_workers_killed_with_sigkill_lose_nothing_and_never_mix_users() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Started on the test's own thread, which lives as long as the test: the nodes die with
    // the thread that started them (PR_SET_PDEATHSIG), and a blocking-pool thread is reaped
    // after ten idle seconds.
    let redis = TestCluster::start();
    let backend = Backend::RedisCluster {
        url: redis.url(),
        prefix: unique_name("cluster-crash"),
    };
    crash_over_http(
        "crash proof (Redis Cluster of 3 primaries, 2 APIs over HTTP, 20 users, prefetch 8)",
        &backend,
        dir.path(),
        8,
    )
    .await;
}
