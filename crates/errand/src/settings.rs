//! Configuration of the `errand` binary: flags, then `ERRAND_*` environment variables (both
//! handled by clap), then the TOML file, then defaults. Every default suits a newcomer on one
//! machine: bind 127.0.0.1, the embedded SQLite store under `./errand-data`.

use anyhow::{Context as _, bail};
use errand_server::ServerConfig;
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
    /// `serve`: tasks run at once in this process (0: API only).
    pub workers: Option<usize>,
    /// `worker`: tasks run at once.
    pub concurrency: Option<usize>,
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
    /// The HS256 secret (prefer `ERRAND_JWT_SECRET` or the generated file).
    pub jwt_secret: Option<Sensitive>,
    /// The credential seal key, base64 (prefer `ERRAND_SEAL_KEY` or the generated file).
    pub seal_key: Option<Sensitive>,
    /// Token claim holding the user id.
    pub user_claim: Option<String>,
    /// Token claim holding the tenant.
    pub tenant_claim: Option<String>,
    /// Role that sees every user's tasks.
    pub admin_role: Option<String>,
    /// Request headers copied into task contexts.
    pub allow_headers: Option<Vec<String>>,
    /// Largest request body, in bytes.
    pub body_limit: Option<usize>,
    /// `pretty` or `json`.
    pub log_format: Option<LogFormat>,
    /// Log filter, e.g. `"info,errand_core=debug"`.
    pub log: Option<String>,
}

/// A configuration value that must not be printed: `Debug` shows `***`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Sensitive(String);

impl Sensitive {
    /// The value.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Sensitive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
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

/// Store selection, shared by `serve`, `worker` and `bench`.
#[derive(Debug, Clone, clap::Args)]
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
                StoreChoice::Redis { url, prefix }
            }
        })
    }

    /// Whether a Redis URL is configured anywhere (flags, env, file).
    pub fn has_redis_url(&self, args: &StoreArgs) -> bool {
        args.redis_url.is_some() || self.file.redis_url.is_some()
    }

    /// The queues workers claim from.
    pub fn queues(&self, flag: &Option<Vec<String>>) -> Vec<String> {
        flag.clone()
            .or_else(|| self.file.queues.clone())
            .filter(|q| !q.is_empty())
            .unwrap_or_else(|| vec![errand_core::DEFAULT_QUEUE.to_string()])
    }

    /// The token claim holding the user id.
    pub fn user_claim(&self, flag: &Option<String>) -> String {
        flag.clone()
            .or_else(|| self.file.user_claim.clone())
            .unwrap_or_else(|| "sub".into())
    }

    /// How tokens are signed and read: `jwt_secret`, with the claim names and admin role of
    /// the configuration (`user_claim` also from a flag or `ERRAND_USER_CLAIM`). `serve`
    /// verifies with it; `token` and `check` mint with it, so their tokens carry the user,
    /// tenant and admin role where the server reads them.
    pub fn token_config(&self, jwt_secret: Vec<u8>, user_claim: &Option<String>) -> ServerConfig {
        let mut config = ServerConfig {
            jwt_secrets: vec![jwt_secret],
            user_claim: self.user_claim(user_claim),
            ..ServerConfig::default()
        };
        if let Some(claim) = &self.file.tenant_claim {
            config.tenant_claim.clone_from(claim);
        }
        if let Some(role) = &self.file.admin_role {
            config.admin_role.clone_from(role);
        }
        config
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
        /// The URL.
        url: String,
        /// The key prefix.
        prefix: String,
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
        let none = StoreArgs {
            store: None,
            redis_url: None,
            redis_prefix: None,
        };
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
            ..none
        };
        assert!(
            s.store(&redis, StoreKind::Memory).is_err(),
            "redis needs a URL"
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
        assert_eq!(s.user_claim(&None), "sub");
        assert!(DEFAULT_ADDR.starts_with("127.0.0.1:"));
    }

    #[test]
    fn tokens_use_the_configured_claims_and_role() {
        let file: FileConfig =
            toml::from_str("user_claim = \"oid\"\ntenant_claim = \"org\"\nadmin_role = \"boss\"")
                .expect("valid toml");
        let s = Settings {
            file,
            global: global(),
        };
        let config = s.token_config(vec![7; 32], &None);
        assert_eq!(
            (
                config.user_claim.as_str(),
                config.tenant_claim.as_str(),
                config.admin_role.as_str()
            ),
            ("oid", "org", "boss")
        );
        assert_eq!(config.roles_claim, "roles");
        assert_eq!(
            s.token_config(vec![7; 32], &Some("upn".into())).user_claim,
            "upn",
            "a flag beats the file"
        );
        let defaults = Settings {
            file: FileConfig::default(),
            global: global(),
        }
        .token_config(vec![7; 32], &None);
        assert_eq!(
            (defaults.user_claim.as_str(), defaults.tenant_claim.as_str()),
            ("sub", "tenant")
        );
    }

    #[test]
    fn secrets_never_show_in_debug() {
        let file: FileConfig = toml::from_str(
            r#"
            jwt_secret = "a-very-secret-signing-key-of-32-bytes"
            seal_key = "c2VhbC1rZXktYmFzZTY0"
            redis_url = "redis://user:hunter2@10.0.0.5:6379"
            "#,
        )
        .expect("valid toml");
        let shown = format!("{file:?}");
        for secret in ["a-very-secret", "c2VhbC1rZXk", "hunter2"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        let choice = StoreChoice::Redis {
            url: "redis://user:hunter2@10.0.0.5:6379".into(),
            prefix: "p".into(),
        };
        assert!(!format!("{choice:?}").contains("hunter2"));
    }

    #[test]
    fn unknown_keys_are_rejected() {
        assert!(toml::from_str::<FileConfig>("adress = \"x\"").is_err());
    }
}
