//! The in-process Manager: context capture, tracking, timeouts, cancellation, capacity and
//! shutdown statistics.

mod common;

use common::user;
use errand_core::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_users_at_once_each_see_their_own_context() {
    let manager = Manager::new(ManagerConfig::default());
    let mismatches = Arc::new(AtomicUsize::new(0));
    let ran = Arc::new(AtomicUsize::new(0));
    let mut requests = Vec::new();
    for i in 0..1000 {
        let (manager, mismatches, ran) = (manager.clone(), mismatches.clone(), ran.clone());
        // Each "request" runs in its user's scope and spawns from there (context by default).
        requests.push(tokio::spawn(async move {
            let name = format!("user-{i:04}");
            user(&name)
                .scope(async {
                    manager
                        .task("persist_conversation")
                        .spawn(async move {
                            let before =
                                Context::current().and_then(|c| c.user_id().map(String::from));
                            tokio::time::sleep(Duration::from_millis(rand::random::<u64>() % 20))
                                .await;
                            let after =
                                Context::current().and_then(|c| c.user_id().map(String::from));
                            for seen in [before, after] {
                                if seen.as_deref() != Some(name.as_str()) {
                                    mismatches.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                            ran.fetch_add(1, Ordering::Relaxed);
                        })
                        .expect("spawn")
                })
                .await
        }));
    }
    for r in requests {
        r.await.expect("join");
    }
    assert!(manager.wait_for_all(Duration::from_secs(30)).await);
    assert_eq!(ran.load(Ordering::Relaxed), 1000);
    assert_eq!(
        mismatches.load(Ordering::Relaxed),
        0,
        "a task saw another user's context"
    );
    let c = manager.counters();
    assert_eq!((c.created, c.succeeded), (1000, 1000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn context_is_captured_at_spawn_by_value() {
    let manager = Manager::new(ManagerConfig::default());
    let (tx, rx) = tokio::sync::oneshot::channel();
    let gate = Arc::new(tokio::sync::Notify::new());
    let g = gate.clone();
    user("alice")
        .scope(async {
            manager
                .task("t")
                .spawn(async move {
                    g.notified().await;
                    let _ = tx.send(Context::current().and_then(|c| c.user_id().map(String::from)));
                })
                .expect("spawn");
        })
        .await;
    // The caller moves on to another identity before the task runs.
    user("mallory").scope(async { gate.notify_one() }).await;
    assert_eq!(rx.await.expect("sent").as_deref(), Some("alice"));
    let none = manager.task("no context").without_context().spawn(async {
        assert!(Context::current().is_none());
    });
    none.expect("spawn").wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_shows_each_task() {
    let manager = Manager::new(ManagerConfig::default());
    let handle = manager
        .task("fetch_api_data")
        .context(user("ivy"))
        .timeout(Duration::from_secs(5))
        .metadata("thread_id", "t-1")
        .spawn(std::future::pending::<()>())
        .expect("spawn");
    assert_eq!(manager.len(), 1);
    let info = manager.info();
    assert_eq!(info.len(), 1);
    let i = &info[0];
    assert_eq!(i.id, handle.id());
    assert_eq!(i.name, "fetch_api_data");
    assert_eq!(i.timeout_s, Some(5.0));
    assert_eq!(i.state, "running");
    assert_eq!(i.metadata["thread_id"], "t-1");
    let summary = i.context.as_ref().expect("context");
    assert_eq!(summary.user_id.as_deref(), Some("ivy"));
    assert_eq!(summary.correlation_id.as_deref(), Some("corr-ivy"));
    assert!(i.age_s >= 0.0);
    handle.cancel();
    assert_eq!(handle.wait().await, TaskEnd::Cancelled);
    assert!(manager.is_empty());
}

#[tokio::test(start_paused = true)]
async fn timeouts_drop_the_task_and_leave_no_timer_behind() {
    let manager = Manager::new(ManagerConfig::default());
    let metrics = tokio::runtime::Handle::current().metrics();
    let alive_before = metrics.num_alive_tasks();
    let slow = manager
        .task("slow")
        .timeout(Duration::from_millis(100))
        .spawn(tokio::time::sleep(Duration::from_secs(3600)))
        .expect("spawn");
    let quick = manager
        .task("quick")
        .timeout(Duration::from_secs(3600))
        .spawn(async {})
        .expect("spawn");
    assert_eq!(quick.wait().await, TaskEnd::Succeeded);
    assert_eq!(slow.wait().await, TaskEnd::TimedOut);
    // The quick task's hour-long timeout did not outlive it.
    tokio::task::yield_now().await;
    assert_eq!(
        metrics.num_alive_tasks(),
        alive_before,
        "no timer tasks left behind"
    );
    let c = manager.counters();
    assert_eq!((c.timed_out, c.succeeded), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panics_and_errors_are_caught_and_counted() {
    let manager = Manager::new(ManagerConfig::default());
    let p = manager
        .task("panics")
        .spawn(async {
            if true {
                panic!("kaboom");
            }
        })
        .expect("spawn");
    let e = manager
        .task("errs")
        .spawn(async { Err::<(), _>("nope") })
        .expect("spawn");
    assert_eq!(p.wait().await, TaskEnd::Panicked("kaboom".into()));
    assert_eq!(e.wait().await, TaskEnd::Failed("nope".into()));
    let c = manager.counters();
    assert_eq!((c.failed, c.panicked), (2, 1));
    // Still works.
    manager
        .task("after")
        .spawn(async {})
        .expect("spawn")
        .wait()
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_manager_rejects_instead_of_dropping() {
    let manager = Manager::new(ManagerConfig {
        capacity: 3,
        ..Default::default()
    });
    for _ in 0..3 {
        manager
            .task("hold")
            .spawn(std::future::pending::<()>())
            .expect("spawn");
    }
    let err = manager
        .task("one too many")
        .spawn(async {})
        .err()
        .expect("rejected");
    assert!(matches!(err, SpawnError::Full { capacity: 3, .. }));
    assert!(err.to_string().contains("one too many"));
    assert_eq!(manager.counters().rejected, 1);
    assert_eq!(manager.cancel_all().await, 3);
    manager
        .task("room again")
        .spawn(async {})
        .expect("spawn after cancel_all");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_all_returns_after_the_tasks_finished() {
    let manager = Manager::new(ManagerConfig::default());
    let cleaned = Arc::new(AtomicUsize::new(0));
    for _ in 0..20 {
        let cleaned = cleaned.clone();
        manager
            .task("cooperative")
            .spawn_with(|token| async move {
                token.cancelled().await;
                cleaned.fetch_add(1, Ordering::SeqCst);
            })
            .expect("spawn");
        manager
            .task("oblivious")
            .spawn(std::future::pending::<()>())
            .expect("spawn");
    }
    assert_eq!(manager.cancel_all().await, 40);
    assert!(manager.is_empty(), "every cancelled task has finished");
    assert_eq!(manager.counters().cancelled, 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_for_all_never_cancels() {
    let manager = Manager::new(ManagerConfig::default());
    let h = manager
        .task("slow")
        .spawn(tokio::time::sleep(Duration::from_millis(300)))
        .expect("spawn");
    assert!(!manager.wait_for_all(Duration::from_millis(20)).await);
    assert_eq!(manager.len(), 1);
    assert_eq!(h.wait().await, TaskEnd::Succeeded);
    assert!(manager.wait_for_all(Duration::from_millis(20)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_then_cancels_and_reports() {
    let manager = Manager::new(ManagerConfig::default());
    // The quick and failing tasks end only once the shutdown has begun, however loaded the
    // machine: all eight are there when it starts.
    let (open, gate) = tokio::sync::watch::channel(false);
    for i in 0..5 {
        let mut gate = gate.clone();
        manager
            .task("quick")
            .spawn(async move {
                let _ = gate.wait_for(|open| *open).await;
                tokio::time::sleep(Duration::from_millis(20 + i)).await;
            })
            .expect("spawn");
    }
    let mut failing_gate = gate.clone();
    manager
        .task("fails")
        .spawn(async move {
            let _ = failing_gate.wait_for(|open| *open).await;
            Err::<(), _>("x")
        })
        .expect("spawn");
    let release = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let _ = open.send(true);
    });
    for _ in 0..2 {
        manager
            .task("stuck")
            .spawn(std::future::pending::<()>())
            .expect("spawn");
    }
    let stats = manager.shutdown(Duration::from_millis(300)).await;
    release.await.expect("the release runs");
    assert_eq!(stats.status, ShutdownStatus::Timeout);
    assert_eq!(stats.initial, 8);
    assert_eq!(stats.completed, 5);
    assert_eq!(stats.failed, 1);
    assert_eq!(stats.cancelled, 2);
    assert_eq!(stats.remaining, 0);
    assert!(stats.duration_s >= 0.3);

    let err = manager
        .task("late")
        .spawn(async {})
        .err()
        .expect("rejected");
    assert_eq!(err, SpawnError::ShutDown("late".into()));

    let again = manager.shutdown(Duration::from_secs(1)).await;
    assert_eq!(again.status, ShutdownStatus::AlreadyShutdown);
    let shape = |s: &ShutdownStats| {
        let v = serde_json::to_value(s).expect("json");
        let mut keys: Vec<String> = v.as_object().expect("object").keys().cloned().collect();
        keys.sort();
        keys
    };
    assert_eq!(shape(&again), shape(&stats), "the same shape on every call");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_within_the_drain_completes() {
    let manager = Manager::new(ManagerConfig::default());
    for _ in 0..10 {
        manager
            .task("quick")
            .spawn(tokio::time::sleep(Duration::from_millis(30)))
            .expect("spawn");
    }
    let stats = manager.shutdown(Duration::from_secs(5)).await;
    assert_eq!(stats.status, ShutdownStatus::Completed);
    assert_eq!(
        (
            stats.initial,
            stats.completed,
            stats.cancelled,
            stats.remaining
        ),
        (10, 10, 0, 0)
    );
}
