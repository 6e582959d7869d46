//! The dedicated pub/sub connection and what it feeds: cancellations, work signals and task
//! events, delivered to every process that listens.
//!
//! One background task per store owns a pub/sub connection (never the shared command
//! connection). Callers ask it to subscribe through a channel of commands and get a
//! [`Subscription`] that unsubscribes when dropped. When the connection breaks, the task
//! reconnects with exponential backoff, subscribes again to everything still wanted, wakes
//! every work signal (a wake-up published during the outage was lost, so workers look again)
//! and sends each watched task's current record to its watchers.

use crate::config::RedisConfig;
use crate::keys::Keys;
use crate::pubsub::{self, Feed, Message, Sink};
use crate::record::record_of;
use crate::redis_conn::Redis;
use errand_core::{StoreError, TaskId, TaskRecord};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tracing::{debug, info, warn};

/// What a channel's messages mean.
#[derive(Debug, Clone)]
pub(crate) enum Route {
    /// A running task's cancellation was requested; the payload is its id.
    Cancel,
    /// Work may be claimable on this queue.
    Work(Arc<str>),
    /// A watched task changed; the payload is its record.
    Event(TaskId),
}

/// The in-process side of pub/sub: where messages go once received.
#[derive(Debug)]
pub(crate) struct Bus {
    cancels: broadcast::Sender<TaskId>,
    work: Mutex<HashMap<Arc<str>, watch::Sender<u64>>>,
    watched: Mutex<HashMap<TaskId, Watched>>,
}

/// A task watched in this process.
#[derive(Debug)]
struct Watched {
    queue: Arc<str>,
    tx: broadcast::Sender<TaskRecord>,
    streams: usize,
    _subscription: Subscription,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Default for Bus {
    fn default() -> Self {
        Self {
            cancels: broadcast::channel(1024).0,
            work: Mutex::new(HashMap::new()),
            watched: Mutex::new(HashMap::new()),
        }
    }
}

impl Bus {
    /// A receiver of cancellation announcements.
    pub(crate) fn cancels(&self) -> broadcast::Receiver<TaskId> {
        self.cancels.subscribe()
    }

    /// A receiver that changes whenever work may be claimable on `queue`.
    pub(crate) fn work(&self, queue: &str) -> watch::Receiver<u64> {
        let mut work = lock(&self.work);
        match work.get(queue) {
            Some(tx) => tx.subscribe(),
            None => {
                let (tx, rx) = watch::channel(0);
                work.insert(queue.into(), tx);
                rx
            }
        }
    }

    fn notify_work(&self, queue: &str) {
        if let Some(tx) = lock(&self.work).get(queue) {
            tx.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    fn notify_all_work(&self) {
        for tx in lock(&self.work).values() {
            tx.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// Joins the watchers of `id` if this process already watches it.
    pub(crate) fn join_watch(&self, id: TaskId) -> Option<broadcast::Receiver<TaskRecord>> {
        let mut watched = lock(&self.watched);
        let entry = watched.get_mut(&id)?;
        entry.streams += 1;
        Some(entry.tx.subscribe())
    }

    /// Starts watching `id` in this process (its event channel is subscribed already).
    pub(crate) fn start_watch(
        &self,
        id: TaskId,
        queue: Arc<str>,
        subscription: Subscription,
    ) -> broadcast::Receiver<TaskRecord> {
        let (tx, rx) = broadcast::channel(64);
        lock(&self.watched).insert(
            id,
            Watched {
                queue,
                tx,
                streams: 1,
                _subscription: subscription,
            },
        );
        rx
    }

    /// One stream of `id` ended. When it was the process's last, the entry and its
    /// subscription are gone and the task's queue is returned.
    pub(crate) fn leave_watch(&self, id: TaskId) -> Option<Arc<str>> {
        let mut watched = lock(&self.watched);
        let entry = watched.get_mut(&id)?;
        entry.streams = entry.streams.saturating_sub(1);
        if entry.streams > 0 {
            return None;
        }
        watched.remove(&id).map(|w| w.queue)
    }

    /// Hands a stored record to the process's watchers of `id`, decoding it only if there are
    /// some.
    fn deliver(&self, id: TaskId, stored: &[u8]) {
        let (tx, queue) = {
            let watched = lock(&self.watched);
            match watched.get(&id) {
                Some(w) if w.tx.receiver_count() > 0 => (w.tx.clone(), w.queue.clone()),
                _ => return,
            }
        };
        match record_of(stored, id, &queue) {
            Ok(record) => {
                let _ = tx.send(record);
            }
            Err(e) => warn!(task_id = %id, error = %e, "dropped an unreadable task event"),
        }
    }

    fn watched(&self) -> Vec<(TaskId, Arc<str>)> {
        lock(&self.watched)
            .iter()
            .map(|(id, w)| (*id, w.queue.clone()))
            .collect()
    }
}

enum Command {
    Subscribe {
        channels: Vec<(String, Route)>,
        ack: oneshot::Sender<Result<(), StoreError>>,
    },
    Unsubscribe {
        channels: Vec<String>,
    },
}

/// Channels this process listens to; dropping it unsubscribes them (unless another
/// subscription still wants them).
#[derive(Debug)]
pub(crate) struct Subscription {
    channels: Vec<String>,
    tx: mpsc::UnboundedSender<Command>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let channels = std::mem::take(&mut self.channels);
        // The listener is gone only when the store is; nothing is left to unsubscribe then.
        let _ = self.tx.send(Command::Unsubscribe { channels });
    }
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Subscribe { channels, .. } => f
                .debug_struct("Subscribe")
                .field("channels", &channels.len())
                .finish(),
            Command::Unsubscribe { channels } => f
                .debug_struct("Unsubscribe")
                .field("channels", &channels.len())
                .finish(),
        }
    }
}

/// The handle to the pub/sub task.
#[derive(Debug, Clone)]
pub(crate) struct Listener {
    tx: mpsc::UnboundedSender<Command>,
    server: Arc<str>,
    wait: Duration,
}

impl Listener {
    /// Starts the pub/sub task on the current runtime. It stops once the store and every
    /// subscription are dropped.
    pub(crate) fn start(redis: Redis, keys: Keys, bus: Arc<Bus>, config: &RedisConfig) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let server: Arc<str> = redis.server().into();
        let task = Task {
            redis,
            keys,
            bus,
            rx,
            desired: HashMap::new(),
            config: config.clone(),
        };
        tokio::spawn(task.run());
        Self {
            tx,
            server,
            wait: config.call_timeout(),
        }
    }

    fn unavailable(&self, why: &str) -> StoreError {
        StoreError::Unavailable(format!(
            "Redis at {} cannot be reached for notifications: {why}",
            self.server
        ))
    }

    /// Subscribes to `channels`; returns once Redis confirmed, so no message published after
    /// this returns is missed.
    pub(crate) async fn subscribe(
        &self,
        channels: Vec<(String, Route)>,
    ) -> Result<Subscription, StoreError> {
        let names = channels.iter().map(|(c, _)| c.clone()).collect();
        let (ack, answer) = oneshot::channel();
        self.tx
            .send(Command::Subscribe { channels, ack })
            .map_err(|_| self.unavailable("the listener stopped"))?;
        // From here on the listener counts these channels; the subscription gives them back.
        let subscription = Subscription {
            channels: names,
            tx: self.tx.clone(),
        };
        match tokio::time::timeout(self.wait, answer).await {
            Ok(Ok(Ok(()))) => Ok(subscription),
            Ok(Ok(Err(e))) => Err(e),
            Ok(Err(_)) => Err(self.unavailable("the listener stopped")),
            Err(_) => Err(self.unavailable("no answer in time")),
        }
    }
}

#[derive(PartialEq)]
enum Exit {
    /// The connection broke: reconnect.
    Lost,
    /// The store and every subscription are gone: stop.
    Closed,
}

struct Task {
    redis: Redis,
    keys: Keys,
    bus: Arc<Bus>,
    rx: mpsc::UnboundedReceiver<Command>,
    /// Wanted channels: how many subscriptions want each, and what its messages mean.
    desired: HashMap<String, (usize, Route)>,
    config: RedisConfig,
}

impl Task {
    async fn run(mut self) {
        let mut delay = self.config.reconnect_min_delay;
        let mut down_since: Option<Instant> = None;
        loop {
            match self.connect().await {
                Ok((sink, feed)) => {
                    if let Some(since) = down_since.take() {
                        info!(
                            server = %self.redis.server(),
                            down_ms = since.elapsed().as_millis() as u64,
                            "pub/sub connection to Redis restored"
                        );
                    }
                    delay = self.config.reconnect_min_delay;
                    self.resync();
                    if self.serve(sink, feed).await == Exit::Closed {
                        return;
                    }
                    warn!(server = %self.redis.server(), "pub/sub connection to Redis lost; reconnecting");
                    down_since = Some(Instant::now());
                }
                Err(e) => {
                    if down_since.is_none() {
                        warn!(error = %e, "pub/sub connection to Redis failed; retrying with backoff");
                        down_since = Some(Instant::now());
                    } else {
                        debug!(error = %e, "pub/sub connection to Redis still failing");
                    }
                }
            }
            if self.pause(delay).await == Exit::Closed {
                return;
            }
            delay = (delay * 2).min(self.config.reconnect_max_delay);
        }
    }

    fn unavailable(&self, why: impl std::fmt::Display) -> StoreError {
        StoreError::Unavailable(format!(
            "Redis at {} cannot be reached for notifications: {why}",
            self.redis.server()
        ))
    }

    async fn connect(&mut self) -> Result<(Sink, Feed), StoreError> {
        let (mut sink, feed) = match tokio::time::timeout(
            self.config.connect_timeout,
            pubsub::connect(self.redis.target(), &self.config),
        )
        .await
        {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => return Err(self.unavailable(e)),
            Err(_) => return Err(self.unavailable("connection timed out")),
        };
        let channels: Vec<String> = self.desired.keys().cloned().collect();
        if !channels.is_empty() {
            match tokio::time::timeout(self.config.response_timeout, sink.subscribe(&channels))
                .await
            {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(self.unavailable(e)),
                Err(_) => return Err(self.unavailable("subscribing timed out")),
            }
        }
        Ok((sink, feed))
    }

    /// After (re)connecting: wake every work signal, and bring watchers up to date.
    fn resync(&self) {
        self.bus.notify_all_work();
        let watched = self.bus.watched();
        if watched.is_empty() {
            return;
        }
        let (redis, keys, bus) = (self.redis.clone(), self.keys.clone(), self.bus.clone());
        tokio::spawn(async move {
            let mut pipe = redis::pipe();
            for (id, queue) in &watched {
                pipe.cmd("GET").arg(keys.task(queue, *id));
            }
            let Ok(values) = redis.pipeline(&pipe).await else {
                return;
            };
            for ((id, _), value) in watched.into_iter().zip(values) {
                if let redis::Value::BulkString(stored) = value {
                    bus.deliver(id, &stored);
                }
            }
        });
    }

    /// Waits `delay` before the next connection attempt, answering commands meanwhile.
    async fn pause(&mut self, delay: Duration) -> Exit {
        let sleep = tokio::time::sleep(delay);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = &mut sleep => return Exit::Lost,
                cmd = self.rx.recv() => match cmd {
                    None => return Exit::Closed,
                    Some(Command::Subscribe { channels, ack }) => {
                        // Counted all the same: the subscription's drop gives them back, and
                        // if it is kept they are subscribed on reconnection.
                        self.want(channels);
                        let _ = ack.send(Err(self.unavailable("reconnecting")));
                    }
                    Some(Command::Unsubscribe { channels }) => {
                        self.release(channels);
                    }
                },
            }
        }
    }

    async fn serve(&mut self, mut sink: Sink, mut feed: Feed) -> Exit {
        let response_timeout = self.config.response_timeout;
        let mut keepalive = tokio::time::interval(self.config.keepalive_interval);
        keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        keepalive.reset();
        loop {
            tokio::select! {
                msg = feed.next() => match msg {
                    Some(msg) => self.dispatch(&msg),
                    None => return Exit::Lost,
                },
                cmd = self.rx.recv() => match cmd {
                    None => return Exit::Closed,
                    Some(Command::Subscribe { channels, ack }) => {
                        let fresh = self.want(channels);
                        if fresh.is_empty() {
                            let _ = ack.send(Ok(()));
                            continue;
                        }
                        match tokio::time::timeout(response_timeout, sink.subscribe(&fresh)).await {
                            Ok(Ok(())) => {
                                let _ = ack.send(Ok(()));
                            }
                            failed => {
                                let why = match failed {
                                    Ok(Err(e)) => e.to_string(),
                                    _ => "subscribing timed out".to_string(),
                                };
                                // The caller drops its subscription, which gives these back.
                                let _ = ack.send(Err(self.unavailable(why)));
                                return Exit::Lost;
                            }
                        }
                    }
                    Some(Command::Unsubscribe { channels }) => {
                        let gone = self.release(channels);
                        if !gone.is_empty()
                            && !matches!(
                                tokio::time::timeout(response_timeout, sink.unsubscribe(&gone)).await,
                                Ok(Ok(()))
                            )
                        {
                            return Exit::Lost;
                        }
                    }
                },
                _ = keepalive.tick() => {
                    if !matches!(tokio::time::timeout(response_timeout, sink.ping()).await, Ok(Ok(()))) {
                        return Exit::Lost;
                    }
                }
            }
        }
    }

    /// Counts `channels` as wanted once more; returns those wanted for the first time.
    fn want(&mut self, channels: Vec<(String, Route)>) -> Vec<String> {
        let mut fresh = Vec::new();
        for (name, route) in channels {
            let entry = self.desired.entry(name.clone()).or_insert((0, route));
            entry.0 += 1;
            if entry.0 == 1 {
                fresh.push(name);
            }
        }
        fresh
    }

    /// Counts `channels` as wanted once less; returns those nobody wants any more.
    fn release(&mut self, channels: Vec<String>) -> Vec<String> {
        let mut gone = Vec::new();
        for name in channels {
            if let Some(entry) = self.desired.get_mut(&name) {
                entry.0 = entry.0.saturating_sub(1);
                if entry.0 == 0 {
                    self.desired.remove(&name);
                    gone.push(name);
                }
            }
        }
        gone
    }

    fn dispatch(&self, msg: &Message) {
        let Some((_, route)) = self.desired.get(msg.channel()) else {
            return;
        };
        let payload = msg.payload();
        match route {
            Route::Cancel => match std::str::from_utf8(payload).map(str::parse::<TaskId>) {
                Ok(Ok(id)) => {
                    let _ = self.bus.cancels.send(id);
                }
                _ => warn!("ignored a malformed cancellation message"),
            },
            Route::Work(queue) => self.bus.notify_work(queue),
            Route::Event(id) => self.bus.deliver(*id, payload),
        }
    }
}
