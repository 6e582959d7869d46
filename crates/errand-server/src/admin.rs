//! Who the caller is (`GET /v1/me`), and the operators' views, for the admin role only: the
//! deployment's workers, its queues, and its last hour minute by minute. Everything here is
//! read from pre-aggregated records ([`errand_core::activity`] and the store's maintained
//! counts), never by counting tasks.

use crate::caller::Caller;
use crate::error::ApiError;
use crate::openapi::{self, AdminRouteErrors, IdentityProviderUnavailable, Unauthorized};
use crate::state::AppState;
use axum::Json;
use axum::extract::{FromRequestParts, Query, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use chrono::{DateTime, TimeZone, Utc};
use errand_core::activity::minutes::{KEPT_MINUTES, minute_of};
use errand_core::activity::{self, Histogram, QueueMinute, WorkerPresence};
use errand_core::remote::MAX_WAIT;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use utoipa::{IntoParams, ToSchema};

/// A worker not heard from for this long is shown as not alive. A Rust worker publishes every
/// 5 s by default; a remote one is heard from at each claim, and an idle one's claim waits up
/// to [`MAX_WAIT`] (30 s) before it claims again, so less than that would show idle remote
/// workers as dead for part of every wait.
pub const ALIVE_WITHIN: Duration = Duration::from_secs(MAX_WAIT.as_secs() + 15);

/// The caller, as the server sees its token.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Me {
    /// The user id (empty for a worker token).
    user_id: String,
    /// The tenant, when the token names one.
    #[serde(skip_serializing_if = "Option::is_none")]
    tenant: Option<String>,
    /// Whether the caller holds the admin role: sees every user's tasks and the operator views.
    admin: bool,
    /// The worker's name, for a worker token.
    #[serde(skip_serializing_if = "Option::is_none")]
    worker: Option<String>,
    /// When the token expires.
    token_expires_at: DateTime<Utc>,
}

/// `GET /v1/me`: who the token says the caller is.
#[utoipa::path(
    get,
    path = "/v1/me",
    operation_id = "whoAmI",
    tag = openapi::TASKS_TAG,
    summary = "The caller",
    responses(
        (status = 200, description = "The caller's user, tenant, role and token expiry.", body = Me),
        (status = 401, response = Unauthorized),
        (status = 503, response = IdentityProviderUnavailable),
    )
)]
pub(crate) async fn me(caller: Caller) -> Json<Me> {
    Json(Me {
        user_id: caller.user_id().to_string(),
        tenant: caller.tenant().map(str::to_string),
        admin: caller.is_admin(),
        worker: caller.worker().map(str::to_string),
        token_expires_at: caller.token_expires_at(),
    })
}

/// The caller of an operator route: a token holding the admin role.
pub(crate) struct Admin;

impl<S: Send + Sync> FromRequestParts<S> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let caller = Caller::from_request_parts(parts, state).await?;
        if caller.is_admin() {
            Ok(Admin)
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "admin_only",
                "this view is for operators: it needs a token holding the admin role",
            ))
        }
    }
}

/// One worker in the workers view.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct WorkerRow {
    #[serde(flatten)]
    presence: WorkerPresence,
    /// Whether it was heard from within the last 45 s (an idle remote worker claims again at
    /// least every 30 s).
    alive: bool,
}

/// The deployment's workers.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct WorkersView {
    /// Most recently heard from first.
    workers: Vec<WorkerRow>,
}

/// `GET /v1/admin/workers`: every worker heard from in the last two minutes.
#[utoipa::path(
    get,
    path = "/v1/admin/workers",
    operation_id = "listWorkers",
    tag = openapi::ADMIN_TAG,
    summary = "Workers",
    responses(
        (status = 200, description = "Each worker: id, host, language, queues, concurrency, running tasks, last heartbeat.", body = WorkersView),
        AdminRouteErrors,
    )
)]
pub(crate) async fn workers(
    State(app): State<Arc<AppState>>,
    _: Admin,
) -> Result<Json<WorkersView>, ApiError> {
    let now = Utc::now();
    let workers = activity::workers(&*app.store)
        .await
        .map_err(|e| app.store_error("workers", e))?
        .into_iter()
        .map(|presence| WorkerRow {
            alive: presence.seen_within(ALIVE_WITHIN, now),
            presence,
        })
        .collect();
    Ok(Json(WorkersView { workers }))
}

/// One queue in the queues view.
#[derive(Debug, Default, Serialize, ToSchema)]
pub(crate) struct QueueRow {
    /// The queue.
    queue: String,
    /// Tasks waiting to run.
    waiting: u64,
    /// Tasks running.
    running: u64,
    /// Attempts that succeeded in the last hour.
    succeeded: u64,
    /// Attempts that failed for good in the last hour.
    failed: u64,
    /// Attempts that failed and were retried in the last hour.
    retried: u64,
    /// Attempts that ended in the last hour, per minute.
    throughput_per_min: f64,
}

/// The deployment's queues.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct QueuesView {
    /// By name.
    queues: Vec<QueueRow>,
}

/// `GET /v1/admin/queues`: each queue's depth, and what its attempts did in the last hour.
#[utoipa::path(
    get,
    path = "/v1/admin/queues",
    operation_id = "listQueues",
    tag = openapi::ADMIN_TAG,
    summary = "Queues",
    responses(
        (status = 200, description = "Each queue: waiting, running, and the last hour's outcomes.", body = QueuesView),
        AdminRouteErrors,
    )
)]
pub(crate) async fn queues(
    State(app): State<Arc<AppState>>,
    _: Admin,
) -> Result<Json<QueuesView>, ApiError> {
    let minutes = activity::minutes::minutes(&*app.store)
        .await
        .map_err(|e| app.store_error("activity", e))?;
    let mut rows: BTreeMap<String, QueueRow> = BTreeMap::new();
    for depth in app
        .store
        .queues()
        .await
        .map_err(|e| app.store_error("queues", e))?
    {
        let row = rows.entry(depth.queue.clone()).or_default();
        row.waiting = depth.waiting;
        row.running = depth.running;
    }
    let oldest = minute_of(Utc::now()) - KEPT_MINUTES;
    for (_, bucket) in minutes.minutes.range(oldest + 1..) {
        for (queue, q) in &bucket.queues {
            let row = rows.entry(queue.clone()).or_default();
            row.succeeded += q.succeeded;
            row.failed += q.failed;
            row.retried += q.retried;
            row.throughput_per_min += q.ended() as f64 / KEPT_MINUTES as f64;
        }
    }
    let queues = rows
        .into_iter()
        .map(|(queue, row)| QueueRow { queue, ..row })
        .collect();
    Ok(Json(QueuesView { queues }))
}

/// Which queue the activity view shows.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ActivityParams {
    /// Only this queue (default: all).
    queue: Option<String>,
}

/// One minute of the activity view.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct MinutePoint {
    /// The minute's start.
    minute: DateTime<Utc>,
    /// Attempts that succeeded.
    succeeded: u64,
    /// Attempts that failed (for good, or retried).
    failed: u64,
    /// Failed attempts over ended ones (0 when none ended).
    failure_rate: f64,
    /// Median run time in ms (bucket upper bound), when any attempt ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    run_p50_ms: Option<u64>,
    /// 95th percentile run time in ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    run_p95_ms: Option<u64>,
    /// Median time from due to started, in ms, when any attempt started.
    #[serde(skip_serializing_if = "Option::is_none")]
    wait_p50_ms: Option<u64>,
    /// 95th percentile time from due to started, in ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    wait_p95_ms: Option<u64>,
}

/// The last hour, per minute.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ActivityView {
    /// Oldest first, one per minute, the current minute last.
    minutes: Vec<MinutePoint>,
}

/// `GET /v1/admin/activity`: the last hour, per minute: throughput, failure rate, and p50/p95
/// of run time and queue wait, from the buckets the workers publish.
#[utoipa::path(
    get,
    path = "/v1/admin/activity",
    operation_id = "activity",
    tag = openapi::ADMIN_TAG,
    summary = "The last hour, per minute",
    params(ActivityParams),
    responses(
        (status = 200, description = "60 points, oldest first.", body = ActivityView),
        AdminRouteErrors,
    )
)]
pub(crate) async fn activity_view(
    State(app): State<Arc<AppState>>,
    _: Admin,
    Query(params): Query<ActivityParams>,
) -> Result<Json<ActivityView>, ApiError> {
    let minutes = activity::minutes::minutes(&*app.store)
        .await
        .map_err(|e| app.store_error("activity", e))?;
    let now = minute_of(Utc::now());
    let points = (now - KEPT_MINUTES + 1..=now)
        .map(|m| {
            let mut sum = QueueMinute::default();
            if let Some(bucket) = minutes.minutes.get(&m) {
                for (queue, q) in &bucket.queues {
                    if params.queue.as_ref().is_none_or(|want| want == queue) {
                        sum.merge(q);
                    }
                }
            }
            point(m, &sum)
        })
        .collect();
    Ok(Json(ActivityView { minutes: points }))
}

fn point(minute: i64, q: &QueueMinute) -> MinutePoint {
    let failed = q.failed + q.retried;
    let ended = q.ended();
    let quantiles = |h: &Histogram| (h.quantile_ms(0.5), h.quantile_ms(0.95));
    let (run_p50_ms, run_p95_ms) = quantiles(&q.run_ms);
    let (wait_p50_ms, wait_p95_ms) = quantiles(&q.wait_ms);
    MinutePoint {
        minute: Utc
            .timestamp_opt(minute * 60, 0)
            .single()
            .unwrap_or_default(),
        succeeded: q.succeeded,
        failed,
        failure_rate: if ended == 0 {
            0.0
        } else {
            failed as f64 / ended as f64
        },
        run_p50_ms,
        run_p95_ms,
        wait_p50_ms,
        wait_p95_ms,
    }
}
