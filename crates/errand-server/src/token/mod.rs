//! Bearer tokens: JSON Web Tokens (RFC 7519), verified on every authenticated request with
//! the `jsonwebtoken` crate.
//!
//! A server trusts two kinds of keys, in any mix:
//! - **HS256 secrets** ([`ServerConfig::jwt_secrets`](crate::ServerConfig::jwt_secrets)), each
//!   with a key id derived from it ([`hs256_key_id`]). The first one signs the tokens errand
//!   mints ([`mint_token`], `errand token`), which carry its key id as their `kid` header; the
//!   others still verify, so a secret is rotated by putting the new one first and dropping the
//!   old one once its tokens have expired.
//! - **An identity provider's public keys**, as a JWKS (RFC 7517) read from a file and/or
//!   fetched from a URL: RSA keys verify RS256 (or the RS384, RS512, PS256, PS384, PS512 their
//!   `alg` names), EC P-256 keys ES256, EC P-384 keys ES384. Keys whose `use` is not `sig` are
//!   ignored.
//!
//! A token's `kid` header picks its key, and the key decides the algorithm: a token whose `alg`
//! is not the one its key allows is refused, so an HS256 token "signed" with an RSA public key
//! never verifies. A token without `kid` is tried against every key of its algorithm. A `kid`
//! no key has makes the server fetch the JWKS URL again (at most once per
//! [`jwks_refetch_interval`](crate::ServerConfig::jwks_refetch_interval)), then refuse.
//!
//! The signature is checked before any claim is looked at. Then `exp` is required and checked
//! (with the configured leeway, as is `nbf`), and, when configured, `iss` must be the issuer and
//! `aud` must hold one of the audiences. Each refusal has its own [`TokenError`] and `code`.

mod jwks;
mod keys;
mod mint;
#[cfg(test)]
mod tests;
mod verify;

pub(crate) use jwks::parse_url as parse_jwks_url;
pub use mint::{ALGORITHM, MIN_SECRET_LEN, hs256_key_id, mint_token};
pub(crate) use mint::{MintSpec, check_secret, mint_with};
pub(crate) use verify::Verifier;

use chrono::{DateTime, Utc};

/// Why a token was refused, or could not be minted. Each refusal has its own message, which
/// the API returns with a 401 and the stable [`code`](TokenError::code).
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum TokenError {
    /// The token is not three base64url segments holding a JSON header and JSON claims, is
    /// too long, or asks for header extensions (`crit`) errand does not support.
    #[error("the bearer token is not a well-formed JWT: {0}")]
    Malformed(String),
    /// The header names an algorithm this server does not accept (`none` included).
    #[error("the token is signed with algorithm {alg:?}; this server accepts only {accepted}")]
    Algorithm {
        /// The token's `alg`, cut to 32 characters.
        alg: String,
        /// The algorithms this server accepts, comma-separated.
        accepted: String,
    },
    /// The token's `alg` is not the algorithm of the key its `kid` names.
    #[error(
        "the token is signed with algorithm {alg:?}, but its key {kid:?} is for {allowed} only"
    )]
    KeyAlgorithm {
        /// The token's `alg`.
        alg: String,
        /// The token's `kid`, cut to 64 characters.
        kid: String,
        /// The algorithms the key allows, comma-separated.
        allowed: String,
    },
    /// No key of this server verifies the token: its `kid` is unknown (even after fetching
    /// the identity provider's keys again, when that was allowed), or it has no `kid` and no
    /// key of its algorithm exists.
    #[error("{}", unknown_key_message(.kid.as_deref(), .alg))]
    UnknownKey {
        /// The token's `kid`, cut to 64 characters, if it has one.
        kid: Option<String>,
        /// The token's `alg`.
        alg: String,
    },
    /// The signature does not match the key.
    #[error(
        "the token's signature is invalid: it was signed with another key or altered after signing"
    )]
    Signature,
    /// The `exp` claim is in the past.
    #[error("the token expired at {0}")]
    Expired(DateTime<Utc>),
    /// The `nbf` claim is in the future.
    #[error("the token is not valid before {0}")]
    NotYetValid(DateTime<Utc>),
    /// The `iss` claim is missing or is not the configured issuer.
    #[error("the token's issuer is not accepted: {0}")]
    Issuer(String),
    /// The `aud` claim is missing or holds none of the configured audiences.
    #[error("the token's audience is not accepted: {0}")]
    Audience(String),
    /// A claim errand needs is missing or has the wrong type.
    #[error("the token's claims are not usable: {0}")]
    Claims(String),
    /// Minting failed: the secret, user or lifetime is not acceptable.
    #[error("cannot mint a token: {0}")]
    Mint(String),
    /// No cached key verifies the token and the identity provider's keys could not be
    /// fetched: whether the token is good cannot be told now. The API answers 503, not 401,
    /// so a client retries instead of dropping a valid token.
    #[error(
        "cannot verify the token now: no cached key fits it and the identity provider's keys cannot be fetched; try again later"
    )]
    KeysUnavailable,
}

impl TokenError {
    /// A stable machine-readable code, used as the API error's `code`.
    pub fn code(&self) -> &'static str {
        match self {
            TokenError::Malformed(_) => "malformed_token",
            TokenError::Algorithm { .. } => "unsupported_algorithm",
            TokenError::KeyAlgorithm { .. } => "algorithm_mismatch",
            TokenError::UnknownKey { .. } => "unknown_key",
            TokenError::Signature => "invalid_signature",
            TokenError::Expired(_) => "token_expired",
            TokenError::NotYetValid(_) => "token_not_yet_valid",
            TokenError::Issuer(_) => "invalid_issuer",
            TokenError::Audience(_) => "invalid_audience",
            TokenError::Claims(_) => "invalid_claims",
            TokenError::Mint(_) => "mint_failed",
            TokenError::KeysUnavailable => "identity_provider_unavailable",
        }
    }
}

fn unknown_key_message(kid: Option<&str>, alg: &str) -> String {
    match kid {
        Some(kid) => {
            format!("the token is signed with key {kid:?}, which this server does not have")
        }
        None => format!(
            "the token names no key (no \"kid\" header) and this server has no {alg} key to try"
        ),
    }
}
