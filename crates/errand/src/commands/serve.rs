//! `errand serve`: the HTTP API, plus workers running the registered tasks in this process.

use super::runtime::{RunArgs, WorkerPlan, library, registry};
use crate::auth::{JwksArgs, TokenClaimArgs};
use crate::deployment::{self, Keys};
use crate::secrets::{self, Missing};
use crate::settings::{DEFAULT_ADDR, Settings, StoreArgs, StoreKind};
use crate::{shutdown, stores};
use anyhow::Context as _;
use errand::reference;
use errand_core::{HeaderAllowList, RemoteConfig, RemoteWorkers};
use errand_server::Server;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// How often the process checks that it can still write through its store.
pub const HEALTH_CHECK: Duration = Duration::from_secs(1);

/// Serves the API (and runs workers unless `--workers 0`).
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "ERRAND_ADDR", value_name = "HOST:PORT")]
    pub addr: Option<SocketAddr>,
    #[command(flatten)]
    pub store: StoreArgs,
    /// Tasks this process runs at once; 0 runs the API only [default: 16].
    #[arg(long, env = "ERRAND_WORKERS", value_name = "N")]
    pub workers: Option<usize>,
    #[command(flatten)]
    pub run: RunArgs,
    #[command(flatten)]
    pub claims: TokenClaimArgs,
    #[command(flatten)]
    pub jwks: JwksArgs,
    /// A trace viewer's URL with `{trace_id}` in it (e.g. http://localhost:16686/trace/{trace_id}):
    /// the dashboard links each task's trace there.
    #[arg(long, env = "ERRAND_TRACE_URL_TEMPLATE", value_name = "URL")]
    pub trace_url_template: Option<String>,
    /// Request headers copied into task contexts, comma-separated (Authorization and cookies never are).
    #[arg(
        long,
        env = "ERRAND_ALLOW_HEADERS",
        value_delimiter = ',',
        value_name = "H1,H2"
    )]
    pub allow_headers: Option<Vec<String>>,
    #[command(flatten)]
    pub limits: LimitArgs,
    #[command(flatten)]
    pub telemetry: crate::settings::TelemetryArgs,
}

/// What one request, one user and the whole API may take.
#[derive(Debug, Clone, clap::Args)]
pub struct LimitArgs {
    /// Largest request body in bytes; larger ones get 413 [default: 1048576].
    #[arg(long, env = "ERRAND_BODY_LIMIT", value_name = "BYTES")]
    pub body_limit: Option<usize>,
    /// Event streams one user may have open at once; past it, 429 [default: 32].
    #[arg(long, env = "ERRAND_STREAMS_PER_USER", value_name = "N")]
    pub streams_per_user: Option<usize>,
    /// Event streams the server keeps open at once, all users together; past it, 429 [default: 10000].
    #[arg(long, env = "ERRAND_STREAMS_TOTAL", value_name = "N")]
    pub streams_total: Option<usize>,
    /// Clock skew allowed on tokens' exp and nbf [default: 30s].
    #[arg(long, env = "ERRAND_TOKEN_LEEWAY", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub token_leeway: Option<Duration>,
}

impl LimitArgs {
    /// Applies the flags (or env vars), else the file's keys, to `config`; unset ones keep
    /// their defaults.
    pub fn apply(
        &self,
        file: &crate::settings::FileConfig,
        config: &mut errand_server::ServerConfig,
    ) {
        if let Some(n) = self.body_limit.or(file.body_limit) {
            config.body_limit = n;
        }
        if let Some(n) = self.streams_per_user.or(file.streams_per_user) {
            config.streams_per_user = n;
        }
        if let Some(n) = self.streams_total.or(file.streams_total) {
            config.streams_total = n;
        }
        if let Some(d) = self.token_leeway.or(file.token_leeway) {
            config.token_leeway = d;
        }
    }
}

pub async fn run(settings: Settings, args: ServeArgs) -> anyhow::Result<()> {
    let addr = args.addr.or(settings.file.addr).unwrap_or_else(|| {
        DEFAULT_ADDR
            .parse()
            .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 8080)))
    });
    let choice = settings.store(&args.store, StoreKind::Sqlite)?;
    let jwt_secrets = secrets::jwt_secrets(&settings, Missing::Generate)?;
    let seal_keys = secrets::seal_keys(&settings, Missing::Generate)?;
    let token_ids: Vec<String> = jwt_secrets
        .iter()
        .map(|s| errand_server::hs256_key_id(s))
        .collect();
    // Signals are handled from here on: a SIGTERM while waiting for the store stops the wait,
    // and one right after the ready line below is a graceful shutdown.
    let stop = shutdown::signal();
    let store = stores::open_waiting(&choice, &stop).await?;
    let keys = Keys {
        seal: &seal_keys,
        token: token_ids.first().map(|signing| {
            (
                signing.as_str(),
                token_ids.iter().map(String::as_str).collect(),
            )
        }),
    };
    deployment::check(&*store, &keys, &stop).await?;
    deployment::warn_about(&*store).await;
    let registry = Arc::new(registry(&settings, &args.run)?);
    let library = library(&settings);

    let mut config = settings.serve_config(jwt_secrets, &args.claims, &args.jwks);
    args.limits.apply(&settings.file, &mut config);
    config.trace_url_template = args
        .trace_url_template
        .clone()
        .or_else(|| settings.file.trace_url_template.clone())
        .filter(|t| !t.trim().is_empty());
    if let Some(headers) = args
        .allow_headers
        .clone()
        .or_else(|| settings.file.allow_headers.clone())
    {
        config.header_allow_list = HeaderAllowList::new(headers);
    }
    let signing_key_id = config.signing_key_id();
    // Tasks of remote workers (the worker protocol) run in this process's attempt runtime.
    let remote = RemoteWorkers::start(store.clone(), seal_keys.clone(), RemoteConfig::default());
    let server = Server::new(store.clone(), registry.clone(), seal_keys.clone(), config)
        .context("invalid server configuration")?
        .routes(reference::routes(library.clone()))
        .remote_workers(remote.clone());

    let concurrency = args.workers.or(settings.file.workers).unwrap_or(16);
    let plan = WorkerPlan::new(&settings, &args.run, concurrency, &choice);
    let worker = (plan.concurrency > 0).then(|| {
        errand_core::Worker::new(store.clone(), registry.clone(), seal_keys.clone())
            .config(plan.config())
            .resource(library.clone())
            .observer(server.attempt_observer())
            .start()
    });

    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let local = listener.local_addr().unwrap_or(addr);
    tracing::info!(
        addr = %local,
        store = %stores::describe(&choice),
        data_dir = %settings.data_dir().display(),
        workers = plan.concurrency,
        prefetch = plan.prefetch,
        signing_key_id = %signing_key_id.as_deref().unwrap_or("none"),
        tasks = ?registry.names().collect::<Vec<_>>(),
        "errand serving"
    );
    // A line for people and scripts, on stdout.
    println!("errand listening on http://{local}");

    let api = tokio::spawn(server.serve(listener, {
        let stop = stop.clone();
        async move { stop.cancelled().await }
    }));
    let broken = tokio::select! {
        () = stop.cancelled() => None,
        reason = deployment::unhealthy(&*store, HEALTH_CHECK) => Some(reason),
    };
    if let Some(reason) = &broken {
        tracing::error!(%reason, "the task store can no longer be written through this process; stopping");
        stop.cancel();
    }
    tracing::info!(drain_timeout = ?plan.drain, "shutting down: no new tasks are claimed; running tasks get the drain timeout");
    if let Some(worker) = worker {
        // Logs its statistics ("worker stopped").
        worker.shutdown(plan.drain).await;
    }
    // The API no longer takes the remote workers' completions: the attempts they still hold
    // are handed back at once, without spending an attempt (their workers learn it at their
    // next heartbeat, from whichever server answers).
    if let Some(stats) = remote.shutdown(Duration::ZERO).await
        && stats.claimed > 0
    {
        tracing::info!(
            claimed = stats.claimed,
            succeeded = stats.succeeded,
            released = stats.released,
            "remote workers' attempts ended"
        );
    }
    match api.await {
        Ok(result) => result.context("the API server failed")?,
        Err(e) => anyhow::bail!("the API server task failed: {e}"),
    }
    if let Some(reason) = broken {
        anyhow::bail!("stopped because the task store can no longer be written: {reason}");
    }
    tracing::info!("errand stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_come_from_flags_then_the_file_then_defaults() {
        let file: crate::settings::FileConfig =
            toml::from_str("body_limit = 10\nstreams_per_user = 3\ntoken_leeway = \"5s\"")
                .expect("valid toml");
        let flags = LimitArgs {
            body_limit: Some(20),
            streams_per_user: None,
            streams_total: None,
            token_leeway: None,
        };
        let mut config = errand_server::ServerConfig::default();
        flags.apply(&file, &mut config);
        assert_eq!(config.body_limit, 20, "a flag beats the file");
        assert_eq!(config.streams_per_user, 3, "the file beats the default");
        assert_eq!(config.token_leeway, Duration::from_secs(5));
        assert_eq!(config.streams_total, 10_000, "the default");
    }
}
