//! [`Metrics`]: the series behind `GET /metrics`, kept and rendered (Prometheus text format
//! 0.0.4) by `prometheus-client`, and [`TaskMetrics`], the attempt histograms a worker feeds.
//!
//! Labels only ever hold bounded values (route templates, not paths; registered task names,
//! anything else as `other`; known methods), so no client can blow up the series count.

use axum::http::Method;
use errand_core::{AttemptObserver, AttemptOutcome, QueueDepth, Store, StoreError};
use prometheus_client::encoding::{EncodeLabelSet, prometheus_text};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// Upper bounds of the request-duration histogram, in seconds.
const REQUEST_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// Upper bounds of the attempt-duration histogram, in seconds.
const RUN_BUCKETS: [f64; 14] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 30.0, 120.0, 600.0,
];

/// Upper bounds of the queue-wait histogram, in seconds.
const WAIT_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0, 300.0,
];

/// How long the store's depth, read for a scrape, serves the next ones: a burst of scrapes
/// reads the store once.
const DEPTH_MAX_AGE: Duration = Duration::from_secs(1);

/// The label value of task names that are not registered.
const OTHER: &str = "other";

/// Makes the histograms of a family, with their buckets.
#[derive(Clone, Copy)]
struct Buckets(&'static [f64]);

impl MetricConstructor<Histogram> for Buckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(self.0.iter().copied())
    }
}

/// Label values shared by reference: a known series is found and counted without allocating.
type Label = Arc<str>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    route: Label,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: &'static str,
    route: Label,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TaskLabels {
    task: Label,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    task: Label,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StoreErrorLabels {
    operation: &'static str,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

/// Interned label values: looked up by `&str`, stored once.
#[derive(Debug, Default)]
struct Interned(RwLock<HashMap<Box<str>, Label>>);

impl Interned {
    fn get(&self, value: &str) -> Label {
        let known = self.0.read().unwrap_or_else(|p| p.into_inner());
        if let Some(label) = known.get(value) {
            return label.clone();
        }
        drop(known);
        let mut known = self.0.write().unwrap_or_else(|p| p.into_inner());
        known
            .entry(value.into())
            .or_insert_with(|| value.into())
            .clone()
    }
}

/// The server's series, and the registry that renders them.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    routes: Interned,
    requests: Family<RequestLabels, Counter>,
    durations: Family<RouteLabels, Histogram, Buckets>,
    submitted: Family<TaskLabels, Counter>,
    deduplicated: Family<TaskLabels, Counter>,
    store_errors: Family<StoreErrorLabels, Counter>,
    auth_failures: Family<ReasonLabels, Counter>,
    streams_refused: Family<ReasonLabels, Counter>,
    open_streams: Gauge,
    store_tasks: Family<StateLabels, Gauge>,
    store_up: Gauge,
    /// The last depth read, and when: scrapes within [`DEPTH_MAX_AGE`] reuse it.
    depth: tokio::sync::Mutex<Option<(Instant, Option<QueueDepth>)>>,
    tasks: Arc<TaskMetrics>,
}

impl std::fmt::Debug for Buckets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Buckets").field(&self.0.len()).finish()
    }
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

impl Metrics {
    /// The series of a server accepting the tasks `names` (they label the task series; any
    /// other name is `other`).
    pub fn new<'a>(names: impl IntoIterator<Item = &'a str>) -> Self {
        let mut registry = Registry::default();
        let requests = Family::default();
        registry.register(
            "errand_http_requests",
            "HTTP requests answered, by method, route template and status",
            requests.clone(),
        );
        let durations = Family::new_with_constructor(Buckets(&REQUEST_BUCKETS));
        registry.register(
            "errand_http_request_duration_seconds",
            "Time to answer an HTTP request (to the response head), by method and route template",
            durations.clone(),
        );
        let submitted = Family::default();
        registry.register(
            "errand_tasks_submitted",
            "New tasks stored through the API, by task name",
            submitted.clone(),
        );
        let deduplicated = Family::default();
        registry.register(
            "errand_tasks_deduplicated",
            "Submissions answered with the live task of the same idempotency key, by task name",
            deduplicated.clone(),
        );
        let store_errors = Family::default();
        registry.register(
            "errand_store_errors",
            "Task store errors, by operation and kind",
            store_errors.clone(),
        );
        let auth_failures = Family::default();
        registry.register(
            "errand_auth_failures",
            "Requests refused for lack of a valid bearer token, by reason",
            auth_failures.clone(),
        );
        let streams_refused = Family::default();
        registry.register(
            "errand_event_streams_refused",
            "Event streams refused (429) because a cap was reached, by cap (user or total)",
            streams_refused.clone(),
        );
        let open_streams = Gauge::default();
        registry.register(
            "errand_event_streams_open",
            "Server-sent event streams open now",
            open_streams.clone(),
        );
        let store_tasks = Family::default();
        registry.register(
            "errand_store_tasks",
            "Tasks in the store, waiting (pending, scheduled, retrying) or running, read at most once a second; absent when the store cannot be read",
            store_tasks.clone(),
        );
        let store_up = Gauge::default();
        registry.register(
            "errand_store_up",
            "Whether the task store answered the depth query",
            store_up.clone(),
        );
        let tasks = Arc::new(TaskMetrics::new(names, &mut registry));
        Self {
            registry,
            routes: Interned::default(),
            requests,
            durations,
            submitted,
            deduplicated,
            store_errors,
            auth_failures,
            streams_refused,
            open_streams,
            store_tasks,
            store_up,
            depth: tokio::sync::Mutex::new(None),
            tasks,
        }
    }

    /// The attempt histograms, for a worker in this process to feed.
    pub fn tasks(&self) -> Arc<TaskMetrics> {
        Arc::clone(&self.tasks)
    }

    /// Counts one answered request. Allocates only the first time a (route, method, status)
    /// is seen: it runs on every request.
    pub fn request(&self, method: &Method, route: &str, status: u16, latency: Duration) {
        let method = method_label(method);
        let route = self.routes.get(route);
        self.durations
            .get_or_create(&RouteLabels {
                method,
                route: route.clone(),
            })
            .observe(latency.as_secs_f64());
        self.requests
            .get_or_create(&RequestLabels {
                method,
                route,
                status,
            })
            .inc();
    }

    /// Counts one submission of the registered task `name`.
    pub fn submitted(&self, name: &str, deduplicated: bool) {
        let family = if deduplicated {
            &self.deduplicated
        } else {
            &self.submitted
        };
        family
            .get_or_create(&TaskLabels {
                task: self.tasks.label(name),
            })
            .inc();
    }

    /// Counts one store error during `operation`.
    pub fn store_error(&self, operation: &'static str, error: &StoreError) {
        self.store_errors
            .get_or_create(&StoreErrorLabels {
                operation,
                kind: store_error_kind(error),
            })
            .inc();
    }

    /// Counts one refused authentication.
    pub fn auth_failure(&self, code: &'static str) {
        self.auth_failures
            .get_or_create(&ReasonLabels { reason: code })
            .inc();
    }

    /// Counts one event stream refused at the cap `reason` (`user` or `total`).
    pub fn stream_refused(&self, reason: &'static str) {
        self.streams_refused
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    /// An event stream opened; the guard closes it when dropped.
    pub fn stream_opened(self: &Arc<Self>) -> StreamGuard {
        self.open_streams.inc();
        StreamGuard(Arc::clone(self))
    }

    /// The exposition text, with the depth of `store` read at most once per
    /// [`DEPTH_MAX_AGE`].
    pub async fn render(&self, store: &dyn Store) -> String {
        let mut cached = self.depth.lock().await;
        let depth = match *cached {
            Some((at, depth)) if at.elapsed() < DEPTH_MAX_AGE => depth,
            _ => {
                let depth = match store.depth().await {
                    Ok(depth) => Some(depth),
                    Err(e) => {
                        self.store_error("depth", &e);
                        None
                    }
                };
                *cached = Some((Instant::now(), depth));
                depth
            }
        };
        self.show_depth(depth);
        let text = self.encode();
        drop(cached);
        text
    }

    fn show_depth(&self, depth: Option<QueueDepth>) {
        self.store_up.set(i64::from(depth.is_some()));
        match depth {
            Some(depth) => {
                for (state, n) in [("waiting", depth.waiting), ("running", depth.running)] {
                    self.store_tasks
                        .get_or_create(&StateLabels { state })
                        .set(i64::try_from(n).unwrap_or(i64::MAX));
                }
            }
            None => self.store_tasks.clear(),
        }
    }

    fn encode(&self) -> String {
        let mut out = String::with_capacity(8192);
        // Writing to a String cannot fail.
        let _ = prometheus_text::encode(&mut out, &self.registry);
        out
    }
}

/// Keeps one event stream counted as open.
#[derive(Debug)]
pub(crate) struct StreamGuard(Arc<Metrics>);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.open_streams.dec();
    }
}

/// The attempt histograms: `errand_task_duration_seconds{task,outcome}` and
/// `errand_task_queue_wait_seconds{task}`, fed by a worker in the server's process (see
/// [`Server::attempt_observer`](crate::Server::attempt_observer)).
#[derive(Debug)]
pub(crate) struct TaskMetrics {
    /// The registered names, and `other`.
    names: HashMap<Box<str>, Label>,
    other: Label,
    durations: Family<OutcomeLabels, Histogram, Buckets>,
    waits: Family<TaskLabels, Histogram, Buckets>,
}

impl TaskMetrics {
    fn new<'a>(names: impl IntoIterator<Item = &'a str>, registry: &mut Registry) -> Self {
        let durations = Family::new_with_constructor(Buckets(&RUN_BUCKETS));
        registry.register(
            "errand_task_duration_seconds",
            "Time an attempt ran, by task name and outcome (success, retrying, failed, cancelled, released, lost)",
            durations.clone(),
        );
        let waits = Family::new_with_constructor(Buckets(&WAIT_BUCKETS));
        registry.register(
            "errand_task_queue_wait_seconds",
            "Time from when an attempt was due to when a worker started it, by task name",
            waits.clone(),
        );
        Self {
            names: names
                .into_iter()
                .map(|name| (Box::from(name), Label::from(name)))
                .collect(),
            other: Label::from(OTHER),
            durations,
            waits,
        }
    }

    /// `name`'s label: itself when registered, else `other`.
    fn label(&self, name: &str) -> Label {
        self.names.get(name).unwrap_or(&self.other).clone()
    }
}

impl AttemptObserver for TaskMetrics {
    fn started(&self, task: &str, queue_wait: Option<Duration>) {
        if let Some(wait) = queue_wait {
            self.waits
                .get_or_create(&TaskLabels {
                    task: self.label(task),
                })
                .observe(wait.as_secs_f64());
        }
    }

    fn ended(&self, task: &str, outcome: AttemptOutcome, took: Duration) {
        self.durations
            .get_or_create(&OutcomeLabels {
                task: self.label(task),
                outcome: outcome.as_str(),
            })
            .observe(took.as_secs_f64());
    }
}

#[cfg(test)]
mod tests;
