//! [`Redis`]: the shared, multiplexed command connection, with every call bounded in time and
//! every failure turned into a [`StoreError`].
//!
//! The connection is a redis-rs `ConnectionManager`: one TCP connection that pipelines the
//! commands of all callers and reconnects (with exponential backoff) when it breaks. Blocking
//! reads and pub/sub never use it; they have their own connection (see `listener`).

use crate::config::RedisConfig;
use crate::error::{RedisStoreError, store_error, timed_out};
use crate::scripts::{Call, Lua, Scripts};
use errand_core::StoreError;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, FromRedisValue, Pipeline, RedisError, ServerErrorKind, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// The command connection.
#[derive(Clone)]
pub(crate) struct Redis {
    manager: ConnectionManager,
    client: redis::Client,
    server: Arc<str>,
    call_timeout: Duration,
    scripts: Arc<Scripts>,
}

impl Redis {
    /// Sets up the connection without waiting for Redis: it connects on first use, so a store
    /// can start while Redis is down.
    pub(crate) fn new(url: &str, config: &RedisConfig) -> Result<Self, RedisStoreError> {
        let client =
            redis::Client::open(url).map_err(|e| RedisStoreError::InvalidUrl(e.to_string()))?;
        let server: Arc<str> = client.get_connection_info().addr().to_string().into();
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.connect_timeout))
            .set_response_timeout(Some(config.response_timeout))
            .set_min_delay(config.reconnect_min_delay)
            .set_max_delay(config.reconnect_max_delay)
            // A call waits for at most two connection attempts; the next call starts over, so
            // an outage is answered quickly and the store recovers on its own.
            .set_number_of_retries(1);
        let manager = ConnectionManager::new_lazy_with_config(client.clone(), manager_config)
            .map_err(|e| RedisStoreError::Setup(e.to_string()))?;
        Ok(Self {
            manager,
            client,
            server,
            call_timeout: config.call_timeout(),
            scripts: Arc::new(Scripts::new()),
        })
    }

    /// `host:port` of the server, for messages.
    pub(crate) fn server(&self) -> &str {
        &self.server
    }

    /// The client, for dedicated connections.
    pub(crate) fn client(&self) -> &redis::Client {
        &self.client
    }

    /// The scripts.
    pub(crate) fn scripts(&self) -> &Scripts {
        &self.scripts
    }

    fn error(&self, err: RedisError) -> StoreError {
        store_error(&self.server, err)
    }

    /// Runs `fut` under the call timeout.
    async fn bounded<T>(
        &self,
        fut: impl Future<Output = Result<T, RedisError>>,
    ) -> Result<T, StoreError> {
        self.bounded_until(Instant::now() + self.call_timeout, fut)
            .await
    }

    /// Runs `fut`, giving up at `deadline`.
    async fn bounded_until<T>(
        &self,
        deadline: Instant,
        fut: impl Future<Output = Result<T, RedisError>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout_at(deadline, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(self.error(e)),
            Err(_) => Err(timed_out(&self.server, self.call_timeout)),
        }
    }

    /// Runs one command.
    pub(crate) async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T, StoreError> {
        let mut conn = self.manager.clone();
        self.bounded(cmd.query_async(&mut conn)).await
    }

    /// Runs a pipeline in one round trip; one value per command not ignored.
    pub(crate) async fn pipeline(&self, pipe: &Pipeline) -> Result<Vec<Value>, StoreError> {
        let mut conn = self.manager.clone();
        self.bounded(pipe.query_async(&mut conn)).await
    }

    /// Runs script calls in one round trip (a pipeline of the `first` commands, whose answers
    /// are not kept, then the EVALSHA calls); one value per call, in order. A call answered
    /// NOSCRIPT did not run: its script is loaded and the call sent again, within the same
    /// deadline as the first round trip.
    pub(crate) async fn run(
        &self,
        first: &[Cmd],
        calls: Vec<Call<'_>>,
    ) -> Result<Vec<Value>, StoreError> {
        let deadline = Instant::now() + self.call_timeout;
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for cmd in first {
            pipe.add_command(cmd.clone()).ignore();
        }
        let mut scripts: Vec<&Lua> = Vec::with_capacity(calls.len());
        for call in calls {
            scripts.push(call.lua);
            pipe.add_command(call.cmd);
        }
        let mut conn = self.manager.clone();
        let mut values: Vec<Value> = self
            .bounded_until(deadline, pipe.query_async(&mut conn))
            .await?;
        let missing: Vec<usize> = values
            .iter()
            .enumerate()
            .filter(|(_, v)| is_noscript(v))
            .map(|(i, _)| i)
            .collect();
        if !missing.is_empty() {
            let mut again = redis::pipe();
            again.ignore_errors();
            let mut loaded: Vec<&str> = Vec::new();
            for &i in &missing {
                if !loaded.contains(&scripts[i].name()) {
                    loaded.push(scripts[i].name());
                    again.add_command(scripts[i].load_cmd()).ignore();
                }
            }
            let cmds: Vec<&Cmd> = pipe.cmd_iter().skip(first.len()).collect();
            for &i in &missing {
                again.add_command(cmds[i].clone());
            }
            let retried: Vec<Value> = self
                .bounded_until(deadline, again.query_async(&mut conn))
                .await?;
            for (i, v) in missing.into_iter().zip(retried) {
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

    /// Loads every script (done once at start; NOSCRIPT answers load them again later).
    pub(crate) async fn load_scripts(&self) -> Result<(), StoreError> {
        let mut pipe = redis::pipe();
        for lua in self.scripts.all() {
            pipe.add_command(lua.load_cmd()).ignore();
        }
        self.pipeline(&pipe).await.map(drop)
    }
}

fn is_noscript(value: &Value) -> bool {
    matches!(value, Value::ServerError(e) if e.kind() == Some(ServerErrorKind::NoScript))
}
