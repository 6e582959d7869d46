//! How the binary reads and mints tokens: the claim names, issuer and audience every command
//! that touches tokens shares, and the identity provider's keys `serve` verifies with. Each
//! setting comes from its flag, then its `ERRAND_*` variable, then the TOML file, then the
//! default of [`ServerConfig`].

use crate::settings::Settings;
use errand_server::ServerConfig;
use std::path::PathBuf;
use std::time::Duration;

/// The token settings of `serve`, `token` and `check`: `serve` reads tokens with them,
/// `token` and `check` mint tokens that carry the user, tenant, roles, issuer and audience
/// where the server reads them.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TokenClaimArgs {
    /// Token claim holding the user id [default: the file's `user_claim`, else sub; `oid` for
    /// Azure AD]. A name with dots that is not a top-level claim is a path: `a.b`.
    #[arg(long, env = "ERRAND_USER_CLAIM", value_name = "CLAIM")]
    pub user_claim: Option<String>,
    /// Token claim holding the tenant [default: the file's `tenant_claim`, else tenant].
    #[arg(long, env = "ERRAND_TENANT_CLAIM", value_name = "CLAIM")]
    pub tenant_claim: Option<String>,
    /// Token claim holding the roles [default: the file's `roles_claim`, else roles; Keycloak:
    /// realm_access.roles].
    #[arg(long, env = "ERRAND_ROLES_CLAIM", value_name = "CLAIM")]
    pub roles_claim: Option<String>,
    /// Role that sees and acts on every user's tasks [default: the file's `admin_role`, else
    /// admin].
    #[arg(long, env = "ERRAND_ADMIN_ROLE", value_name = "ROLE")]
    pub admin_role: Option<String>,
    /// Issuer tokens must name in `iss` [default: the file's `issuer`, else none checked].
    #[arg(long, env = "ERRAND_ISSUER", value_name = "URL")]
    pub issuer: Option<String>,
    /// Audiences a token's `aud` must hold one of, comma-separated [default: the file's
    /// `audience`, else none checked].
    #[arg(
        long,
        env = "ERRAND_AUDIENCE",
        value_delimiter = ',',
        value_name = "AUD1,AUD2"
    )]
    pub audience: Option<Vec<String>>,
}

/// Where `serve` finds an identity provider's public keys.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct JwksArgs {
    /// JWKS file of an identity provider's public keys (RS256, ES256), read at start.
    #[arg(long, env = "ERRAND_JWKS_FILE", value_name = "FILE")]
    pub jwks_file: Option<PathBuf>,
    /// JWKS URL of an identity provider (for example its OpenID `jwks_uri`), fetched on first
    /// use and cached.
    #[arg(long, env = "ERRAND_JWKS_URL", value_name = "URL")]
    pub jwks_url: Option<String>,
    /// Shortest time between two fetches of the JWKS URL [default: 30s].
    #[arg(long, env = "ERRAND_JWKS_REFETCH_INTERVAL", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub jwks_refetch_interval: Option<Duration>,
}

impl Settings {
    /// How tokens are signed and read: `jwt_secrets` (the first signs), with the claim names,
    /// admin role, issuer and audience of `args` and the file.
    pub fn token_config(&self, jwt_secrets: Vec<Vec<u8>>, args: &TokenClaimArgs) -> ServerConfig {
        let file = &self.file;
        let mut config = ServerConfig {
            jwt_secrets,
            issuer: args.issuer.clone().or_else(|| file.issuer.clone()),
            audience: args
                .audience
                .clone()
                .or_else(|| file.audience.as_ref().map(|a| a.items()))
                .unwrap_or_default(),
            ..ServerConfig::default()
        };
        for (flag, from_file, field) in [
            (&args.user_claim, &file.user_claim, &mut config.user_claim),
            (
                &args.tenant_claim,
                &file.tenant_claim,
                &mut config.tenant_claim,
            ),
            (
                &args.roles_claim,
                &file.roles_claim,
                &mut config.roles_claim,
            ),
            (&args.admin_role, &file.admin_role, &mut config.admin_role),
        ] {
            if let Some(value) = flag.as_ref().or(from_file.as_ref()) {
                field.clone_from(value);
            }
        }
        config
    }

    /// [`token_config`](Self::token_config) plus the identity provider's keys of `jwks`.
    pub fn serve_config(
        &self,
        jwt_secrets: Vec<Vec<u8>>,
        claims: &TokenClaimArgs,
        jwks: &JwksArgs,
    ) -> ServerConfig {
        let file = &self.file;
        let mut config = self.token_config(jwt_secrets, claims);
        config.jwks_file = jwks.jwks_file.clone().or_else(|| file.jwks_file.clone());
        config.jwks_url = jwks.jwks_url.clone().or_else(|| file.jwks_url.clone());
        if let Some(interval) = jwks.jwks_refetch_interval.or(file.jwks_refetch_interval) {
            config.jwks_refetch_interval = interval;
        }
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::GlobalArgs;

    fn settings(file: &str) -> Settings {
        Settings {
            file: toml::from_str(file).expect("valid toml"),
            global: GlobalArgs {
                config: None,
                data_dir: None,
                log_format: None,
                log: None,
            },
        }
    }

    #[test]
    fn tokens_use_the_configured_claims_and_role() {
        let s = settings(
            "user_claim = \"oid\"\ntenant_claim = \"org\"\nroles_claim = \"realm_access.roles\"\nadmin_role = \"boss\"",
        );
        let config = s.token_config(vec![vec![7; 32]], &TokenClaimArgs::default());
        assert_eq!(
            (
                config.user_claim.as_str(),
                config.tenant_claim.as_str(),
                config.roles_claim.as_str(),
                config.admin_role.as_str()
            ),
            ("oid", "org", "realm_access.roles", "boss")
        );
        let flags = TokenClaimArgs {
            user_claim: Some("upn".into()),
            tenant_claim: Some("tid".into()),
            roles_claim: Some("groups".into()),
            admin_role: Some("root".into()),
            ..TokenClaimArgs::default()
        };
        let config = s.token_config(vec![vec![7; 32]], &flags);
        assert_eq!(
            (
                config.user_claim.as_str(),
                config.tenant_claim.as_str(),
                config.roles_claim.as_str(),
                config.admin_role.as_str()
            ),
            ("upn", "tid", "groups", "root"),
            "flags beat the file"
        );
        let defaults = settings("").token_config(vec![vec![7; 32]], &TokenClaimArgs::default());
        assert_eq!(
            (
                defaults.user_claim.as_str(),
                defaults.tenant_claim.as_str(),
                defaults.roles_claim.as_str(),
                defaults.admin_role.as_str()
            ),
            ("sub", "tenant", "roles", "admin")
        );
        assert_eq!((defaults.issuer, defaults.audience), (None, Vec::new()));
    }

    #[test]
    fn identity_provider_settings_come_from_flags_then_the_file() {
        let s = settings(
            r#"
            jwks_file = "/from/file.json"
            jwks_url = "https://file.example/keys"
            jwks_refetch_interval = "2m"
            issuer = "https://file.example/"
            audience = "a, b"
            "#,
        );
        let none = JwksArgs::default();
        let config = s.serve_config(Vec::new(), &TokenClaimArgs::default(), &none);
        assert_eq!(config.jwks_file, Some(PathBuf::from("/from/file.json")));
        assert_eq!(
            config.jwks_url.as_deref(),
            Some("https://file.example/keys")
        );
        assert_eq!(config.jwks_refetch_interval, Duration::from_secs(120));
        assert_eq!(config.issuer.as_deref(), Some("https://file.example/"));
        assert_eq!(config.audience, ["a", "b"]);
        let jwks = JwksArgs {
            jwks_file: Some("/from/flag.json".into()),
            jwks_url: Some("https://flag.example/keys".into()),
            jwks_refetch_interval: Some(Duration::from_secs(5)),
        };
        let claims = TokenClaimArgs {
            issuer: Some("https://flag.example/".into()),
            audience: Some(vec!["c".into()]),
            ..TokenClaimArgs::default()
        };
        let config = s.serve_config(Vec::new(), &claims, &jwks);
        assert_eq!(config.jwks_file, Some(PathBuf::from("/from/flag.json")));
        assert_eq!(
            config.jwks_url.as_deref(),
            Some("https://flag.example/keys")
        );
        assert_eq!(config.jwks_refetch_interval, Duration::from_secs(5));
        assert_eq!(config.issuer.as_deref(), Some("https://flag.example/"));
        assert_eq!(config.audience, ["c"]);
        let defaults = settings("").serve_config(Vec::new(), &TokenClaimArgs::default(), &none);
        assert_eq!((defaults.jwks_file, defaults.jwks_url), (None, None));
        assert_eq!(defaults.jwks_refetch_interval, Duration::from_secs(30));
    }
}
