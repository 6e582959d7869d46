use super::*;
use errand_core::{Client, MemoryStore, SealKey, Task, TaskCx, TaskError};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

thread_local! {
    /// Allocations made by this thread (tests run on threads of their own).
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

/// The system allocator, counting each thread's allocations.
struct Counting;

// SAFETY: every call is forwarded to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: the caller upholds `alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
struct Noop {}

impl Task for Noop {
    const NAME: &'static str = "noop";
    type Output = ();
    async fn run(self, _cx: TaskCx) -> Result<(), TaskError> {
        Ok(())
    }
}

fn store() -> Arc<dyn Store> {
    Arc::new(MemoryStore::new())
}

#[test]
fn counting_a_known_series_allocates_nothing() {
    let m = Metrics::new(["noop"]);
    let route = "/v1/tasks/{id}";
    m.request(&Method::GET, route, 200, Duration::from_millis(3));
    m.submitted("noop", false);
    m.tasks().started("noop", Some(Duration::from_millis(1)));
    m.tasks()
        .ended("noop", AttemptOutcome::Success, Duration::from_millis(2));
    let before = allocations();
    for _ in 0..100 {
        m.request(&Method::GET, route, 200, Duration::from_millis(7));
        m.submitted("noop", false);
        m.tasks().started("noop", Some(Duration::from_millis(1)));
        m.tasks()
            .ended("noop", AttemptOutcome::Success, Duration::from_millis(2));
    }
    assert_eq!(allocations() - before, 0, "the hit path allocates");
    m.request(&Method::POST, route, 202, Duration::from_millis(1));
    assert!(
        allocations() > before,
        "a new series is stored (and counted)"
    );
    let text = m.encode();
    assert!(text.contains(
        "errand_http_requests_total{method=\"GET\",route=\"/v1/tasks/{id}\",status=\"200\"} 101"
    ));
    assert!(text.contains(
        "errand_http_request_duration_seconds_count{method=\"GET\",route=\"/v1/tasks/{id}\"} 101"
    ));
}

#[tokio::test]
async fn renders_counters_histograms_and_gauges() {
    let m = Arc::new(Metrics::new(["noop"]));
    m.request(
        &Method::GET,
        "/v1/tasks/{id}",
        200,
        Duration::from_millis(3),
    );
    m.request(
        &Method::from_bytes(b"BREW").expect("method"),
        "unmatched \"x\"",
        404,
        Duration::from_secs(60),
    );
    m.submitted("noop", false);
    m.submitted("noop", true);
    m.store_error("get", &StoreError::Unavailable("down".into()));
    m.auth_failure("expired_token");
    m.stream_refused("user");
    let guard = m.stream_opened();
    let text = m.render(&*store()).await;
    for expected in [
        "errand_http_requests_total{method=\"GET\",route=\"/v1/tasks/{id}\",status=\"200\"} 1",
        "errand_http_requests_total{method=\"OTHER\",route=\"unmatched \\\"x\\\"\",status=\"404\"} 1",
        "errand_http_request_duration_seconds_bucket{method=\"GET\",route=\"/v1/tasks/{id}\",le=\"0.005\"} 1",
        "errand_http_request_duration_seconds_bucket{method=\"GET\",route=\"/v1/tasks/{id}\",le=\"0.0025\"} 0",
        "errand_http_request_duration_seconds_bucket{method=\"OTHER\",route=\"unmatched \\\"x\\\"\",le=\"+Inf\"} 1",
        "errand_tasks_submitted_total{task=\"noop\"} 1",
        "errand_tasks_deduplicated_total{task=\"noop\"} 1",
        "errand_store_errors_total{operation=\"get\",kind=\"unavailable\"} 1",
        "errand_auth_failures_total{reason=\"expired_token\"} 1",
        "errand_event_streams_refused_total{reason=\"user\"} 1",
        "errand_event_streams_open 1",
        "errand_store_tasks{state=\"waiting\"} 0",
        "errand_store_tasks{state=\"running\"} 0",
        "errand_store_up 1",
    ] {
        assert!(text.contains(expected), "missing {expected} in\n{text}");
    }
    drop(guard);
    assert!(m.encode().contains("errand_event_streams_open 0"));
}

#[tokio::test]
async fn a_store_that_cannot_be_read_is_down_and_its_gauges_absent() {
    let m = Metrics::new([]);
    m.show_depth(Some(QueueDepth {
        waiting: 4,
        running: 2,
    }));
    assert!(
        m.encode()
            .contains("errand_store_tasks{state=\"waiting\"} 4")
    );
    m.show_depth(None);
    let text = m.encode();
    assert!(!text.contains("errand_store_tasks{"), "{text}");
    assert!(text.contains("errand_store_up 0"), "{text}");
}

#[tokio::test]
async fn the_depth_is_read_at_most_once_a_second() {
    let m = Metrics::new(["noop"]);
    let store = store();
    let client = Client::new(store.clone(), SealKey::generate());
    assert!(
        m.render(&*store)
            .await
            .contains("errand_store_tasks{state=\"waiting\"} 0")
    );
    client.submit(Noop {}).await.expect("submit");
    assert!(
        m.render(&*store)
            .await
            .contains("errand_store_tasks{state=\"waiting\"} 0"),
        "a scrape right after another reuses its depth"
    );
    tokio::time::sleep(DEPTH_MAX_AGE + Duration::from_millis(50)).await;
    assert!(
        m.render(&*store)
            .await
            .contains("errand_store_tasks{state=\"waiting\"} 1")
    );
}

#[test]
fn attempts_are_labelled_by_registered_name_else_other() {
    let m = Metrics::new(["noop"]);
    let tasks = m.tasks();
    tasks.started("noop", Some(Duration::from_millis(3)));
    tasks.started("noop", None);
    tasks.ended("noop", AttemptOutcome::Retrying, Duration::from_millis(20));
    tasks.started("someone's\ninvented name", Some(Duration::from_secs(2)));
    tasks.ended(
        "someone's\ninvented name",
        AttemptOutcome::Failed,
        Duration::ZERO,
    );
    let text = m.encode();
    for expected in [
        "errand_task_queue_wait_seconds_count{task=\"noop\"} 1",
        "errand_task_queue_wait_seconds_bucket{task=\"noop\",le=\"0.005\"} 1",
        "errand_task_duration_seconds_count{task=\"noop\",outcome=\"retrying\"} 1",
        "errand_task_queue_wait_seconds_count{task=\"other\"} 1",
        "errand_task_duration_seconds_count{task=\"other\",outcome=\"failed\"} 1",
    ] {
        assert!(text.contains(expected), "missing {expected} in\n{text}");
    }
    assert!(!text.contains("invented"), "{text}");
}
