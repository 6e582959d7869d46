//! [`MemoryStore`]: the in-memory [`Store`], the fallback store and the reference the others are
//! measured against. Nothing survives the process.

use crate::attempt_log::{AttemptEnding, log_attempt};
use crate::clock::{Clock, SystemClock};
use crate::events::{CancelBus, Watchers, WorkNotifier};
use crate::history::{Action, ActionOutcome, push_action};
use crate::id::TaskId;
use crate::lease::{Lease, LeaseState, LeaseToken, lease_expired_error};
use crate::sealed::SealedContext;
use crate::status::{Owner, StatusUpdate, TaskRecord, TaskState};
use crate::store::{
    CancelOutcome, ClaimRequest, Claimed, CompleteResult, Completion, Enqueued, EventStream,
    ListQuery, NewTask, Outcome, OwnerFilter, Page, QueueCounts, QueueDepth, Reaped, RetryOutcome,
    StateCounts, Store, StoreError, WorkSignal, scoped_key,
};
use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use futures::stream::BoxStream;
use index::{Index, Walk};
use serde_json::value::RawValue;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

mod index;

/// A [`Store`] in process memory: fast, complete, and gone when the process ends.
///
/// ```
/// use errand_core::{MemoryStore, Store};
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let store = MemoryStore::new();
/// store.ping().await.unwrap();
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct MemoryStore {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    clock: Arc<dyn Clock>,
    watchers: Arc<Watchers>,
    cancels: CancelBus,
    work: WorkNotifier,
}

#[derive(Debug, Default)]
struct State {
    tasks: BTreeMap<TaskId, Entry>,
    /// Waiting tasks per queue, by (due time in ms, id).
    ready: HashMap<String, BTreeSet<(i64, TaskId)>>,
    /// Running tasks by (lease expiry in ms, id).
    leases: BTreeSet<(i64, TaskId)>,
    /// Finished tasks by (expiry in ms, id).
    expiry: BTreeSet<(i64, TaskId)>,
    /// Live idempotency keys (owner-scoped).
    keys: HashMap<String, TaskId>,
    /// Listing indexes and per-state counts.
    index: Index,
    /// Deployment facts (`Store::get_meta`).
    meta: HashMap<String, String>,
}

#[derive(Debug)]
struct Entry {
    record: TaskRecord,
    args: Box<RawValue>,
    context: Option<SealedContext>,
    scoped_key: Option<String>,
    /// The token of the last claim.
    token: Option<LeaseToken>,
    ttl: Duration,
    /// Key in `ready` while waiting.
    due_ms: Option<i64>,
    /// Key in `leases` while running.
    lease_ms: Option<i64>,
    /// Key in `expiry` when finished.
    expiry_ms: Option<i64>,
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// `t + d`, saturating at the latest representable time.
fn after(t: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    TimeDelta::from_std(d)
        .ok()
        .and_then(|d| t.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

impl MemoryStore {
    /// An empty store on the system clock.
    pub fn new() -> Self {
        Self::with_clock(Arc::new(SystemClock))
    }

    /// An empty store reading time from `clock` (tests drive leases and TTLs with it).
    pub fn with_clock(clock: Arc<dyn Clock>) -> Self {
        Self {
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
                clock,
                watchers: Arc::new(Watchers::default()),
                cancels: CancelBus::default(),
                work: WorkNotifier::default(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.shared.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn now(&self) -> DateTime<Utc> {
        self.shared.clock.now()
    }

    fn publish(&self, record: &TaskRecord) {
        self.shared.watchers.publish(record);
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl State {
    fn make_ready(&mut self, id: TaskId, due_ms: i64) {
        let Some(e) = self.tasks.get_mut(&id) else {
            return;
        };
        e.due_ms = Some(due_ms);
        self.ready
            .entry(e.record.queue.clone())
            .or_default()
            .insert((due_ms, id));
    }

    fn unready(&mut self, id: TaskId) {
        if let Some(e) = self.tasks.get_mut(&id)
            && let Some(due) = e.due_ms.take()
            && let Some(q) = self.ready.get_mut(&e.record.queue)
        {
            q.remove(&(due, id));
        }
    }

    /// Moves a waiting or running task to another live state, and its indexes with it.
    fn set_status(&mut self, id: TaskId, state: TaskState) {
        if let Some(e) = self.tasks.get_mut(&id) {
            let from = e.record.status;
            e.record.status = state;
            self.index.moved(&e.record, from);
        }
    }

    fn drop_lease(&mut self, id: TaskId) {
        if let Some(e) = self.tasks.get_mut(&id)
            && let Some(l) = e.lease_ms.take()
        {
            self.leases.remove(&(l, id));
        }
    }

    /// Moves a task to a final state: sets the times, schedules expiry, frees its key.
    fn finish(&mut self, id: TaskId, state: TaskState, now: DateTime<Utc>) {
        self.unready(id);
        self.drop_lease(id);
        let Some(e) = self.tasks.get_mut(&id) else {
            return;
        };
        let expires = after(now, e.ttl);
        let from = e.record.status;
        e.record.status = state;
        self.index.moved(&e.record, from);
        e.record.completed_at = Some(now);
        e.record.updated_at = now;
        e.record.next_attempt_at = None;
        e.record.expires_at = Some(expires);
        e.expiry_ms = Some(ms(expires));
        self.expiry.insert((ms(expires), id));
        if let Some(k) = e.scoped_key.take()
            && self.keys.get(&k) == Some(&id)
        {
            self.keys.remove(&k);
        }
    }

    fn lease_state(&self, lease: &Lease) -> LeaseState {
        match self.tasks.get(&lease.id) {
            Some(e) if e.token == Some(lease.token) && e.record.status == TaskState::Running => {
                if e.record.cancel_requested {
                    LeaseState::CancelRequested
                } else {
                    LeaseState::Held
                }
            }
            _ => LeaseState::Lost,
        }
    }

    fn next_due(&self, queues: &[String], now_ms: i64) -> Option<Duration> {
        queues
            .iter()
            .filter_map(|q| self.ready.get(q)?.first().map(|(due, _)| *due))
            .min()
            .map(|due| Duration::from_millis(due.saturating_sub(now_ms).max(0) as u64))
    }
}

fn apply_report(record: &mut TaskRecord, report: StatusUpdate) {
    if let Some(p) = report.progress {
        record.progress = Some(p);
    }
    if let Some(s) = report.steps {
        record.steps = s;
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn enqueue(&self, tasks: Vec<NewTask>) -> Result<Vec<Enqueued>, StoreError> {
        let now = self.now();
        let mut out = Vec::with_capacity(tasks.len());
        let mut st = self.lock();
        for t in tasks {
            let scoped_key = t.scoped_key();
            if let Some(k) = &scoped_key
                && let Some(existing) = st.keys.get(k).and_then(|id| st.tasks.get(id))
            {
                out.push(Enqueued {
                    id: existing.record.id,
                    status: existing.record.status,
                    deduplicated: true,
                });
                continue;
            }
            let run_at = t.delay.filter(|d| !d.is_zero()).map(|d| after(now, d));
            let status = if run_at.is_some() {
                TaskState::Scheduled
            } else {
                TaskState::Pending
            };
            let record = TaskRecord {
                id: t.id,
                name: t.name,
                queue: t.queue,
                status,
                owner: t.owner.clone(),
                correlation_id: t.correlation_id,
                request_id: t.request_id,
                key: t.key,
                created_at: now,
                updated_at: now,
                run_at,
                started_at: None,
                completed_at: None,
                next_attempt_at: None,
                expires_at: None,
                attempt: 0,
                max_attempts: t.max_attempts.max(1),
                timeout_ms: t.timeout.as_millis() as u64,
                cancel_requested: false,
                progress: None,
                steps: Vec::new(),
                error: None,
                result: None,
                history: Vec::new(),
                attempts: Vec::new(),
                trace_id: t.trace_id,
                args: None,
            };
            if let Some(k) = &scoped_key {
                st.keys.insert(k.clone(), t.id);
            }
            st.index.insert(&record);
            st.tasks.insert(
                t.id,
                Entry {
                    record,
                    args: t.args,
                    context: t.context,
                    scoped_key,
                    token: None,
                    ttl: t.ttl,
                    due_ms: None,
                    lease_ms: None,
                    expiry_ms: None,
                },
            );
            st.make_ready(t.id, ms(run_at.unwrap_or(now)));
            out.push(Enqueued {
                id: t.id,
                status,
                deduplicated: false,
            });
        }
        drop(st);
        self.shared.work.notify();
        Ok(out)
    }

    async fn claim(&self, req: &ClaimRequest) -> Result<Vec<Claimed>, StoreError> {
        let now = self.now();
        let now_ms = ms(now);
        let lease_until = after(now, req.lease);
        let mut st = self.lock();
        let mut out = Vec::new();
        while out.len() < req.limit {
            let next = req
                .queues
                .iter()
                .filter_map(|q| st.ready.get(q)?.first().copied())
                .filter(|(due, _)| *due <= now_ms)
                .min();
            let Some((due, id)) = next else { break };
            let st = &mut *st;
            let Some(e) = st.tasks.get_mut(&id) else {
                break;
            };
            if let Some(q) = st.ready.get_mut(&e.record.queue) {
                q.remove(&(due, id));
            }
            e.due_ms = None;
            let token = LeaseToken::random();
            e.token = Some(token);
            e.lease_ms = Some(ms(lease_until));
            let r = &mut e.record;
            let from = r.status;
            r.status = TaskState::Running;
            r.attempt += 1;
            r.started_at = Some(now);
            r.updated_at = now;
            r.next_attempt_at = None;
            st.index.moved(&e.record, from);
            st.leases.insert((ms(lease_until), id));
            out.push(Claimed {
                lease: Lease { id, token },
                name: e.record.name.clone(),
                queue: e.record.queue.clone(),
                args: e.args.clone(),
                context: e.context.clone(),
                owner: e.record.owner.clone(),
                correlation_id: e.record.correlation_id.clone(),
                attempt: e.record.attempt,
                max_attempts: e.record.max_attempts,
                timeout: Duration::from_millis(e.record.timeout_ms),
                due_at: DateTime::from_timestamp_millis(due),
            });
            if self.shared.watchers.is_watched(id) {
                self.publish(&e.record);
            }
        }
        Ok(out)
    }

    async fn heartbeat(
        &self,
        leases: &[Lease],
        extend: Duration,
    ) -> Result<Vec<LeaseState>, StoreError> {
        let until = ms(after(self.now(), extend));
        let mut st = self.lock();
        Ok(leases
            .iter()
            .map(|lease| {
                let state = st.lease_state(lease);
                if state != LeaseState::Lost {
                    st.drop_lease(lease.id);
                    st.leases.insert((until, lease.id));
                    if let Some(e) = st.tasks.get_mut(&lease.id) {
                        e.lease_ms = Some(until);
                    }
                }
                state
            })
            .collect())
    }

    async fn report(
        &self,
        updates: Vec<(Lease, StatusUpdate)>,
    ) -> Result<Vec<LeaseState>, StoreError> {
        let now = self.now();
        let mut st = self.lock();
        Ok(updates
            .into_iter()
            .map(|(lease, update)| {
                let state = st.lease_state(&lease);
                if state != LeaseState::Lost
                    && let Some(e) = st.tasks.get_mut(&lease.id)
                {
                    apply_report(&mut e.record, update);
                    e.record.updated_at = now;
                    self.publish(&e.record);
                }
                state
            })
            .collect())
    }

    async fn complete(
        &self,
        completions: Vec<Completion>,
    ) -> Result<Vec<CompleteResult>, StoreError> {
        let now = self.now();
        let mut st = self.lock();
        let mut requeued = false;
        let results = completions
            .into_iter()
            .map(|c| {
                let id = c.lease.id;
                if st.lease_state(&c.lease) == LeaseState::Lost {
                    return CompleteResult::Stale;
                }
                st.drop_lease(id);
                let Some(e) = st.tasks.get_mut(&id) else {
                    return CompleteResult::Stale;
                };
                apply_report(&mut e.record, c.report);
                let cancel = e.record.cancel_requested;
                match c.outcome {
                    Outcome::Success(result) => {
                        e.record.result = Some(result);
                        e.record.error = None;
                        st.finish(id, TaskState::Success, now);
                    }
                    Outcome::Failed(error) => {
                        log_attempt(&mut e.record, AttemptEnding::Failed, Some(&error), now);
                        e.record.error = Some(error);
                        st.finish(id, TaskState::Failed, now);
                    }
                    Outcome::Cancelled => {
                        log_attempt(&mut e.record, AttemptEnding::Cancelled, None, now);
                        st.finish(id, TaskState::Cancelled, now)
                    }
                    Outcome::Retry { .. } | Outcome::Released if cancel => {
                        log_attempt(&mut e.record, AttemptEnding::Cancelled, None, now);
                        st.finish(id, TaskState::Cancelled, now)
                    }
                    Outcome::Retry { error, delay } => {
                        let next = after(now, delay);
                        log_attempt(&mut e.record, AttemptEnding::Retrying, Some(&error), now);
                        e.record.error = Some(error);
                        e.record.next_attempt_at = Some(next);
                        e.record.updated_at = now;
                        st.set_status(id, TaskState::Retrying);
                        st.make_ready(id, ms(next));
                        requeued = true;
                    }
                    Outcome::Released => {
                        e.record.attempt = e.record.attempt.saturating_sub(1);
                        e.record.started_at = None;
                        e.record.updated_at = now;
                        let due = ms(e.record.created_at);
                        st.set_status(id, TaskState::Pending);
                        st.make_ready(id, due);
                        requeued = true;
                    }
                }
                if let Some(e) = st.tasks.get(&id) {
                    self.publish(&e.record);
                }
                CompleteResult::Applied
            })
            .collect();
        drop(st);
        if requeued {
            self.shared.work.notify();
        }
        Ok(results)
    }

    async fn get(&self, id: TaskId) -> Result<Option<TaskRecord>, StoreError> {
        let now = self.now();
        let st = self.lock();
        Ok(st
            .tasks
            .get(&id)
            .filter(|e| e.record.expires_at.is_none_or(|x| x > now))
            .map(|e| TaskRecord {
                args: Some(e.args.clone()),
                ..e.record.clone()
            }))
    }

    async fn list(&self, query: &ListQuery) -> Result<Page, StoreError> {
        let now = self.now();
        let limit = query.capped_limit();
        let st = self.lock();
        let (lower, upper) = query.id_range();
        let range = (
            lower.map_or(Bound::Unbounded, Bound::Included),
            upper.map_or(Bound::Unbounded, Bound::Excluded),
        );
        // The walk is over one index (see `Index::walk`); the other filters check records.
        let walk = match query.empty_range() {
            true => None,
            false => st.index.walk(query),
        };
        let ids: Box<dyn Iterator<Item = &TaskId>> = match &walk {
            None => Box::new(std::iter::empty()),
            Some(Walk::All) => Box::new(st.tasks.range(range).rev().map(|(id, _)| id)),
            Some(Walk::Set(set)) => Box::new(set.range(range).rev()),
            Some(Walk::Owned(set)) => Box::new(set.range(range).rev()),
        };
        let items: Vec<TaskRecord> = ids
            .filter_map(|id| st.tasks.get(id))
            .map(|e| &e.record)
            .filter(|r| query.matches(r) && r.expires_at.is_none_or(|x| x > now))
            .take(limit + 1)
            .cloned()
            .collect();
        Ok(Page::of_fetched(items, limit))
    }

    async fn cancel(&self, id: TaskId, by: &Owner) -> Result<CancelOutcome, StoreError> {
        let now = self.now();
        let mut st = self.lock();
        let Some(e) = st.tasks.get_mut(&id) else {
            return Ok(CancelOutcome::NotFound);
        };
        let outcome = match e.record.status {
            s if s.is_waiting() => {
                let action = Action::new(ActionOutcome::Cancelled, by.clone(), now);
                push_action(&mut e.record.history, action);
                st.finish(id, TaskState::Cancelled, now);
                CancelOutcome::Cancelled(Box::new(st.tasks[&id].record.clone()))
            }
            TaskState::Running => {
                e.record.cancel_requested = true;
                e.record.updated_at = now;
                let action = Action::new(ActionOutcome::CancelRequested, by.clone(), now);
                push_action(&mut e.record.history, action);
                self.shared.cancels.send(id);
                CancelOutcome::Requested(Box::new(e.record.clone()))
            }
            s => return Ok(CancelOutcome::Conflict(s)),
        };
        if let Some(e) = st.tasks.get(&id) {
            self.publish(&e.record);
        }
        Ok(outcome)
    }

    async fn retry(&self, id: TaskId, by: &Owner) -> Result<RetryOutcome, StoreError> {
        let now = self.now();
        let mut st = self.lock();
        let Some(e) = st.tasks.get_mut(&id) else {
            return Ok(RetryOutcome::NotFound);
        };
        if e.record.expires_at.is_some_and(|x| x <= now) {
            return Ok(RetryOutcome::NotFound);
        }
        if !matches!(e.record.status, TaskState::Failed | TaskState::Cancelled) {
            return Ok(RetryOutcome::Conflict(e.record.status));
        }
        if let Some(x) = e.expiry_ms.take() {
            st.expiry.remove(&(x, id));
        }
        let e = st
            .tasks
            .get_mut(&id)
            .ok_or_else(|| StoreError::Backend("task vanished".into()))?;
        let r = &mut e.record;
        let from = r.status;
        r.status = TaskState::Pending;
        r.attempt = 0;
        r.cancel_requested = false;
        r.started_at = None;
        r.completed_at = None;
        r.expires_at = None;
        r.next_attempt_at = None;
        r.error = None;
        r.result = None;
        r.progress = None;
        r.steps.clear();
        r.updated_at = now;
        push_action(
            &mut r.history,
            Action::new(ActionOutcome::Requeued, by.clone(), now),
        );
        let record = r.clone();
        st.index.moved(&record, from);
        // The key becomes live again unless another live task took it meanwhile.
        if let Some(k) = record.key.as_deref().map(|k| scoped_key(&record.owner, k))
            && !st.keys.contains_key(&k)
        {
            st.keys.insert(k.clone(), id);
            if let Some(e) = st.tasks.get_mut(&id) {
                e.scoped_key = Some(k);
            }
        }
        st.make_ready(id, ms(now));
        drop(st);
        self.publish(&record);
        self.shared.work.notify();
        Ok(RetryOutcome::Requeued(Box::new(record)))
    }

    async fn watch(&self, id: TaskId) -> Result<EventStream, StoreError> {
        Ok(self.shared.watchers.subscribe(id))
    }

    async fn cancellations(&self) -> Result<BoxStream<'static, TaskId>, StoreError> {
        Ok(self.shared.cancels.subscribe())
    }

    async fn work_signal(&self, queues: &[String]) -> Result<Box<dyn WorkSignal>, StoreError> {
        let store = self.clone();
        let queues = queues.to_vec();
        Ok(self.shared.work.signal(move || {
            let now_ms = ms(store.now());
            store.lock().next_due(&queues, now_ms)
        }))
    }

    async fn reap(&self) -> Result<Reaped, StoreError> {
        let now = self.now();
        let now_ms = ms(now);
        let mut st = self.lock();
        let lapsed: Vec<TaskId> = st
            .leases
            .iter()
            .take_while(|(at, _)| *at <= now_ms)
            .map(|(_, id)| *id)
            .collect();
        let mut reaped = Reaped::default();
        for id in lapsed {
            st.drop_lease(id);
            let Some(e) = st.tasks.get_mut(&id) else {
                continue;
            };
            if e.record.cancel_requested {
                log_attempt(&mut e.record, AttemptEnding::Cancelled, None, now);
                st.finish(id, TaskState::Cancelled, now);
                reaped.cancelled += 1;
            } else if e.record.attempt >= e.record.max_attempts {
                let error = lease_expired_error(false);
                log_attempt(&mut e.record, AttemptEnding::LeaseLapsed, Some(&error), now);
                e.record.error = Some(error);
                st.finish(id, TaskState::Failed, now);
                reaped.failed += 1;
            } else {
                let error = lease_expired_error(true);
                log_attempt(&mut e.record, AttemptEnding::LeaseLapsed, Some(&error), now);
                e.record.error = Some(error);
                e.record.updated_at = now;
                let due = ms(e.record.created_at);
                st.set_status(id, TaskState::Pending);
                st.make_ready(id, due);
                reaped.requeued += 1;
            }
            if let Some(e) = st.tasks.get(&id) {
                self.publish(&e.record);
            }
        }
        drop(st);
        if reaped.requeued > 0 {
            self.shared.work.notify();
        }
        Ok(reaped)
    }

    async fn purge_expired(&self) -> Result<u64, StoreError> {
        let now_ms = ms(self.now());
        let mut st = self.lock();
        let expired: Vec<TaskId> = st
            .expiry
            .iter()
            .take_while(|(at, _)| *at <= now_ms)
            .map(|(_, id)| *id)
            .collect();
        for id in &expired {
            if let Some(e) = st.tasks.get(id)
                && let Some(x) = e.expiry_ms
            {
                st.expiry.remove(&(x, *id));
            }
            if let Some(e) = st.tasks.remove(id) {
                st.index.delete(&e.record);
            }
        }
        Ok(expired.len() as u64)
    }

    async fn depth(&self) -> Result<QueueDepth, StoreError> {
        let st = self.lock();
        Ok(QueueDepth {
            waiting: st.ready.values().map(|q| q.len() as u64).sum(),
            running: st.leases.len() as u64,
        })
    }

    async fn counts(&self, owner: &OwnerFilter) -> Result<StateCounts, StoreError> {
        Ok(self.lock().index.counts(owner))
    }

    async fn queues(&self) -> Result<Vec<QueueCounts>, StoreError> {
        Ok(self.lock().index.queues())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn healthy(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn warnings(&self) -> Result<Vec<String>, StoreError> {
        Ok(Vec::new())
    }

    async fn get_meta(&self, name: &str) -> Result<Option<String>, StoreError> {
        Ok(self.lock().meta.get(name).cloned())
    }

    async fn swap_meta(
        &self,
        name: &str,
        expected: Option<&str>,
        value: &str,
    ) -> Result<bool, StoreError> {
        let mut st = self.lock();
        if st.meta.get(name).map(String::as_str) != expected {
            return Ok(false);
        }
        st.meta.insert(name.to_string(), value.to_string());
        Ok(true)
    }
}
