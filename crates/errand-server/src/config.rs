//! [`ServerConfig`]: how the API authenticates callers and what it accepts.

use crate::token::{self, MintSpec, TokenError};
use errand_core::HeaderAllowList;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// Settings of the HTTP API. Every field has a default that suits one machine except the
/// token keys: at least one of `jwt_secrets`, `jwks_file` and `jwks_url` must be set (see the
/// [`token`](crate::token) module for how tokens are verified).
///
/// ```
/// let config = errand_server::ServerConfig {
///     jwt_secrets: vec![b"a secret of at least thirty-two bytes!".to_vec()],
///     user_claim: "oid".into(),
///     ..Default::default()
/// };
/// assert_eq!(config.roles_claim, "roles");
/// assert_eq!(config.validate(), Ok(()));
/// ```
///
/// Tokens from an identity provider (see `docs/identity-providers.md`):
///
/// ```
/// let config = errand_server::ServerConfig {
///     jwks_url: Some("https://login.example.com/tenant/discovery/v2.0/keys".into()),
///     issuer: Some("https://login.example.com/tenant/v2.0".into()),
///     audience: vec!["api://errand".into()],
///     ..Default::default()
/// };
/// assert_eq!(config.validate(), Ok(()));
/// ```
#[derive(Clone)]
pub struct ServerConfig {
    /// HS256 secrets, each at least [`MIN_SECRET_LEN`](crate::token::MIN_SECRET_LEN) bytes.
    /// The first signs the tokens errand mints; every one verifies tokens, picked by the
    /// token's `kid` (see [`hs256_key_id`](crate::token::hs256_key_id)), or each in turn for a
    /// token without `kid`. Rotate by putting the new secret first, then dropping the old one.
    pub jwt_secrets: Vec<Vec<u8>>,
    /// A JWKS file (RFC 7517) of an identity provider's public keys, read when the
    /// [`Server`](crate::Server) is created.
    pub jwks_file: Option<PathBuf>,
    /// An identity provider's JWKS URL (`http://` or `https://`), fetched when a token first
    /// needs it, again when a token names a key it lacks, and in the background once the keys
    /// are older than `jwks_max_age`.
    pub jwks_url: Option<String>,
    /// The shortest time between two fetches of `jwks_url`, whatever triggers them. Default 30 s.
    pub jwks_refetch_interval: Duration,
    /// How old the keys fetched from `jwks_url` may get before they are refreshed. Default 10 min.
    pub jwks_max_age: Duration,
    /// The issuer tokens must name in `iss`, when set (an identity provider's issuer URL).
    pub issuer: Option<String>,
    /// The audiences a token's `aud` must hold one of, when not empty.
    pub audience: Vec<String>,
    /// The claim holding the user id. Default `sub`; `oid` is the other common choice. Like
    /// the other claim names, it is looked up as a top-level claim, and when there is none as
    /// a dot-separated path into nested objects (`realm_access.roles`).
    pub user_claim: String,
    /// The claim holding the tenant (optional in tokens). Default `tenant`.
    pub tenant_claim: String,
    /// The claim holding the roles: an array of strings, or one string. Default `roles`.
    pub roles_claim: String,
    /// The role that sees and acts on every user's tasks. Default `admin`.
    pub admin_role: String,
    /// Request headers copied into the caller's context. `Authorization`, `Cookie` and
    /// `Set-Cookie` are never copied, whatever the list says.
    pub header_allow_list: HeaderAllowList,
    /// Largest request body accepted, in bytes; larger bodies get 413. Default 1 MiB.
    pub body_limit: usize,
    /// Clock skew allowed when checking a token's `exp` and `nbf`. Default 30 s.
    pub token_leeway: Duration,
    /// Interval of keep-alive comments on an idle event stream. Default 15 s.
    pub sse_keep_alive: Duration,
    /// Interval at which an idle event stream re-reads its task from the store. A re-read
    /// record that differs from the last one sent is sent like any other (final records
    /// included, whatever their `updated_at`), so a change the store's watch missed (a remote
    /// store's lost subscription, records a slow watcher skipped) reaches the client within
    /// this interval, and a task purged meanwhile ends the stream. Default 30 s.
    pub events_resync: Duration,
    /// Event streams one user (user and tenant) may have open at once; past it, opening one
    /// answers 429 with `Retry-After`. Default 32.
    pub streams_per_user: usize,
    /// Event streams the server keeps open at once, all users together; past it, 429.
    /// Default 10,000.
    pub streams_total: usize,
    /// A trace viewer's URL with `{trace_id}` where the trace id goes (for example
    /// `http://localhost:16686/trace/{trace_id}` for Jaeger): the dashboard links each task's
    /// trace id there. Default: no link.
    pub trace_url_template: Option<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            jwt_secrets: Vec::new(),
            jwks_file: None,
            jwks_url: None,
            jwks_refetch_interval: Duration::from_secs(30),
            jwks_max_age: Duration::from_secs(600),
            issuer: None,
            audience: Vec::new(),
            user_claim: "sub".into(),
            tenant_claim: "tenant".into(),
            roles_claim: "roles".into(),
            admin_role: "admin".into(),
            header_allow_list: HeaderAllowList::default(),
            body_limit: 1024 * 1024,
            token_leeway: Duration::from_secs(30),
            sse_keep_alive: Duration::from_secs(15),
            events_resync: Duration::from_secs(30),
            streams_per_user: 32,
            streams_total: 10_000,
            trace_url_template: None,
        }
    }
}

impl fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secrets: Vec<String> = self
            .jwt_secrets
            .iter()
            .map(|s| format!("<{} bytes, key id {}>", s.len(), token::hs256_key_id(s)))
            .collect();
        f.debug_struct("ServerConfig")
            .field("jwt_secrets", &secrets)
            .field("jwks_file", &self.jwks_file)
            .field("jwks_url", &self.jwks_url)
            .field("jwks_refetch_interval", &self.jwks_refetch_interval)
            .field("jwks_max_age", &self.jwks_max_age)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("user_claim", &self.user_claim)
            .field("tenant_claim", &self.tenant_claim)
            .field("roles_claim", &self.roles_claim)
            .field("admin_role", &self.admin_role)
            .field("header_allow_list", &self.header_allow_list)
            .field("body_limit", &self.body_limit)
            .field("token_leeway", &self.token_leeway)
            .field("sse_keep_alive", &self.sse_keep_alive)
            .field("events_resync", &self.events_resync)
            .field("streams_per_user", &self.streams_per_user)
            .field("streams_total", &self.streams_total)
            .field("trace_url_template", &self.trace_url_template)
            .finish()
    }
}

/// The configuration cannot run a server.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// No key verifies tokens: no secret, no JWKS file, no JWKS URL.
    #[error(
        "no token keys are configured: set jwt_secrets (HS256), jwks_file or jwks_url (an identity provider's keys)"
    )]
    NoKeys,
    /// A token secret is too short.
    #[error("invalid jwt_secrets: {0}")]
    Secret(String),
    /// The JWKS file cannot be read, or holds no usable key.
    #[error("cannot use the JWKS file {}: {reason}", path.display())]
    JwksFile {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The JWKS URL is not an http(s) URL, or no client can fetch it.
    #[error("invalid jwks_url {url:?}: {reason}")]
    JwksUrl {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// A claim name, the admin role, the issuer or an audience is empty.
    #[error("{0} must not be empty")]
    Empty(&'static str),
    /// A size or interval is zero.
    #[error("{0} must be greater than zero")]
    Zero(&'static str),
}

impl ServerConfig {
    /// Checks the configuration: at least one key source, long enough secrets, an http(s)
    /// JWKS URL, non-empty claim names, role, issuer and audiences, and non-zero limits and
    /// intervals. The JWKS file is read (and checked) when the [`Server`](crate::Server) is
    /// created.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.jwt_secrets.is_empty() && self.jwks_file.is_none() && self.jwks_url.is_none() {
            return Err(ConfigError::NoKeys);
        }
        for (i, secret) in self.jwt_secrets.iter().enumerate() {
            token::check_secret(secret)
                .map_err(|why| ConfigError::Secret(format!("jwt_secrets[{i}]: {why}")))?;
        }
        if let Some(url) = &self.jwks_url {
            token::parse_jwks_url(url).map_err(|reason| ConfigError::JwksUrl {
                url: url.clone(),
                reason,
            })?;
        }
        let names = [
            ("user_claim", &self.user_claim),
            ("tenant_claim", &self.tenant_claim),
            ("roles_claim", &self.roles_claim),
            ("admin_role", &self.admin_role),
        ];
        let issuer = self.issuer.iter().map(|i| ("issuer", i));
        let audience = self.audience.iter().map(|a| ("audience", a));
        for (name, value) in names.into_iter().chain(issuer).chain(audience) {
            if value.trim().is_empty() {
                return Err(ConfigError::Empty(name));
            }
        }
        for (name, value) in [
            ("body_limit", self.body_limit),
            ("streams_per_user", self.streams_per_user),
            ("streams_total", self.streams_total),
        ] {
            if value == 0 {
                return Err(ConfigError::Zero(name));
            }
        }
        for (name, value) in [
            ("sse_keep_alive", self.sse_keep_alive),
            ("events_resync", self.events_resync),
            ("jwks_refetch_interval", self.jwks_refetch_interval),
            ("jwks_max_age", self.jwks_max_age),
        ] {
            if value.is_zero() {
                return Err(ConfigError::Zero(name));
            }
        }
        Ok(())
    }

    /// The key id of the secret tokens are minted with (the first of `jwt_secrets`), if
    /// there is one: the `kid` header of every token [`mint_token`](Self::mint_token) makes.
    pub fn signing_key_id(&self) -> Option<String> {
        self.jwt_secrets
            .first()
            .map(|secret| token::hs256_key_id(secret))
    }

    /// Mints an HS256 token this server accepts, signed with the first of `jwt_secrets`, with
    /// the configured claim names and admin role, and the configured issuer and (first)
    /// audience when there are (see [`mint_token`](crate::mint_token) for the claims).
    pub fn mint_token(
        &self,
        user: &str,
        tenant: Option<&str>,
        admin: bool,
        ttl: Duration,
    ) -> Result<String, TokenError> {
        let roles: &[&str] = if admin { &[&self.admin_role] } else { &[] };
        self.mint(user, tenant, roles, ttl)
    }

    /// Mints a worker's token (the [`WORKER_ROLE`](crate::WORKER_ROLE)) for the worker `name`,
    /// valid for `ttl`: it may use the worker routes, and is no user on the others.
    pub fn mint_worker_token(&self, name: &str, ttl: Duration) -> Result<String, TokenError> {
        self.mint(name, None, &[crate::WORKER_ROLE], ttl)
    }

    fn mint(
        &self,
        user: &str,
        tenant: Option<&str>,
        roles: &[&str],
        ttl: Duration,
    ) -> Result<String, TokenError> {
        let Some(secret) = self.jwt_secrets.first() else {
            return Err(TokenError::Mint(
                "no HS256 secret is configured (jwt_secrets is empty)".into(),
            ));
        };
        let spec = MintSpec {
            user_claim: &self.user_claim,
            tenant_claim: &self.tenant_claim,
            roles_claim: &self.roles_claim,
            issuer: self.issuer.as_deref(),
            audience: self.audience.first().map(String::as_str),
        };
        token::mint_with(secret, &spec, user, tenant, roles, ttl, chrono::Utc::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_refuses_weak_secrets_and_empty_names() {
        let ok = ServerConfig {
            jwt_secrets: vec![vec![1; 32]],
            ..Default::default()
        };
        assert_eq!(ok.validate(), Ok(()));
        assert_eq!(ServerConfig::default().validate(), Err(ConfigError::NoKeys));
        let short_second = ServerConfig {
            jwt_secrets: vec![vec![1; 32], vec![2; 31]],
            ..Default::default()
        };
        assert!(
            matches!(short_second.validate(), Err(ConfigError::Secret(why)) if why.contains("jwt_secrets[1]"))
        );
        for url in ["ftp://idp.example/keys", "/keys", "https://"] {
            let bad_url = ServerConfig {
                jwks_url: Some(url.into()),
                ..Default::default()
            };
            assert!(
                matches!(bad_url.validate(), Err(ConfigError::JwksUrl { .. })),
                "{url}"
            );
        }
        let file_only = ServerConfig {
            jwks_file: Some("/etc/errand/jwks.json".into()),
            ..Default::default()
        };
        assert_eq!(file_only.validate(), Ok(()), "a JWKS file is read later");
        let empty_issuer = ServerConfig {
            issuer: Some("".into()),
            ..ok.clone()
        };
        assert_eq!(empty_issuer.validate(), Err(ConfigError::Empty("issuer")));
        let empty_audience = ServerConfig {
            audience: vec!["api".into(), " ".into()],
            ..ok.clone()
        };
        assert_eq!(
            empty_audience.validate(),
            Err(ConfigError::Empty("audience"))
        );
        let no_rate_limit = ServerConfig {
            jwks_refetch_interval: Duration::ZERO,
            ..ok.clone()
        };
        assert_eq!(
            no_rate_limit.validate(),
            Err(ConfigError::Zero("jwks_refetch_interval"))
        );
        let empty_claim = ServerConfig {
            user_claim: " ".into(),
            ..ok.clone()
        };
        assert_eq!(
            empty_claim.validate(),
            Err(ConfigError::Empty("user_claim"))
        );
        let zero = ServerConfig {
            body_limit: 0,
            ..ok.clone()
        };
        assert_eq!(zero.validate(), Err(ConfigError::Zero("body_limit")));
    }

    #[test]
    fn debug_hides_the_secrets() {
        let secret = b"super-secret-value-super-secret-value".to_vec();
        let config = ServerConfig {
            jwt_secrets: vec![
                secret.clone(),
                b"second-secret-second-secret-second".to_vec(),
            ],
            ..Default::default()
        };
        let shown = format!("{config:?}");
        assert!(!shown.contains("super-secret"), "{shown}");
        assert!(!shown.contains("second-secret"), "{shown}");
        let expected = format!("<37 bytes, key id {}>", token::hs256_key_id(&secret));
        assert!(shown.contains(&expected), "{shown}");
    }

    #[test]
    fn tokens_are_minted_with_the_first_secret_and_its_key_id() {
        let config = ServerConfig {
            jwt_secrets: vec![vec![1; 32], vec![2; 32]],
            ..Default::default()
        };
        assert_eq!(config.signing_key_id(), Some(token::hs256_key_id(&[1; 32])));
        let token = config
            .mint_token("alice", None, false, Duration::from_secs(60))
            .expect("mint");
        let expected = token::hs256_key_id(&[1; 32]);
        let header = jsonwebtoken::decode_header(&token).expect("header");
        assert_eq!(header.kid.as_deref(), Some(expected.as_str()));
        let idp_only = ServerConfig {
            jwks_url: Some("https://idp.example/keys".into()),
            ..Default::default()
        };
        assert_eq!(idp_only.signing_key_id(), None);
        assert!(matches!(
            idp_only.mint_token("alice", None, false, Duration::from_secs(60)),
            Err(TokenError::Mint(_))
        ));
    }
}
