//! Configuration of the `errand` binary: flags, then `ERRAND_*` environment variables (both
//! handled by clap), then the TOML file, then defaults. Every default suits a newcomer on one
//! machine: bind 127.0.0.1, the embedded SQLite store under `./errand-data`.

use anyhow::{Context as _, bail};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The file read when `--config` is not given, if it exists.
pub const DEFAULT_CONFIG_FILE: &str = "errand.toml";
/// Where state lives unless told otherwise.
pub const DEFAULT_DATA_DIR: &str = "./errand-data";
/// Where `serve` listens unless told otherwise.
pub const DEFAULT_ADDR: &str = "127.0.0.1:8080";

/// Which store holds the tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// Embedded and durable: a SQLite file in the data directory (the default).
    Sqlite,
    /// In process memory: fast, lost when the process stops.
    Memory,
    /// Redis or Valkey: many API and worker processes on many machines.
    Redis,
    /// PostgreSQL: many processes on the service's own database, with enqueue inside its
    /// transactions (from the library: `errand_postgres::SubmitInTx`).
    Postgres,
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Pretty,
    /// One JSON object per line, span fields included.
    Json,
}

/// The optional TOML file. Every key is optional; unknown keys are an error (typos should not
/// pass silently).
///
/// ```toml
/// addr = "127.0.0.1:8080"
/// data_dir = "./errand-data"
/// store = "sqlite"            # sqlite | memory | redis
/// redis_url = "redis://127.0.0.1:6379"
/// workers = 16                # tasks this process runs at once; 0 = API only
/// queues = ["default"]
/// drain_timeout = "30s"
/// user_claim = "sub"          # or "oid"
/// allow_headers = ["x-client-version"]
/// jwks_url = "https://login.example.com/keys"   # an identity provider's keys
/// issuer = "https://login.example.com/"
/// audience = ["api://errand"]  # or "a,b"
/// otlp_endpoint = "http://127.0.0.1:4318"   # export spans (OTLP/HTTP)
/// ```
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// `serve`: listen address.
    pub addr: Option<SocketAddr>,
    /// State directory (SQLite store, secrets, reference index).
    pub data_dir: Option<PathBuf>,
    /// The store.
    pub store: Option<StoreKind>,
    /// Redis URL, for `store = "redis"` (it may hold a password: `Debug` hides it).
    pub redis_url: Option<Sensitive>,
    /// Key prefix in Redis.
    pub redis_prefix: Option<String>,
    /// `redis_url` names the seed nodes of a Redis Cluster (comma-separated).
    pub redis_cluster: Option<bool>,
    /// Replicas that must confirm each batch of writes (`WAIT`) before it is acknowledged.
    pub redis_wait_replicas: Option<usize>,
    /// PostgreSQL URL, for `store = "postgres"` (it may hold a password: `Debug` hides it).
    pub postgres_url: Option<Sensitive>,
    /// The schema errand's tables live in.
    pub postgres_schema: Option<String>,
    /// Never LISTEN (PgBouncer in transaction pooling mode): poll instead.
    pub postgres_poll_only: Option<bool>,
    /// `serve`: tasks run at once in this process (0: API only).
    pub workers: Option<usize>,
    /// `worker`: tasks run at once.
    pub concurrency: Option<usize>,
    /// Tasks claimed ahead of the running ones (`serve` and `worker`).
    pub prefetch: Option<usize>,
    /// Queues the workers claim from.
    pub queues: Option<Vec<String>>,
    /// Time running tasks get to finish at shutdown, e.g. `"30s"`.
    #[serde(default, with = "humantime_serde_opt")]
    pub drain_timeout: Option<Duration>,
    /// Lease of a claimed task, e.g. `"30s"`.
    #[serde(default, with = "humantime_serde_opt")]
    pub lease: Option<Duration>,
    /// Whether `serve` and `worker` register the reference pipeline.
    pub reference_tasks: Option<bool>,
    /// Client commands: the API's base URL.
    pub url: Option<String>,
    /// HS256 secrets, the first signing (prefer `ERRAND_JWT_SECRETS` or the generated file):
    /// an array, or one comma-separated string.
    pub jwt_secrets: Option<Sensitive<ListValue>>,
    /// One HS256 secret: the same as `jwt_secrets` with one secret.
    pub jwt_secret: Option<Sensitive>,
    /// The seal keys of task contexts: comma-separated base64 keys, the first seals (prefer
    /// `ERRAND_SEAL_KEYS` or the generated file).
    pub seal_keys: Option<Sensitive>,
    /// One seal key, base64: a ring of one (`seal_keys` wins when both are set).
    pub seal_key: Option<Sensitive>,
    /// `serve`: a JWKS file of an identity provider's public keys.
    pub jwks_file: Option<PathBuf>,
    /// `serve`: an identity provider's JWKS URL.
    pub jwks_url: Option<String>,
    /// `serve`: the shortest time between two fetches of the JWKS URL, e.g. `"30s"`.
    #[serde(default, with = "humantime_serde_opt")]
    pub jwks_refetch_interval: Option<Duration>,
    /// The issuer tokens must name (`iss`).
    pub issuer: Option<String>,
    /// The audiences a token's `aud` must hold one of: an array, or a comma-separated string.
    pub audience: Option<ListValue>,
    /// Token claim holding the user id.
    pub user_claim: Option<String>,
    /// Token claim holding the tenant.
    pub tenant_claim: Option<String>,
    /// Token claim holding the roles.
    pub roles_claim: Option<String>,
    /// Role that sees every user's tasks.
    pub admin_role: Option<String>,
    /// Request headers copied into task contexts.
    pub allow_headers: Option<Vec<String>>,
    /// Largest request body, in bytes.
    pub body_limit: Option<usize>,
    /// Event streams one user may have open at once.
    pub streams_per_user: Option<usize>,
    /// Event streams the server keeps open at once.
    pub streams_total: Option<usize>,
    /// Clock skew allowed on tokens' `exp` and `nbf`, e.g. `"30s"`.
    #[serde(default, with = "humantime_serde_opt")]
    pub token_leeway: Option<Duration>,
    /// `serve`: a trace viewer's URL with `{trace_id}`, linked from the dashboard.
    pub trace_url_template: Option<String>,
    /// `pretty` or `json`.
    pub log_format: Option<LogFormat>,
    /// Log filter, e.g. `"info,errand_core=debug"`.
    pub log: Option<String>,
    /// `serve`, `worker`, `bench`: an OTLP/HTTP collector's base URL to export spans to.
    pub otlp_endpoint: Option<String>,
}

/// A configuration value that must not be printed: `Debug` shows `***`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Sensitive<T = String>(T);

impl<T> Sensitive<T> {
    /// The value.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> std::fmt::Debug for Sensitive<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// A list in the TOML file: an array of strings, or one string of comma-separated items.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum ListValue {
    /// `["a", "b"]`.
    Items(Vec<String>),
    /// `"a,b"`.
    Joined(String),
}

impl ListValue {
    /// The items, each trimmed.
    pub fn items(&self) -> Vec<String> {
        match self {
            ListValue::Items(items) => items.iter().map(|i| i.trim().to_string()).collect(),
            ListValue::Joined(joined) => split_list(joined),
        }
    }
}

/// The comma-separated items of `joined`, each trimmed.
pub fn split_list(joined: &str) -> Vec<String> {
    joined.split(',').map(|i| i.trim().to_string()).collect()
}

/// `humantime` strings for optional durations in the TOML file.
mod humantime_serde_opt {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|s| humantime::parse_duration(&s).map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// Flags every command accepts.
#[derive(Debug, Clone, clap::Args)]
pub struct GlobalArgs {
    /// TOML configuration file [default: ./errand.toml when it exists].
    #[arg(long, global = true, env = "ERRAND_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// State directory: the SQLite store, generated secrets, the reference index [default: ./errand-data].
    #[arg(long, global = true, env = "ERRAND_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Log format [default: pretty].
    #[arg(long, global = true, env = "ERRAND_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Log filter, in `RUST_LOG` syntax [default: info].
    #[arg(long, global = true, env = "ERRAND_LOG", value_name = "FILTER")]
    pub log: Option<String>,
}

/// Store selection, shared by `serve`, `worker` and `bench`. The default selects nothing: every
/// choice then comes from the environment, the file or the command's default.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct StoreArgs {
    /// Task store [default: sqlite; redis when a Redis URL is given to `worker`].
    #[arg(long, env = "ERRAND_STORE", value_enum)]
    pub store: Option<StoreKind>,
    /// Redis URL for the redis store, e.g. redis://127.0.0.1:6379.
    #[arg(long, env = "ERRAND_REDIS_URL", value_name = "URL")]
    pub redis_url: Option<String>,
    /// Key prefix in Redis [default: errand].
    #[arg(long, env = "ERRAND_REDIS_PREFIX", value_name = "PREFIX")]
    pub redis_prefix: Option<String>,
    /// The Redis URL names the seed nodes of a Redis Cluster, comma-separated
    /// (redis://10.0.0.5:7000,redis://10.0.0.6:7000).
    #[arg(long, env = "ERRAND_REDIS_CLUSTER")]
    pub redis_cluster: bool,
    /// Replicas of the Redis node that took a batch of writes that must confirm it (WAIT)
    /// before it is acknowledged, so a failover loses no acknowledged write [default: 0].
    #[arg(long, env = "ERRAND_REDIS_WAIT_REPLICAS", value_name = "N")]
    pub redis_wait_replicas: Option<usize>,
    /// PostgreSQL URL for the postgres store, e.g. postgres://postgres@127.0.0.1:5432/app.
    #[arg(long, env = "ERRAND_POSTGRES_URL", value_name = "URL")]
    pub postgres_url: Option<String>,
    /// The schema of errand's tables in PostgreSQL, created if missing [default: errand].
    #[arg(long, env = "ERRAND_POSTGRES_SCHEMA", value_name = "SCHEMA")]
    pub postgres_schema: Option<String>,
    /// Never LISTEN: poll for work, cancellations and events instead (for PgBouncer in
    /// transaction pooling mode, which cannot hold a listening session).
    #[arg(long, env = "ERRAND_POSTGRES_POLL_ONLY")]
    pub postgres_poll_only: bool,
}

/// Span export, shared by `serve`, `worker` and `bench`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TelemetryArgs {
    /// Export spans over OTLP/HTTP (protobuf) to this collector base URL: they are sent to
    /// URL/v1/traces [default: none, nothing is exported].
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT", value_name = "URL")]
    pub otlp_endpoint: Option<String>,
}

/// The merged configuration: the file, plus the global flags.
#[derive(Debug)]
pub struct Settings {
    /// The TOML file's values (all `None` without a file).
    pub file: FileConfig,
    /// The global flags.
    pub global: GlobalArgs,
}

impl Settings {
    /// Reads the TOML file named by `--config`/`ERRAND_CONFIG`, or `./errand.toml` if present.
    pub fn load(global: GlobalArgs) -> anyhow::Result<Self> {
        let file = match &global.config {
            Some(path) => read_file(path)?,
            None if Path::new(DEFAULT_CONFIG_FILE).exists() => {
                read_file(Path::new(DEFAULT_CONFIG_FILE))?
            }
            None => FileConfig::default(),
        };
        Ok(Self { file, global })
    }

    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.global
            .data_dir
            .clone()
            .or_else(|| self.file.data_dir.clone())
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR))
    }

    /// The log format.
    pub fn log_format(&self) -> LogFormat {
        self.global
            .log_format
            .or(self.file.log_format)
            .unwrap_or(LogFormat::Pretty)
    }

    /// The log filter.
    pub fn log_filter(&self) -> String {
        self.global
            .log
            .clone()
            .or_else(|| self.file.log.clone())
            .or_else(|| std::env::var("RUST_LOG").ok())
            .unwrap_or_else(|| "info".into())
    }

    /// The store to open, given a command's store flags. `default` applies when neither the
    /// flags nor the file choose.
    pub fn store(&self, args: &StoreArgs, default: StoreKind) -> anyhow::Result<StoreChoice> {
        let kind = args.store.or(self.file.store).unwrap_or(default);
        Ok(match kind {
            StoreKind::Sqlite => StoreChoice::Sqlite(self.data_dir().join("errand.sqlite")),
            StoreKind::Memory => StoreChoice::Memory,
            StoreKind::Redis => {
                let Some(url) = args
                    .redis_url
                    .clone()
                    .or_else(|| self.file.redis_url.as_ref().map(|u| u.expose().to_string()))
                else {
                    bail!(
                        "the redis store needs a URL: pass --redis-url, set ERRAND_REDIS_URL, or redis_url in the config file"
                    );
                };
                let prefix = args
                    .redis_prefix
                    .clone()
                    .or_else(|| self.file.redis_prefix.clone())
                    .unwrap_or_else(|| "errand".into());
                let cluster = args.redis_cluster || self.file.redis_cluster == Some(true);
                let wait_replicas = args
                    .redis_wait_replicas
                    .or(self.file.redis_wait_replicas)
                    .unwrap_or(0);
                StoreChoice::Redis {
                    url,
                    prefix,
                    cluster,
                    wait_replicas,
                }
            }
            StoreKind::Postgres => {
                let Some(url) = args.postgres_url.clone().or_else(|| {
                    self.file
                        .postgres_url
                        .as_ref()
                        .map(|u| u.expose().to_string())
                }) else {
                    bail!(
                        "the postgres store needs a URL: pass --postgres-url, set ERRAND_POSTGRES_URL, or postgres_url in the config file"
                    );
                };
                let schema = args
                    .postgres_schema
                    .clone()
                    .or_else(|| self.file.postgres_schema.clone())
                    .unwrap_or_else(|| "errand".into());
                let poll_only =
                    args.postgres_poll_only || self.file.postgres_poll_only == Some(true);
                StoreChoice::Postgres {
                    url,
                    schema,
                    poll_only,
                }
            }
        })
    }

    /// Whether a Redis URL is configured anywhere (flags, env, file).
    pub fn has_redis_url(&self, args: &StoreArgs) -> bool {
        args.redis_url.is_some() || self.file.redis_url.is_some()
    }

    /// Whether a PostgreSQL URL is configured anywhere (flags, env, file).
    pub fn has_postgres_url(&self, args: &StoreArgs) -> bool {
        args.postgres_url.is_some() || self.file.postgres_url.is_some()
    }

    /// The collector spans are exported to, if any: the flag or `OTEL_EXPORTER_OTLP_ENDPOINT`,
    /// then the file. An empty value is none.
    pub fn otlp_endpoint(&self, args: &TelemetryArgs) -> Option<String> {
        let given = |url: &Option<String>| url.clone().filter(|url| !url.trim().is_empty());
        given(&args.otlp_endpoint).or_else(|| given(&self.file.otlp_endpoint))
    }

    /// The queues workers claim from.
    pub fn queues(&self, flag: &Option<Vec<String>>) -> Vec<String> {
        flag.clone()
            .or_else(|| self.file.queues.clone())
            .filter(|q| !q.is_empty())
            .unwrap_or_else(|| vec![errand_core::DEFAULT_QUEUE.to_string()])
    }
}

/// A store to open. Its `Debug` hides a Redis URL's password.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreChoice {
    /// SQLite at this path.
    Sqlite(PathBuf),
    /// In memory.
    Memory,
    /// Redis at this URL, under this key prefix.
    Redis {
        /// The URL (with `cluster`, the seed nodes' URLs, comma-separated).
        url: String,
        /// The key prefix.
        prefix: String,
        /// A Redis Cluster.
        cluster: bool,
        /// Replicas that must confirm each batch of writes.
        wait_replicas: usize,
    },
    /// PostgreSQL at this URL, in this schema.
    Postgres {
        /// The URL.
        url: String,
        /// The schema of errand's tables.
        schema: String,
        /// Never LISTEN.
        poll_only: bool,
    },
}

impl std::fmt::Debug for StoreChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&crate::stores::describe(self))
    }
}

fn read_file(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("invalid config file {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn global() -> GlobalArgs {
        GlobalArgs {
            config: None,
            data_dir: None,
            log_format: None,
            log: None,
        }
    }

    #[test]
    fn flags_beat_the_file_which_beats_defaults() {
        let file: FileConfig = toml::from_str(
            r#"
            data_dir = "/from/file"
            store = "memory"
            queues = ["a", "b"]
            drain_timeout = "90s"
            "#,
        )
        .expect("valid toml");
        assert_eq!(file.drain_timeout, Some(Duration::from_secs(90)));
        let mut s = Settings {
            file,
            global: global(),
        };
        assert_eq!(s.data_dir(), PathBuf::from("/from/file"));
        let none = StoreArgs::default();
        assert_eq!(
            s.store(&none, StoreKind::Sqlite).expect("store"),
            StoreChoice::Memory
        );
        assert_eq!(s.queues(&None), ["a", "b"]);
        assert_eq!(s.queues(&Some(vec!["c".into()])), ["c"]);
        s.global.data_dir = Some("/from/flag".into());
        assert_eq!(s.data_dir(), PathBuf::from("/from/flag"));
        let sqlite = StoreArgs {
            store: Some(StoreKind::Sqlite),
            ..none.clone()
        };
        assert_eq!(
            s.store(&sqlite, StoreKind::Memory).expect("store"),
            StoreChoice::Sqlite("/from/flag/errand.sqlite".into())
        );
        let redis = StoreArgs {
            store: Some(StoreKind::Redis),
            ..none.clone()
        };
        assert!(
            s.store(&redis, StoreKind::Memory).is_err(),
            "redis needs a URL"
        );
        let postgres = StoreArgs {
            store: Some(StoreKind::Postgres),
            ..none.clone()
        };
        let refused = s
            .store(&postgres, StoreKind::Memory)
            .expect_err("needs a URL");
        assert!(refused.to_string().contains("--postgres-url"), "{refused}");
        let postgres = StoreArgs {
            postgres_url: Some("postgres://app:pw@db/app".into()),
            postgres_poll_only: true,
            ..postgres
        };
        let choice = s.store(&postgres, StoreKind::Memory).expect("store");
        assert_eq!(
            choice,
            StoreChoice::Postgres {
                url: "postgres://app:pw@db/app".into(),
                schema: "errand".into(),
                poll_only: true,
            }
        );
        assert!(
            !format!("{choice:?}").contains("pw"),
            "{choice:?} hides the password"
        );
    }

    #[test]
    fn defaults_are_safe_for_one_machine() {
        let s = Settings {
            file: FileConfig::default(),
            global: global(),
        };
        assert_eq!(s.data_dir(), PathBuf::from(DEFAULT_DATA_DIR));
        assert_eq!(s.log_format(), LogFormat::Pretty);
        assert!(DEFAULT_ADDR.starts_with("127.0.0.1:"));
    }

    #[test]
    fn secrets_never_show_in_debug() {
        let file: FileConfig = toml::from_str(
            r#"
            jwt_secret = "a-very-secret-signing-key-of-32-bytes"
            jwt_secrets = ["first-secret-signing-key-of-32-bytes", "second-secret-xxxxxxxxxxxxxxxxxxxx"]
            seal_key = "c2VhbC1rZXktYmFzZTY0"
            redis_url = "redis://user:hunter2@10.0.0.5:6379"
            "#,
        )
        .expect("valid toml");
        let shown = format!("{file:?}");
        for secret in [
            "a-very-secret",
            "first-secret",
            "second-secret",
            "c2VhbC1rZXk",
            "hunter2",
        ] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        let choice = StoreChoice::Redis {
            url: "redis://user:hunter2@10.0.0.5:6379,redis://user:hunter2@10.0.0.6:6379".into(),
            prefix: "p".into(),
            cluster: true,
            wait_replicas: 0,
        };
        let shown = format!("{choice:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(
            shown.contains("10.0.0.5") && shown.contains("10.0.0.6"),
            "{shown}"
        );
    }

    #[test]
    fn the_redis_cluster_and_its_replicas_come_from_flags_or_the_file() {
        let file: FileConfig = toml::from_str(
            "redis_url = \"redis://127.0.0.1:7000\"\nredis_cluster = true\nredis_wait_replicas = 1",
        )
        .expect("valid toml");
        let s = Settings {
            global: global(),
            file,
        };
        let args = StoreArgs {
            store: Some(StoreKind::Redis),
            ..StoreArgs::default()
        };
        let from_file = s.store(&args, StoreKind::Sqlite).expect("a choice");
        assert!(matches!(
            from_file,
            StoreChoice::Redis {
                cluster: true,
                wait_replicas: 1,
                ..
            }
        ));
        let flagged = StoreArgs {
            redis_wait_replicas: Some(2),
            ..args
        };
        assert!(matches!(
            s.store(&flagged, StoreKind::Sqlite).expect("a choice"),
            StoreChoice::Redis {
                wait_replicas: 2,
                ..
            }
        ));
    }

    #[test]
    fn lists_are_arrays_or_comma_separated_strings() {
        let file: FileConfig = toml::from_str(
            "audience = \"api://errand, errand-backend\"\njwt_secrets = [\" a \", \"b\"]",
        )
        .expect("valid toml");
        assert_eq!(
            file.audience.expect("audience").items(),
            ["api://errand", "errand-backend"]
        );
        assert_eq!(
            file.jwt_secrets.expect("secrets").expose().items(),
            ["a", "b"]
        );
    }

    #[test]
    fn unknown_keys_are_rejected() {
        assert!(toml::from_str::<FileConfig>("adress = \"x\"").is_err());
    }
}
