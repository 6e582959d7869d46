//! [`Metrics`]: the counters behind `GET /metrics`, rendered in the Prometheus text format
//! (version 0.0.4).
//!
//! Labels only ever hold bounded values (route templates, not paths; registered task names;
//! known methods), so no client can blow up the series count.

use axum::http::Method;
use errand_core::{QueueDepth, StoreError};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

/// Upper bounds of the request-duration histogram, in seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// The server's counters.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    inner: Mutex<Inner>,
    open_streams: AtomicI64,
}

#[derive(Debug, Default)]
struct Inner {
    /// Requests by route template, then method. Keyed by route first so that counting a
    /// request of a known series looks the route up by `&str` and allocates nothing.
    requests: BTreeMap<String, BTreeMap<&'static str, Series>>,
    /// New tasks by name.
    submitted: BTreeMap<String, u64>,
    /// Submissions answered with a live task of the same key, by name.
    deduplicated: BTreeMap<String, u64>,
    /// Store errors by (operation, kind).
    store_errors: BTreeMap<(&'static str, &'static str), u64>,
    /// Refused authentications by reason (error code).
    auth_failures: BTreeMap<&'static str, u64>,
}

/// The requests of one (route, method).
#[derive(Debug, Default)]
struct Series {
    /// Count by status.
    statuses: BTreeMap<u16, u64>,
    /// Durations.
    durations: Histogram,
}

#[derive(Debug, Default)]
struct Histogram {
    /// Count per bucket (not cumulative), plus the overflow bucket at the end.
    counts: [u64; BUCKETS.len() + 1],
    sum: f64,
}

/// A method as a bounded label value.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

fn store_error_kind(e: &StoreError) -> &'static str {
    match e {
        StoreError::Unavailable(_) => "unavailable",
        StoreError::Corrupt(_) => "corrupt",
        StoreError::Invalid(_) => "invalid",
        StoreError::Backend(_) => "backend",
    }
}

/// Escapes a label value (backslash, double quote, newline).
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts one answered request. Allocates only the first time a (route, method, status)
    /// is seen: it runs on every request, under the metrics lock.
    pub fn request(&self, method: &Method, route: &str, status: u16, latency: Duration) {
        let method = method_label(method);
        let seconds = latency.as_secs_f64();
        let bucket = BUCKETS
            .iter()
            .position(|le| seconds <= *le)
            .unwrap_or(BUCKETS.len());
        let mut inner = self.lock();
        let methods = match inner.requests.get_mut(route) {
            Some(methods) => methods,
            None => inner.requests.entry(route.to_string()).or_default(),
        };
        let series = methods.entry(method).or_default();
        *series.statuses.entry(status).or_default() += 1;
        series.durations.counts[bucket] += 1;
        series.durations.sum += seconds;
    }

    /// Counts one submission of task `name`.
    pub fn submitted(&self, name: &str, deduplicated: bool) {
        let mut inner = self.lock();
        let map = if deduplicated {
            &mut inner.deduplicated
        } else {
            &mut inner.submitted
        };
        *map.entry(name.to_string()).or_default() += 1;
    }

    /// Counts one store error during `operation`.
    pub fn store_error(&self, operation: &'static str, error: &StoreError) {
        *self
            .lock()
            .store_errors
            .entry((operation, store_error_kind(error)))
            .or_default() += 1;
    }

    /// Counts one refused authentication.
    pub fn auth_failure(&self, code: &'static str) {
        *self.lock().auth_failures.entry(code).or_default() += 1;
    }

    /// An event stream opened; the guard closes it when dropped.
    pub fn stream_opened(self: &std::sync::Arc<Self>) -> StreamGuard {
        self.open_streams.fetch_add(1, Ordering::Relaxed);
        StreamGuard(std::sync::Arc::clone(self))
    }

    /// The exposition text; `depth` is the store's, or `None` when it could not be read.
    pub fn render(&self, depth: Option<QueueDepth>) -> String {
        let inner = self.lock();
        let mut out = String::with_capacity(4096);
        // Writing to a String cannot fail.
        let w = &mut out;

        header(
            w,
            "errand_http_requests_total",
            "counter",
            "HTTP requests answered, by method, route template and status.",
        );
        for (route, methods) in &inner.requests {
            let route = escape(route);
            for (method, series) in methods {
                for (status, n) in &series.statuses {
                    let _ = writeln!(
                        w,
                        "errand_http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {n}",
                    );
                }
            }
        }

        header(
            w,
            "errand_http_request_duration_seconds",
            "histogram",
            "Time to answer an HTTP request (to the response head), by method and route template.",
        );
        let durations = inner.requests.iter().flat_map(|(route, methods)| {
            methods
                .iter()
                .map(move |(method, series)| (method, route, &series.durations))
        });
        for (method, route, h) in durations {
            let labels = format!("method=\"{method}\",route=\"{}\"", escape(route));
            let mut cumulative = 0;
            for (le, n) in BUCKETS.iter().zip(h.counts) {
                cumulative += n;
                let _ = writeln!(
                    w,
                    "errand_http_request_duration_seconds_bucket{{{labels},le=\"{le}\"}} {cumulative}"
                );
            }
            cumulative += h.counts[BUCKETS.len()];
            let _ = writeln!(
                w,
                "errand_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {cumulative}"
            );
            let _ = writeln!(
                w,
                "errand_http_request_duration_seconds_sum{{{labels}}} {}",
                h.sum
            );
            let _ = writeln!(
                w,
                "errand_http_request_duration_seconds_count{{{labels}}} {cumulative}"
            );
        }

        header(
            w,
            "errand_tasks_submitted_total",
            "counter",
            "New tasks stored through the API, by task name.",
        );
        for (name, n) in &inner.submitted {
            let _ = writeln!(
                w,
                "errand_tasks_submitted_total{{task=\"{}\"}} {n}",
                escape(name)
            );
        }

        header(
            w,
            "errand_tasks_deduplicated_total",
            "counter",
            "Submissions answered with the live task of the same idempotency key, by task name.",
        );
        for (name, n) in &inner.deduplicated {
            let _ = writeln!(
                w,
                "errand_tasks_deduplicated_total{{task=\"{}\"}} {n}",
                escape(name)
            );
        }

        header(
            w,
            "errand_store_errors_total",
            "counter",
            "Task store errors, by operation and kind.",
        );
        for ((operation, kind), n) in &inner.store_errors {
            let _ = writeln!(
                w,
                "errand_store_errors_total{{operation=\"{operation}\",kind=\"{kind}\"}} {n}"
            );
        }

        header(
            w,
            "errand_auth_failures_total",
            "counter",
            "Requests refused for lack of a valid bearer token, by reason.",
        );
        for (reason, n) in &inner.auth_failures {
            let _ = writeln!(w, "errand_auth_failures_total{{reason=\"{reason}\"}} {n}");
        }
        drop(inner);

        header(
            w,
            "errand_event_streams_open",
            "gauge",
            "Server-sent event streams open now.",
        );
        let _ = writeln!(
            w,
            "errand_event_streams_open {}",
            self.open_streams.load(Ordering::Relaxed)
        );

        header(
            w,
            "errand_store_tasks",
            "gauge",
            "Tasks in the store, waiting (pending, scheduled, retrying) or running; absent when the store cannot be read.",
        );
        if let Some(depth) = depth {
            let _ = writeln!(
                w,
                "errand_store_tasks{{state=\"waiting\"}} {}",
                depth.waiting
            );
            let _ = writeln!(
                w,
                "errand_store_tasks{{state=\"running\"}} {}",
                depth.running
            );
        }
        let _ = writeln!(
            w,
            "# HELP errand_store_up Whether the task store answered the depth query.\n# TYPE errand_store_up gauge\nerrand_store_up {}",
            u8::from(depth.is_some())
        );
        out
    }
}

fn header(w: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(w, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// Keeps one event stream counted as open.
#[derive(Debug)]
pub(crate) struct StreamGuard(std::sync::Arc<Metrics>);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.open_streams.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;
    use std::sync::Arc;

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

    #[test]
    fn counting_a_request_of_a_known_series_allocates_nothing() {
        let m = Metrics::default();
        let route = "/v1/tasks/{id}";
        m.request(&Method::GET, route, 200, Duration::from_millis(3));
        let before = allocations();
        for _ in 0..100 {
            m.request(&Method::GET, route, 200, Duration::from_millis(7));
        }
        assert_eq!(allocations() - before, 0, "the hit path allocates");
        m.request(&Method::POST, route, 202, Duration::from_millis(1));
        assert!(
            allocations() > before,
            "a new series is stored (and counted)"
        );
        let text = m.render(None);
        assert!(text.contains(
            "errand_http_requests_total{method=\"GET\",route=\"/v1/tasks/{id}\",status=\"200\"} 101"
        ));
        assert!(text.contains(
            "errand_http_request_duration_seconds_count{method=\"GET\",route=\"/v1/tasks/{id}\"} 101"
        ));
    }

    #[test]
    fn renders_counters_histograms_and_gauges() {
        let m = Arc::new(Metrics::default());
        m.request(
            &Method::GET,
            "/v1/tasks/{id}",
            200,
            Duration::from_millis(3),
        );
        m.request(
            &Method::from_bytes(b"BREW").expect("method"),
            "unmatched",
            404,
            Duration::from_secs(60),
        );
        m.submitted("say \"hi\"", false);
        m.store_error("get", &StoreError::Unavailable("down".into()));
        let guard = m.stream_opened();
        let text = m.render(Some(QueueDepth {
            waiting: 4,
            running: 2,
        }));
        assert!(text.contains(
            "errand_http_requests_total{method=\"GET\",route=\"/v1/tasks/{id}\",status=\"200\"} 1"
        ));
        assert!(text.contains(
            "errand_http_requests_total{method=\"OTHER\",route=\"unmatched\",status=\"404\"} 1"
        ));
        assert!(text.contains("errand_http_request_duration_seconds_bucket{method=\"GET\",route=\"/v1/tasks/{id}\",le=\"0.005\"} 1"));
        assert!(text.contains("errand_http_request_duration_seconds_bucket{method=\"GET\",route=\"/v1/tasks/{id}\",le=\"0.0025\"} 0"));
        assert!(text.contains("errand_http_request_duration_seconds_bucket{method=\"OTHER\",route=\"unmatched\",le=\"+Inf\"} 1"));
        assert!(text.contains("errand_tasks_submitted_total{task=\"say \\\"hi\\\"\"} 1"));
        assert!(
            text.contains("errand_store_errors_total{operation=\"get\",kind=\"unavailable\"} 1")
        );
        assert!(text.contains("errand_event_streams_open 1"));
        assert!(text.contains("errand_store_tasks{state=\"waiting\"} 4"));
        assert!(text.contains("errand_store_up 1"));
        drop(guard);
        let text = m.render(None);
        assert!(text.contains("errand_event_streams_open 0"));
        assert!(!text.contains("errand_store_tasks{"));
        assert!(text.contains("errand_store_up 0"));
    }
}
