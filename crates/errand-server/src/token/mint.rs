//! Minting HS256 tokens, and the key ids of HS256 secrets.

use super::TokenError;
use chrono::{DateTime, TimeDelta, Utc};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use std::time::Duration;

/// The algorithm of the tokens errand mints.
pub const ALGORITHM: &str = "HS256";

/// The shortest HS256 secret errand accepts: 256 bits, as RFC 7518 §3.2 requires.
pub const MIN_SECRET_LEN: usize = 32;

/// What the key id of a secret is a hash of, before the secret: it keeps the key id apart from
/// any other SHA-256 of the same secret.
const KEY_ID_LABEL: &[u8] = b"errand hs256 key id\0";

/// The key id of an HS256 secret: the first 16 hex digits of SHA-256 over a fixed label and
/// the secret. It is the `kid` header of the tokens the secret signs, and it identifies the
/// secret without revealing it (compare two processes' signing keys by their key ids).
///
/// ```
/// let id = errand_server::token::hs256_key_id(b"a secret of at least thirty-two bytes!");
/// assert_eq!(id.len(), 16);
/// assert_eq!(id, errand_server::token::hs256_key_id(b"a secret of at least thirty-two bytes!"));
/// ```
pub fn hs256_key_id(secret: &[u8]) -> String {
    let digest = Sha256::new()
        .chain_update(KEY_ID_LABEL)
        .chain_update(secret)
        .finalize();
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// Mints an HS256 token for `user`, valid for `ttl` from now, signed with `secret` and
/// carrying its [key id](hs256_key_id) as `kid`.
///
/// The claims are the user under `user_claim` (`sub` by default, `oid` is the other common
/// choice), `tenant` when given, `roles` (`["admin"]` when `admin`), `iat` and `exp`: the claim
/// names and admin role of [`ServerConfig::default`](crate::ServerConfig). A server configured
/// with other names, an issuer or an audience mints with
/// [`ServerConfig::mint_token`](crate::ServerConfig::mint_token).
///
/// ```
/// let secret = [7u8; 32];
/// let token = errand_server::mint_token(&secret, "alice", Some("acme"), false,
///     std::time::Duration::from_secs(3600), "sub").unwrap();
/// assert_eq!(token.split('.').count(), 3);
/// ```
pub fn mint_token(
    secret: &[u8],
    user: &str,
    tenant: Option<&str>,
    admin: bool,
    ttl: Duration,
    user_claim: &str,
) -> Result<String, TokenError> {
    let spec = MintSpec {
        user_claim,
        tenant_claim: "tenant",
        roles_claim: "roles",
        issuer: None,
        audience: None,
    };
    let roles: &[&str] = if admin { &["admin"] } else { &[] };
    mint_with(secret, &spec, user, tenant, roles, ttl, Utc::now())
}

/// The claims a token is minted with, besides the user's.
pub(crate) struct MintSpec<'a> {
    pub user_claim: &'a str,
    pub tenant_claim: &'a str,
    pub roles_claim: &'a str,
    /// The `iss` claim, if the server requires one.
    pub issuer: Option<&'a str>,
    /// The `aud` claim, if the server requires one.
    pub audience: Option<&'a str>,
}

/// Mints a token as of `now`.
pub(crate) fn mint_with(
    secret: &[u8],
    spec: &MintSpec<'_>,
    user: &str,
    tenant: Option<&str>,
    roles: &[&str],
    ttl: Duration,
    now: DateTime<Utc>,
) -> Result<String, TokenError> {
    check_secret(secret).map_err(TokenError::Mint)?;
    if user.is_empty() {
        return Err(TokenError::Mint("the user must not be empty".into()));
    }
    let reserved = ["exp", "iat", "nbf", "iss", "aud"];
    for name in [spec.user_claim, spec.tenant_claim, spec.roles_claim] {
        if name.is_empty() || reserved.contains(&name) {
            return Err(TokenError::Mint(format!(
                "{name:?} cannot be used as a claim name for user, tenant or roles"
            )));
        }
    }
    let exp = TimeDelta::from_std(ttl)
        .ok()
        .and_then(|ttl| now.checked_add_signed(ttl))
        .ok_or_else(|| TokenError::Mint(format!("the lifetime {ttl:?} is too long")))?;
    let mut claims = Map::new();
    claims.insert(spec.user_claim.into(), json!(user));
    if let Some(tenant) = tenant {
        claims.insert(spec.tenant_claim.into(), json!(tenant));
    }
    if !roles.is_empty() {
        claims.insert(spec.roles_claim.into(), json!(roles));
    }
    if let Some(issuer) = spec.issuer {
        claims.insert("iss".into(), json!(issuer));
    }
    if let Some(audience) = spec.audience {
        claims.insert("aud".into(), json!(audience));
    }
    claims.insert("iat".into(), json!(now.timestamp()));
    claims.insert("exp".into(), json!(exp.timestamp()));
    let header = Header {
        kid: Some(hs256_key_id(secret)),
        ..Header::new(Algorithm::HS256)
    };
    let key = EncodingKey::from_secret(secret)
        .map_err(|e| TokenError::Mint(format!("the secret cannot key HMAC-SHA256: {e}")))?;
    jsonwebtoken::encode(&header, &Value::Object(claims), &key)
        .map_err(|e| TokenError::Mint(format!("signing failed: {e}")))
}

/// Why a secret is not acceptable, if it is not.
pub(crate) fn check_secret(secret: &[u8]) -> Result<(), String> {
    if secret.len() < MIN_SECRET_LEN {
        return Err(format!(
            "an HS256 secret must be at least {MIN_SECRET_LEN} bytes (this one has {})",
            secret.len()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn key_ids_are_stable_distinct_and_hide_the_secret() {
        let id = hs256_key_id(SECRET);
        assert_eq!(id, hs256_key_id(SECRET));
        assert_eq!(id.len(), 16);
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(id, hs256_key_id(b"0123456789abcdef0123456789abcdeF"));
        let plain: String = Sha256::digest(SECRET)[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_ne!(id, plain, "the label keeps it apart from a bare SHA-256");
    }

    #[test]
    fn minted_tokens_carry_the_signing_key_id_and_the_claims() {
        let spec = MintSpec {
            user_claim: "oid",
            tenant_claim: "tid",
            roles_claim: "groups",
            issuer: Some("https://issuer.example"),
            audience: Some("api://errand"),
        };
        let now = Utc::now();
        let token = mint_with(
            SECRET,
            &spec,
            "alice",
            Some("acme"),
            &["boss"],
            Duration::from_secs(60),
            now,
        )
        .expect("mint");
        let parts: Vec<&str> = token.split('.').collect();
        let header: Value =
            serde_json::from_slice(&B64URL.decode(parts[0]).expect("b64")).expect("json");
        assert_eq!(header["alg"], "HS256");
        assert_eq!(header["kid"], hs256_key_id(SECRET));
        let claims: Value =
            serde_json::from_slice(&B64URL.decode(parts[1]).expect("b64")).expect("json");
        assert_eq!(claims["oid"], "alice");
        assert_eq!(claims["tid"], "acme");
        assert_eq!(claims["groups"], json!(["boss"]));
        assert_eq!(claims["iss"], "https://issuer.example");
        assert_eq!(claims["aud"], "api://errand");
        assert_eq!(claims["iat"], now.timestamp());
        assert_eq!(claims["exp"], now.timestamp() + 60);
    }

    #[test]
    fn minting_refuses_weak_secrets_and_bad_input() {
        let ttl = Duration::from_secs(60);
        for (secret, user, claim, ttl) in [
            (&b"short"[..], "u", "sub", ttl),
            (SECRET, "", "sub", ttl),
            (SECRET, "u", "exp", ttl),
            (SECRET, "u", "aud", ttl),
            (SECRET, "u", "", ttl),
            (SECRET, "u", "sub", Duration::MAX),
        ] {
            assert!(
                matches!(
                    mint_token(secret, user, None, false, ttl, claim),
                    Err(TokenError::Mint(_))
                ),
                "{user:?} {claim:?} {ttl:?}"
            );
        }
    }
}
