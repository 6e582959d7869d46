//! [`Redis`]: the shared, multiplexed command connection, with every call bounded in time and
//! every failure turned into a [`StoreError`].
//!
//! On one Redis the connection is a redis-rs `ConnectionManager`: one TCP connection that
//! pipelines the commands of all callers and reconnects (with exponential backoff) when it
//! breaks. On a Redis Cluster it is redis-rs's cluster connection (one multiplexed
//! connection per node, following the slot map through failovers); a pipeline is then split
//! per slot (see `cluster`) and its parts sent concurrently. Blocking reads and pub/sub never
//! use it; they have their own connection (see `listener`).

use crate::cluster::{self, Node};
use crate::config::RedisConfig;
use crate::error::{RedisStoreError, corrupt, not_confirmed, store_error, timed_out};
use crate::scripts::{Call, Lua, Scripts};
use errand_core::StoreError;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClientBuilder, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::RoutingInfo;
use redis::{
    Cmd, ConnectionInfo, FromRedisValue, IntoConnectionInfo, Pipeline, RedisError, RedisFuture,
    ServerErrorKind, Value,
};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// The command connection to one Redis or to a cluster; both are redis-rs connections.
#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipe: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipe, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipe, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// Where the store's dedicated connections (pub/sub) connect.
#[derive(Clone, Debug)]
pub(crate) enum Target {
    /// One Redis.
    Single(redis::Client),
    /// A cluster, by its seed nodes.
    Cluster(Vec<ConnectionInfo>),
}

/// The command connection.
#[derive(Clone)]
pub(crate) struct Redis {
    conn: Conn,
    target: Target,
    server: Arc<str>,
    call_timeout: Duration,
    write_timeout: Duration,
    /// `WAIT` after each batch of script calls: replicas and timeout in ms.
    confirm: Option<(usize, u64)>,
    scripts: Arc<Scripts>,
}

impl Redis {
    /// Sets up the connection without waiting for Redis: it connects on first use, so a store
    /// can start while Redis is down. With [`RedisConfig::cluster`], `url` holds the seed
    /// nodes separated by commas.
    pub(crate) fn new(url: &str, config: &RedisConfig) -> Result<Self, RedisStoreError> {
        let confirm = (config.wait_replicas > 0).then(|| {
            let ms = u64::try_from(config.wait_timeout.as_millis()).unwrap_or(u64::MAX);
            (config.wait_replicas, ms.max(1))
        });
        let (conn, target, server) = if config.cluster {
            Self::cluster(url, config)?
        } else {
            Self::single(url, config)?
        };
        Ok(Self {
            conn,
            target,
            server,
            call_timeout: config.call_timeout(),
            write_timeout: config.write_timeout(),
            confirm,
            scripts: Arc::new(Scripts::new(config.cluster)),
        })
    }

    fn single(
        url: &str,
        config: &RedisConfig,
    ) -> Result<(Conn, Target, Arc<str>), RedisStoreError> {
        let client =
            redis::Client::open(url).map_err(|e| RedisStoreError::InvalidUrl(e.to_string()))?;
        let server: Arc<str> = client.get_connection_info().addr().to_string().into();
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.connect_timeout))
            .set_response_timeout(Some(config.answer_timeout()))
            .set_min_delay(config.reconnect_min_delay)
            .set_max_delay(config.reconnect_max_delay)
            // A call waits for at most two connection attempts; the next call starts over, so
            // an outage is answered quickly and the store recovers on its own.
            .set_number_of_retries(1);
        let manager = ConnectionManager::new_lazy_with_config(client.clone(), manager_config)
            .map_err(|e| RedisStoreError::Setup(e.to_string()))?;
        Ok((Conn::Single(manager), Target::Single(client), server))
    }

    fn cluster(
        url: &str,
        config: &RedisConfig,
    ) -> Result<(Conn, Target, Arc<str>), RedisStoreError> {
        let seeds = seed_nodes(url)?;
        let server: Arc<str> = format!(
            "the cluster of {}",
            seeds
                .iter()
                .map(|s| s.addr().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )
        .into();
        let client = cluster_builder(&seeds, config)
            .build()
            .map_err(|e| RedisStoreError::Setup(e.to_string()))?;
        let conn = client.get_pending_async_connection_with_config(cluster_config(config));
        Ok((Conn::Cluster(conn), Target::Cluster(seeds), server))
    }

    /// `host:port` of the server (or the cluster's seeds), for messages.
    pub(crate) fn server(&self) -> &str {
        &self.server
    }

    /// Where dedicated connections connect.
    pub(crate) fn target(&self) -> &Target {
        &self.target
    }

    /// Whether this is a cluster.
    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self.conn, Conn::Cluster(_))
    }

    /// The scripts.
    pub(crate) fn scripts(&self) -> &Scripts {
        &self.scripts
    }

    fn error(&self, err: RedisError) -> StoreError {
        store_error(&self.server, err)
    }

    /// Runs `fut`, giving up at `deadline` (`waited` is how long that is, for the message).
    async fn bounded_until<T>(
        &self,
        deadline: Instant,
        waited: Duration,
        fut: impl Future<Output = Result<T, RedisError>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout_at(deadline, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(self.error(e)),
            Err(_) => Err(timed_out(&self.server, waited)),
        }
    }

    /// Runs one command (on a cluster: on the node of its key, or as redis-rs routes a
    /// command without one).
    pub(crate) async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T, StoreError> {
        let mut conn = self.conn.clone();
        let deadline = Instant::now() + self.call_timeout;
        self.bounded_until(deadline, self.call_timeout, cmd.query_async(&mut conn))
            .await
    }

    /// The nodes that together hold every key: on one Redis `[None]` (the one), on a
    /// cluster each primary (from `CLUSTER SLOTS`).
    pub(crate) async fn nodes(&self) -> Result<Vec<Option<Node>>, StoreError> {
        if !self.is_cluster() {
            return Ok(vec![None]);
        }
        let mut slots = redis::cmd("CLUSTER");
        slots.arg("SLOTS");
        let answer: Value = self.query(&slots).await?;
        let primaries = cluster::primaries(&answer)
            .ok_or_else(|| corrupt("unexpected answer to CLUSTER SLOTS"))?;
        Ok(primaries.into_iter().map(Some).collect())
    }

    /// Runs one command on `node` (one of [`Redis::nodes`]); `None` runs it as
    /// [`Redis::query`] does.
    pub(crate) async fn query_on<T: FromRedisValue>(
        &self,
        node: Option<&Node>,
        cmd: &Cmd,
    ) -> Result<T, StoreError> {
        let (Conn::Cluster(conn), Some(node)) = (&self.conn, node) else {
            return self.query(cmd).await;
        };
        let mut conn = conn.clone();
        let deadline = Instant::now() + self.call_timeout;
        let routing = RoutingInfo::SingleNode(node.route());
        let value = self
            .bounded_until(
                deadline,
                self.call_timeout,
                conn.route_command(cmd.clone(), routing),
            )
            .await?;
        T::from_redis_value(value).map_err(corrupt)
    }

    /// Runs a pipeline in one round trip (on a cluster: one per slot, concurrently); one value
    /// per command not ignored. A command Redis refused fails the call.
    pub(crate) async fn pipeline(&self, pipe: &Pipeline) -> Result<Vec<Value>, StoreError> {
        let deadline = Instant::now() + self.call_timeout;
        let mut conn = match &self.conn {
            Conn::Single(_) => self.conn.clone(),
            Conn::Cluster(conn) => {
                let cmds: Vec<&Cmd> = pipe.cmd_iter().collect();
                let values = self.send_split(conn, &cmds, false, deadline).await?;
                return values
                    .into_iter()
                    .map(|v| match v {
                        Value::ServerError(e) => Err(self.error(e.into())),
                        v => Ok(v),
                    })
                    .collect();
            }
        };
        self.bounded_until(deadline, self.call_timeout, pipe.query_async(&mut conn))
            .await
    }

    /// Sends the commands of `pipe` (built with `ignore_errors`) and returns every answer, in
    /// order, refusals as values. With `confirm`, each round trip ends with `WAIT` (see
    /// [`RedisConfig::wait_replicas`]; on one Redis it is appended to `pipe`, after the
    /// commands), and a round trip whose writes fewer replicas confirmed fails the call.
    async fn send(
        &self,
        pipe: &mut Pipeline,
        confirm: bool,
        deadline: Instant,
    ) -> Result<Vec<Value>, StoreError> {
        match &self.conn {
            Conn::Cluster(conn) => {
                let cmds: Vec<&Cmd> = pipe.cmd_iter().collect();
                self.send_split(conn, &cmds, confirm, deadline).await
            }
            Conn::Single(_) => {
                let mut conn = self.conn.clone();
                let wait = self.add_wait(pipe, confirm);
                let mut values: Vec<Value> = self
                    .bounded_until(deadline, self.write_timeout, pipe.query_async(&mut conn))
                    .await?;
                if wait {
                    self.check_wait(values.pop())?;
                }
                Ok(values)
            }
        }
    }

    /// [`Redis::send`] on a cluster: one pipeline per slot, sent concurrently to the slot's
    /// primary (redis-rs follows MOVED and ASK answers and refreshes its slot map).
    async fn send_split(
        &self,
        conn: &ClusterConnection,
        cmds: &[&Cmd],
        confirm: bool,
        deadline: Instant,
    ) -> Result<Vec<Value>, StoreError> {
        let groups = cluster::split(cmds);
        let sends = groups.iter().map(|group| {
            let mut pipe = redis::pipe();
            pipe.ignore_errors();
            for &i in &group.positions {
                pipe.add_command(cmds[i].clone());
            }
            let wait = self.add_wait(&mut pipe, confirm);
            let mut conn = conn.clone();
            let count = pipe.len();
            async move {
                let mut values = self
                    .bounded_until(
                        deadline,
                        self.write_timeout,
                        conn.route_pipeline(pipe, 0, count, group.route()),
                    )
                    .await?;
                if wait {
                    self.check_wait(values.pop())?;
                }
                Ok::<_, StoreError>(values)
            }
        });
        let answers = futures::future::join_all(sends).await;
        let mut out = vec![Value::Nil; cmds.len()];
        for (group, answer) in groups.iter().zip(answers) {
            let values = answer?;
            if values.len() != group.positions.len() {
                return Err(corrupt(
                    "a node answered a pipeline with the wrong number of values",
                ));
            }
            for (&i, v) in group.positions.iter().zip(values) {
                out[i] = v;
            }
        }
        Ok(out)
    }

    /// Appends `WAIT` to `pipe` when asked to and configured to; true if it did.
    fn add_wait(&self, pipe: &mut Pipeline, confirm: bool) -> bool {
        match self.confirm {
            Some((replicas, ms)) if confirm => {
                pipe.cmd("WAIT").arg(replicas).arg(ms);
                true
            }
            _ => false,
        }
    }

    /// Checks the answer to a `WAIT` added by [`Redis::add_wait`].
    fn check_wait(&self, answer: Option<Value>) -> Result<(), StoreError> {
        let Some((replicas, ms)) = self.confirm else {
            return Ok(());
        };
        match answer {
            Some(Value::Int(n)) if usize::try_from(n).is_ok_and(|n| n >= replicas) => Ok(()),
            Some(Value::Int(n)) => Err(not_confirmed(&self.server, n, replicas, ms)),
            Some(Value::ServerError(e)) => Err(self.error(e.into())),
            other => Err(corrupt(format!("unexpected answer to WAIT: {other:?}"))),
        }
    }

    /// Runs script calls in one round trip (a pipeline of the `first` commands, whose answers
    /// are not kept, then the EVALSHA calls); one value per call, in order. A call answered
    /// NOSCRIPT did not run: its script is loaded (on the node that answered) and the call
    /// sent again, within the same deadline as the first round trip. With
    /// [`RedisConfig::wait_replicas`], each round trip ends with `WAIT`. On a cluster, the
    /// `first` commands take a round trip of their own, so they are applied before the calls
    /// whatever their slots.
    pub(crate) async fn run(
        &self,
        first: &[Cmd],
        calls: Vec<Call<'_>>,
    ) -> Result<Vec<Value>, StoreError> {
        let deadline = Instant::now() + self.write_timeout;
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        let mut skip = first.len();
        if self.is_cluster() && !first.is_empty() {
            let mut registering = redis::pipe();
            registering.ignore_errors();
            for cmd in first {
                registering.add_command(cmd.clone());
            }
            for v in self.send(&mut registering, true, deadline).await? {
                if let Value::ServerError(e) = v {
                    return Err(self.error(e.into()));
                }
            }
            skip = 0;
        } else {
            for cmd in first {
                pipe.add_command(cmd.clone());
            }
        }
        let mut scripts: Vec<&Lua> = Vec::with_capacity(calls.len());
        for call in calls {
            scripts.push(call.lua);
            pipe.add_command(call.cmd);
        }
        let mut values = self.send(&mut pipe, true, deadline).await?.split_off(skip);
        let calls: Vec<&Cmd> = pipe.cmd_iter().skip(skip).take(values.len()).collect();
        let missing: Vec<usize> = values
            .iter()
            .enumerate()
            .filter(|(_, v)| is_noscript(v))
            .map(|(i, _)| i)
            .collect();
        if !missing.is_empty() {
            // Each script is loaded once per slot that answered NOSCRIPT, just before its
            // first call there (on one Redis: once).
            let mut again = redis::pipe();
            again.ignore_errors();
            let mut loaded: Vec<(&str, Option<redis::cluster_routing::Slot>)> = Vec::new();
            for &i in &missing {
                let slot = if self.is_cluster() {
                    cluster::slot_of(calls[i])
                } else {
                    None
                };
                if !loaded.contains(&(scripts[i].name(), slot)) {
                    loaded.push((scripts[i].name(), slot));
                    // A command without a key runs on the node of the next one: the call's.
                    again.add_command(scripts[i].load_cmd());
                }
                again.add_command(calls[i].clone());
            }
            let retried = self.send(&mut again, true, deadline).await?;
            let answers = again
                .cmd_iter()
                .zip(retried)
                .filter(|(cmd, _)| !is_load(cmd))
                .map(|(_, v)| v);
            for (i, v) in missing.into_iter().zip(answers) {
                values[i] = v;
            }
        }
        let names = scripts.iter().map(|s| s.name());
        values
            .into_iter()
            .zip(names)
            .map(|(v, name)| match v {
                Value::ServerError(e) => {
                    let err: RedisError = e.into();
                    Err(match self.error(err) {
                        StoreError::Backend(m) => StoreError::Backend(format!("{name}: {m}")),
                        other => other,
                    })
                }
                v => Ok(v),
            })
            .collect()
    }

    /// Loads every script (done once at start, on every primary of a cluster; NOSCRIPT
    /// answers load them again later, on the node that answered).
    pub(crate) async fn load_scripts(&self) -> Result<(), StoreError> {
        let mut pipe = redis::pipe();
        for lua in self.scripts.all() {
            pipe.add_command(lua.load_cmd()).ignore();
        }
        match &self.conn {
            Conn::Single(_) => self.pipeline(&pipe).await.map(drop),
            // SCRIPT LOAD goes to every node on its own.
            Conn::Cluster(_) => {
                for lua in self.scripts.all() {
                    self.query::<Value>(&lua.load_cmd()).await?;
                }
                Ok(())
            }
        }
    }
}

fn is_noscript(value: &Value) -> bool {
    matches!(value, Value::ServerError(e) if e.kind() == Some(ServerErrorKind::NoScript))
}

fn is_load(cmd: &Cmd) -> bool {
    cmd.args_iter()
        .next()
        .is_some_and(|a| matches!(a, redis::Arg::Simple(b) if b.eq_ignore_ascii_case(b"SCRIPT")))
}

/// The seed nodes of a cluster URL: one or more Redis URLs separated by commas.
fn seed_nodes(url: &str) -> Result<Vec<ConnectionInfo>, RedisStoreError> {
    let seeds = url
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.into_connection_info()
                .map_err(|e| RedisStoreError::InvalidUrl(e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if seeds.is_empty() {
        return Err(RedisStoreError::InvalidUrl(
            "a cluster needs at least one seed node".into(),
        ));
    }
    Ok(seeds)
}

/// A cluster client on `seeds` with the store's timeouts. Its own retries (after MOVED, a
/// failover, a lost node) pause 100 ms to 1 s; the store's deadline bounds them all.
pub(crate) fn cluster_builder(
    seeds: &[ConnectionInfo],
    config: &RedisConfig,
) -> ClusterClientBuilder {
    ClusterClientBuilder::new(seeds.to_vec())
        .connection_timeout(config.connect_timeout)
        .response_timeout(config.answer_timeout())
        .overall_response_timeout(None)
        .retries(16)
        .min_retry_wait(100)
        .max_retry_wait(1000)
}

/// The per-connection settings of a cluster connection with the store's timeouts.
pub(crate) fn cluster_config(config: &RedisConfig) -> ClusterConfig {
    ClusterConfig::new()
        .set_connection_timeout(config.connect_timeout)
        .set_response_timeout(config.answer_timeout())
}
