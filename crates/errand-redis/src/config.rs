//! [`RedisConfig`]: how a [`RedisStore`](crate::RedisStore) names its keys, reads the time and
//! bounds its waits on Redis.

use errand_core::Clock;
use std::sync::Arc;
use std::time::Duration;

/// Settings of a [`RedisStore`](crate::RedisStore). Every field has a default that suits one
/// Redis on the local network; build with `RedisConfig::default()` and the setters.
///
/// ```
/// use errand_redis::RedisConfig;
/// use std::time::Duration;
/// let config = RedisConfig::default()
///     .prefix("billing")
///     .response_timeout(Duration::from_secs(2));
/// assert_eq!(config.prefix, "billing");
/// ```
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// Start of every key and channel name, so several errand deployments (or tests) share
    /// one Redis without meeting. Must be non-empty and must not contain `:`, `{` or `}`:
    /// keys are `{prefix:queue}:…`, so a prefix holding `:` could share keys with another
    /// (prefix `a` with queue `b:c`, prefix `a:b` with queue `c`). Default `"errand"`.
    pub prefix: String,
    /// Where leases, delays, backoff, expiry and the times shown in records read "now".
    /// `None` (the default) reads Redis's own clock (`TIME`, inside each script), so every
    /// process agrees on lease ends however far the hosts' clocks drift. Tests pass a
    /// [`ManualClock`](errand_core::ManualClock) to drive time; every process sharing the
    /// keys must then use the same clock.
    pub clock: Option<Arc<dyn Clock>>,
    /// Longest wait for a TCP connection to Redis. Default 2 s.
    pub connect_timeout: Duration,
    /// Longest wait for Redis to answer one command or pipeline. Default 5 s.
    pub response_timeout: Duration,
    /// First pause before reconnecting after the connection was lost; it doubles on each
    /// failed attempt. Default 100 ms.
    pub reconnect_min_delay: Duration,
    /// Longest pause between reconnection attempts. Default 5 s.
    pub reconnect_max_delay: Duration,
    /// How often the dedicated pub/sub connection checks that Redis still answers, so a
    /// silently dropped connection is noticed and replaced. Default 5 s.
    pub keepalive_interval: Duration,
    /// Whether the URL names the seed nodes of a Redis Cluster (one or more URLs separated by
    /// commas) rather than one Redis. Every command then goes through redis-rs's cluster
    /// client, pipelines are split per slot, and notifications use sharded pub/sub. Default
    /// `false`.
    pub cluster: bool,
    /// After each batch of writes (every script call round trip), how many replicas of the
    /// node that took it must confirm it (`WAIT`) before the call succeeds. A call they do not
    /// confirm within [`RedisConfig::wait_timeout`] fails with
    /// [`StoreError::Unavailable`](errand_core::StoreError): its writes were applied on the
    /// primary but may be lost if it fails over now. `0` (the default) waits for none.
    pub wait_replicas: usize,
    /// The longest `WAIT` for [`RedisConfig::wait_replicas`] replicas. Default 1 s.
    pub wait_timeout: Duration,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            prefix: "errand".into(),
            clock: None,
            connect_timeout: Duration::from_secs(2),
            response_timeout: Duration::from_secs(5),
            reconnect_min_delay: Duration::from_millis(100),
            reconnect_max_delay: Duration::from_secs(5),
            keepalive_interval: Duration::from_secs(5),
            cluster: false,
            wait_replicas: 0,
            wait_timeout: Duration::from_secs(1),
        }
    }
}

impl RedisConfig {
    /// Sets the key prefix.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Reads "now" from `clock` instead of Redis (see [`RedisConfig::clock`]).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Sets the connection timeout.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets the response timeout.
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// Sets the bounds of the reconnection backoff.
    pub fn reconnect_delay(mut self, min: Duration, max: Duration) -> Self {
        self.reconnect_min_delay = min;
        self.reconnect_max_delay = max.max(min);
        self
    }

    /// Sets the pub/sub keep-alive interval.
    pub fn keepalive_interval(mut self, every: Duration) -> Self {
        self.keepalive_interval = every;
        self
    }

    /// Treats the URL as the seed nodes of a Redis Cluster (see [`RedisConfig::cluster`]).
    pub fn cluster(mut self, cluster: bool) -> Self {
        self.cluster = cluster;
        self
    }

    /// Waits for `replicas` replicas to confirm each batch of writes, for at most `timeout`
    /// (see [`RedisConfig::wait_replicas`]).
    pub fn wait_replicas(mut self, replicas: usize, timeout: Duration) -> Self {
        self.wait_replicas = replicas;
        self.wait_timeout = timeout;
        self
    }

    /// The longest one round trip waits on Redis: a connection attempt, then the answer.
    pub(crate) fn call_timeout(&self) -> Duration {
        self.connect_timeout + self.response_timeout
    }

    /// The longest one answer may take: with [`RedisConfig::wait_replicas`], the replicas'
    /// confirmation adds to it.
    pub(crate) fn answer_timeout(&self) -> Duration {
        if self.wait_replicas > 0 {
            self.response_timeout + self.wait_timeout
        } else {
            self.response_timeout
        }
    }

    /// The longest a call of writes waits: a round trip, then the replicas' confirmation.
    pub(crate) fn write_timeout(&self) -> Duration {
        self.connect_timeout + self.answer_timeout()
    }
}
