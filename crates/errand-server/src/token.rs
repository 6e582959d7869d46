//! Bearer tokens: HS256 JSON Web Tokens (RFC 7519), minted by `errand token` and verified on
//! every authenticated request.
//!
//! errand accepts exactly one algorithm, HS256, and says precisely why it refuses a token:
//! malformed, another algorithm (`none` included), a bad signature, expired, not yet valid, or
//! claims it cannot use. The signature is checked (in constant time, by `hmac`) before any claim
//! is looked at, so nothing about an unsigned token's claims leaks into an answer.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use chrono::{DateTime, TimeDelta, Utc};
use hmac::{Hmac, Mac};
use serde_json::{Map, Value, json};
use sha2::Sha256;
use std::time::Duration;

type HmacSha256 = Hmac<Sha256>;

/// The one algorithm errand signs and accepts.
pub const ALGORITHM: &str = "HS256";

/// The shortest HS256 secret errand accepts: 256 bits, as RFC 7518 §3.2 requires.
pub const MIN_SECRET_LEN: usize = 32;

/// The longest bearer token errand reads; anything longer is refused as malformed.
const MAX_TOKEN_LEN: usize = 8 * 1024;

/// Why a token was refused, or could not be minted. Each refusal has its own message, which
/// the API returns with a 401.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum TokenError {
    /// The token is not three base64url segments holding a JSON header and JSON claims.
    #[error("the bearer token is not a well-formed JWT: {0}")]
    Malformed(String),
    /// The header names another algorithm (`none`, `HS512`, `RS256`...).
    #[error("the token is signed with algorithm {0:?}; errand accepts HS256 only")]
    Algorithm(String),
    /// The signature does not match the server's secret.
    #[error(
        "the token's signature is invalid: it was signed with another secret or altered after signing"
    )]
    Signature,
    /// The `exp` claim is in the past.
    #[error("the token expired at {0}")]
    Expired(DateTime<Utc>),
    /// The `nbf` claim is in the future.
    #[error("the token is not valid before {0}")]
    NotYetValid(DateTime<Utc>),
    /// A claim errand needs is missing or has the wrong type.
    #[error("the token's claims are not usable: {0}")]
    Claims(String),
    /// Minting failed: the secret, user or lifetime is not acceptable.
    #[error("cannot mint a token: {0}")]
    Mint(String),
}

impl TokenError {
    /// A stable machine-readable code, used as the API error's `code`.
    pub fn code(&self) -> &'static str {
        match self {
            TokenError::Malformed(_) => "malformed_token",
            TokenError::Algorithm(_) => "unsupported_algorithm",
            TokenError::Signature => "invalid_signature",
            TokenError::Expired(_) => "token_expired",
            TokenError::NotYetValid(_) => "token_not_yet_valid",
            TokenError::Claims(_) => "invalid_claims",
            TokenError::Mint(_) => "mint_failed",
        }
    }
}

/// A token whose signature and validity period were checked.
#[derive(Debug, Clone)]
pub(crate) struct Verified {
    /// Every claim of the token.
    pub claims: Map<String, Value>,
    /// When it expires (its `exp` claim).
    pub expires_at: DateTime<Utc>,
}

/// Mints an HS256 token for `user`, valid for `ttl` from now.
///
/// The claims are the user under `user_claim` (`sub` by default, `oid` is the other common
/// choice), `tenant` when given, `roles` (`["admin"]` when `admin`), `iat` and `exp`: the claim
/// names and admin role of [`ServerConfig::default`](crate::ServerConfig). A server configured
/// with other names mints with [`ServerConfig::mint_token`](crate::ServerConfig::mint_token).
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
        admin_role: "admin",
    };
    mint_with(secret, &spec, user, tenant, admin, ttl, Utc::now())
}

/// The claim names a token is minted with.
pub(crate) struct MintSpec<'a> {
    pub user_claim: &'a str,
    pub tenant_claim: &'a str,
    pub roles_claim: &'a str,
    pub admin_role: &'a str,
}

/// Mints a token as of `now`.
pub(crate) fn mint_with(
    secret: &[u8],
    spec: &MintSpec<'_>,
    user: &str,
    tenant: Option<&str>,
    admin: bool,
    ttl: Duration,
    now: DateTime<Utc>,
) -> Result<String, TokenError> {
    check_secret(secret).map_err(TokenError::Mint)?;
    if user.is_empty() {
        return Err(TokenError::Mint("the user must not be empty".into()));
    }
    let reserved = ["exp", "iat", "nbf"];
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
    if admin {
        claims.insert(spec.roles_claim.into(), json!([spec.admin_role]));
    }
    claims.insert("iat".into(), json!(now.timestamp()));
    claims.insert("exp".into(), json!(exp.timestamp()));
    let header = B64URL.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = B64URL.encode(Value::Object(claims).to_string());
    let signing_input = format!("{header}.{payload}");
    let mac = mac(secret, &signing_input)
        .ok_or_else(|| TokenError::Mint("the secret cannot key HMAC-SHA256".into()))?;
    let signature = B64URL.encode(mac.finalize().into_bytes());
    Ok(format!("{signing_input}.{signature}"))
}

/// Why a secret is not acceptable, if it is not.
pub(crate) fn check_secret(secret: &[u8]) -> Result<(), String> {
    if secret.len() < MIN_SECRET_LEN {
        return Err(format!(
            "the HS256 secret must be at least {MIN_SECRET_LEN} bytes (it has {})",
            secret.len()
        ));
    }
    Ok(())
}

/// The HMAC of `signing_input` under `secret`, ready to finalize or verify. HMAC takes keys of
/// any length, so `None` is not expected; callers still treat it as a refusal.
fn mac(secret: &[u8], signing_input: &str) -> Option<HmacSha256> {
    let mut mac = <HmacSha256 as Mac>::new_from_slice(secret).ok()?;
    mac.update(signing_input.as_bytes());
    Some(mac)
}

/// Checks `token`'s algorithm, signature and validity period as of `now`, allowing `leeway`
/// of clock skew.
pub(crate) fn verify(
    secret: &[u8],
    token: &str,
    leeway: Duration,
    now: DateTime<Utc>,
) -> Result<Verified, TokenError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::Malformed(format!(
            "it is longer than {MAX_TOKEN_LEN} bytes"
        )));
    }
    let mut parts = token.split('.');
    let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed(
            "expected three dot-separated segments (header.claims.signature)".into(),
        ));
    };
    let header = decode_object(header_b64, "header")?;
    match header.get("alg") {
        Some(Value::String(alg)) if alg == ALGORITHM => {}
        Some(Value::String(alg)) => {
            return Err(TokenError::Algorithm(alg.chars().take(32).collect()));
        }
        _ => {
            return Err(TokenError::Malformed(
                "the header has no string \"alg\"".into(),
            ));
        }
    }
    if header.contains_key("crit") {
        return Err(TokenError::Malformed(
            "the header lists critical extensions (\"crit\"), which errand does not support".into(),
        ));
    }
    let signature = B64URL
        .decode(signature_b64)
        .map_err(|_| TokenError::Malformed("the signature is not base64url".into()))?;
    let signing_input = &token[..header_b64.len() + 1 + payload_b64.len()];
    mac(secret, signing_input)
        .ok_or(TokenError::Signature)?
        .verify_slice(&signature)
        .map_err(|_| TokenError::Signature)?;
    let claims = decode_object(payload_b64, "claims")?;
    let leeway = TimeDelta::from_std(leeway).unwrap_or(TimeDelta::zero());
    let expires_at = match claims.get("exp") {
        Some(v) => numeric_date(v, "exp")?,
        None => {
            return Err(TokenError::Claims(
                "the token has no \"exp\" claim; errand only accepts tokens that expire".into(),
            ));
        }
    };
    if now - leeway >= expires_at {
        return Err(TokenError::Expired(expires_at));
    }
    if let Some(v) = claims.get("nbf") {
        let not_before = numeric_date(v, "nbf")?;
        if now + leeway < not_before {
            return Err(TokenError::NotYetValid(not_before));
        }
    }
    Ok(Verified { claims, expires_at })
}

fn decode_object(segment: &str, what: &str) -> Result<Map<String, Value>, TokenError> {
    let bytes = B64URL
        .decode(segment)
        .map_err(|_| TokenError::Malformed(format!("the {what} is not base64url")))?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(TokenError::Malformed(format!(
            "the {what} is not a JSON object"
        ))),
    }
}

/// A NumericDate claim (seconds since the epoch, possibly fractional).
fn numeric_date(value: &Value, name: &str) -> Result<DateTime<Utc>, TokenError> {
    let bad = || TokenError::Claims(format!("the {name:?} claim is not a valid NumericDate"));
    let seconds = value.as_f64().filter(|s| s.is_finite()).ok_or_else(bad)?;
    if seconds.abs() > 1e12 {
        return Err(bad());
    }
    let millis = (seconds * 1000.0).floor() as i64;
    DateTime::from_timestamp_millis(millis).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
    const LEEWAY: Duration = Duration::from_secs(30);

    fn sign(header: &str, claims: &Value, secret: &[u8]) -> String {
        let input = format!(
            "{}.{}",
            B64URL.encode(header),
            B64URL.encode(claims.to_string())
        );
        let sig = B64URL.encode(mac(secret, &input).expect("hmac").finalize().into_bytes());
        format!("{input}.{sig}")
    }

    fn later(secs: i64) -> i64 {
        Utc::now().timestamp() + secs
    }

    #[test]
    fn minted_token_verifies_with_its_claims() {
        let token = mint_token(
            SECRET,
            "alice",
            Some("acme"),
            true,
            Duration::from_secs(60),
            "oid",
        )
        .expect("mint");
        let v = verify(SECRET, &token, LEEWAY, Utc::now()).expect("verify");
        assert_eq!(v.claims["oid"], "alice");
        assert_eq!(v.claims["tenant"], "acme");
        assert_eq!(v.claims["roles"], json!(["admin"]));
        assert!(v.claims["iat"].is_i64());
        let in_a_minute = Utc::now() + TimeDelta::seconds(60);
        assert!((v.expires_at - in_a_minute).num_seconds().abs() <= 1);
    }

    #[test]
    fn each_refusal_is_distinct() {
        let claims = json!({"sub": "u", "exp": later(60)});
        let good = sign(r#"{"alg":"HS256"}"#, &claims, SECRET);
        assert!(verify(SECRET, &good, LEEWAY, Utc::now()).is_ok());

        let other_secret = sign(
            r#"{"alg":"HS256"}"#,
            &claims,
            b"another-secret-another-secret-xx",
        );
        assert_eq!(
            verify(SECRET, &other_secret, LEEWAY, Utc::now()).unwrap_err(),
            TokenError::Signature
        );

        let hs512 = sign(r#"{"alg":"HS512"}"#, &claims, SECRET);
        assert_eq!(
            verify(SECRET, &hs512, LEEWAY, Utc::now()).unwrap_err(),
            TokenError::Algorithm("HS512".into())
        );

        let none = format!(
            "{}.{}.",
            B64URL.encode(r#"{"alg":"none"}"#),
            B64URL.encode(claims.to_string())
        );
        assert_eq!(
            verify(SECRET, &none, LEEWAY, Utc::now()).unwrap_err(),
            TokenError::Algorithm("none".into())
        );

        let expired = sign(
            r#"{"alg":"HS256"}"#,
            &json!({"sub": "u", "exp": later(-120)}),
            SECRET,
        );
        assert!(matches!(
            verify(SECRET, &expired, LEEWAY, Utc::now()).unwrap_err(),
            TokenError::Expired(_)
        ));

        let early = sign(
            r#"{"alg":"HS256"}"#,
            &json!({"sub": "u", "exp": later(600), "nbf": later(300)}),
            SECRET,
        );
        assert!(matches!(
            verify(SECRET, &early, LEEWAY, Utc::now()).unwrap_err(),
            TokenError::NotYetValid(_)
        ));

        let no_exp = sign(r#"{"alg":"HS256"}"#, &json!({"sub": "u"}), SECRET);
        assert!(matches!(
            verify(SECRET, &no_exp, LEEWAY, Utc::now()).unwrap_err(),
            TokenError::Claims(_)
        ));

        for junk in [
            "",
            "a.b",
            "a.b.c.d",
            "!!!.e30.e30",
            "e30.!!!.e30",
            "W10.e30.e30",
        ] {
            assert!(
                matches!(
                    verify(SECRET, junk, LEEWAY, Utc::now()).unwrap_err(),
                    TokenError::Malformed(_)
                ),
                "{junk}"
            );
        }
    }

    #[test]
    fn tampered_claims_fail_the_signature() {
        let token =
            mint_token(SECRET, "alice", None, false, Duration::from_secs(60), "sub").expect("mint");
        let parts: Vec<&str> = token.split('.').collect();
        let forged = B64URL.encode(json!({"sub": "mallory", "exp": later(60)}).to_string());
        let tampered = format!("{}.{}.{}", parts[0], forged, parts[2]);
        assert_eq!(
            verify(SECRET, &tampered, LEEWAY, Utc::now()).unwrap_err(),
            TokenError::Signature
        );
    }

    #[test]
    fn leeway_allows_small_clock_skew() {
        let token = sign(
            r#"{"alg":"HS256"}"#,
            &json!({"sub": "u", "exp": later(-10)}),
            SECRET,
        );
        assert!(verify(SECRET, &token, LEEWAY, Utc::now()).is_ok());
        assert!(verify(SECRET, &token, Duration::ZERO, Utc::now()).is_err());
    }

    #[test]
    fn minting_refuses_weak_secrets_and_bad_input() {
        let ttl = Duration::from_secs(60);
        assert!(matches!(
            mint_token(b"short", "u", None, false, ttl, "sub"),
            Err(TokenError::Mint(_))
        ));
        assert!(matches!(
            mint_token(SECRET, "", None, false, ttl, "sub"),
            Err(TokenError::Mint(_))
        ));
        assert!(matches!(
            mint_token(SECRET, "u", None, false, ttl, "exp"),
            Err(TokenError::Mint(_))
        ));
        assert!(matches!(
            mint_token(SECRET, "u", None, false, Duration::MAX, "sub"),
            Err(TokenError::Mint(_))
        ));
    }
}
