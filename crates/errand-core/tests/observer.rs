//! The worker tells its observer about every attempt: when it started and how long it had
//! waited, how it ended and how long it ran.

mod common;

use common::*;
use errand_core::*;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Default)]
struct Seen {
    started: Mutex<Vec<(String, Option<Duration>)>>,
    ended: Mutex<Vec<(String, AttemptOutcome)>>,
}

impl AttemptObserver for Seen {
    fn started(&self, task: &str, queue_wait: Option<Duration>) {
        self.started
            .lock()
            .expect("lock")
            .push((task.to_string(), queue_wait));
    }
    fn ended(&self, task: &str, outcome: AttemptOutcome, _took: Duration) {
        self.ended
            .lock()
            .expect("lock")
            .push((task.to_string(), outcome));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_attempt_is_observed_with_its_wait_and_outcome() {
    let s = setup(Arc::new(MemoryStore::new()));
    let flaky = s
        .client
        .submit(Flaky { fail_times: 1 })
        .await
        .expect("submit")
        .id;
    let ok = s
        .client
        .submit(Observe { sleep_ms: 0 })
        .await
        .expect("submit")
        .id;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let seen = Arc::new(Seen::default());
    let worker = Worker::new(s.store.clone(), registry(), s.key.clone())
        .config(config(2))
        .resource(s.journal.clone())
        .observer(seen.clone())
        .start();
    finished(&s.store, flaky, Duration::from_secs(10)).await;
    finished(&s.store, ok, Duration::from_secs(10)).await;
    worker.shutdown(Duration::from_secs(5)).await;
    let mut ended = seen.ended.lock().expect("lock").clone();
    ended.sort_by_key(|(t, o)| (t.clone(), o.as_str()));
    assert_eq!(
        ended,
        [
            ("flaky".to_string(), AttemptOutcome::Retrying),
            ("flaky".to_string(), AttemptOutcome::Success),
            ("observe".to_string(), AttemptOutcome::Success),
        ]
    );
    let started = seen.started.lock().expect("lock").clone();
    assert_eq!(started.len(), 3);
    let first_wait = started
        .iter()
        .find(|(t, _)| t == "observe")
        .and_then(|(_, w)| *w)
        .expect("the memory store knows when it became due");
    assert!(first_wait >= Duration::from_millis(50), "{first_wait:?}");
}
