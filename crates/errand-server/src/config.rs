//! [`ServerConfig`]: how the API authenticates callers and what it accepts.

use crate::token::{self, MintSpec, TokenError};
use errand_core::HeaderAllowList;
use std::fmt;
use std::time::Duration;

/// Settings of the HTTP API. Every field but `jwt_secret` has a default that suits one
/// machine; the secret must be set (at least 32 bytes, see
/// [`MIN_SECRET_LEN`](crate::token::MIN_SECRET_LEN)).
///
/// ```
/// let config = errand_server::ServerConfig {
///     jwt_secret: b"a secret of at least thirty-two bytes!".to_vec(),
///     user_claim: "oid".into(),
///     ..Default::default()
/// };
/// assert_eq!(config.roles_claim, "roles");
/// ```
#[derive(Clone)]
pub struct ServerConfig {
    /// The HS256 secret bearer tokens are signed with.
    pub jwt_secret: Vec<u8>,
    /// The claim holding the user id. Default `sub`; `oid` is the other common choice.
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
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            jwt_secret: Vec::new(),
            user_claim: "sub".into(),
            tenant_claim: "tenant".into(),
            roles_claim: "roles".into(),
            admin_role: "admin".into(),
            header_allow_list: HeaderAllowList::default(),
            body_limit: 1024 * 1024,
            token_leeway: Duration::from_secs(30),
            sse_keep_alive: Duration::from_secs(15),
            events_resync: Duration::from_secs(30),
        }
    }
}

impl fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerConfig")
            .field(
                "jwt_secret",
                &format_args!("<{} bytes>", self.jwt_secret.len()),
            )
            .field("user_claim", &self.user_claim)
            .field("tenant_claim", &self.tenant_claim)
            .field("roles_claim", &self.roles_claim)
            .field("admin_role", &self.admin_role)
            .field("header_allow_list", &self.header_allow_list)
            .field("body_limit", &self.body_limit)
            .field("token_leeway", &self.token_leeway)
            .field("sse_keep_alive", &self.sse_keep_alive)
            .field("events_resync", &self.events_resync)
            .finish()
    }
}

/// The configuration cannot run a server.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// The token secret is missing or too short.
    #[error("invalid jwt_secret: {0}")]
    Secret(String),
    /// A claim name or the admin role is empty.
    #[error("{0} must not be empty")]
    Empty(&'static str),
    /// A size or interval is zero.
    #[error("{0} must be greater than zero")]
    Zero(&'static str),
}

impl ServerConfig {
    /// Checks the configuration: a long enough secret, non-empty claim names and role, and
    /// non-zero limits and intervals.
    pub fn validate(&self) -> Result<(), ConfigError> {
        token::check_secret(&self.jwt_secret).map_err(ConfigError::Secret)?;
        for (name, value) in [
            ("user_claim", &self.user_claim),
            ("tenant_claim", &self.tenant_claim),
            ("roles_claim", &self.roles_claim),
            ("admin_role", &self.admin_role),
        ] {
            if value.trim().is_empty() {
                return Err(ConfigError::Empty(name));
            }
        }
        if self.body_limit == 0 {
            return Err(ConfigError::Zero("body_limit"));
        }
        for (name, value) in [
            ("sse_keep_alive", self.sse_keep_alive),
            ("events_resync", self.events_resync),
        ] {
            if value.is_zero() {
                return Err(ConfigError::Zero(name));
            }
        }
        Ok(())
    }

    /// Mints a token this server accepts, with its configured claim names and admin role
    /// (see [`mint_token`](crate::mint_token) for the claims).
    pub fn mint_token(
        &self,
        user: &str,
        tenant: Option<&str>,
        admin: bool,
        ttl: Duration,
    ) -> Result<String, TokenError> {
        let spec = MintSpec {
            user_claim: &self.user_claim,
            tenant_claim: &self.tenant_claim,
            roles_claim: &self.roles_claim,
            admin_role: &self.admin_role,
        };
        token::mint_with(
            &self.jwt_secret,
            &spec,
            user,
            tenant,
            admin,
            ttl,
            chrono::Utc::now(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_refuses_weak_secrets_and_empty_names() {
        let ok = ServerConfig {
            jwt_secret: vec![1; 32],
            ..Default::default()
        };
        assert_eq!(ok.validate(), Ok(()));
        assert!(matches!(
            ServerConfig::default().validate(),
            Err(ConfigError::Secret(_))
        ));
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
    fn debug_hides_the_secret() {
        let config = ServerConfig {
            jwt_secret: b"super-secret-value-super-secret-value".to_vec(),
            ..Default::default()
        };
        let shown = format!("{config:?}");
        assert!(!shown.contains("super-secret"));
        assert!(shown.contains("<37 bytes>"));
    }
}
