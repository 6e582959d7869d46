//! [`Verifier`]: picks a token's key, has `jsonwebtoken` check its signature, issuer and
//! audience, then checks its validity period.

use super::TokenError;
use super::jwks::{self, RemoteJwks};
use super::keys::{self, JWKS_FAMILIES, Key};
use crate::config::{ConfigError, ServerConfig};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use chrono::{DateTime, TimeDelta, Utc};
use jsonwebtoken::crypto::CryptoProvider;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Map, Value};
use std::collections::HashSet;
use std::str::FromStr;
use std::sync::Arc;

/// The longest bearer token errand reads; anything longer is refused as malformed.
const MAX_TOKEN_LEN: usize = 8 * 1024;

/// A token whose signature, issuer, audience and validity period were checked.
#[derive(Debug, Clone)]
pub(crate) struct Verified {
    /// Every claim of the token.
    pub claims: Map<String, Value>,
    /// When it expires (its `exp` claim).
    pub expires_at: DateTime<Utc>,
}

/// The server's keys and rules for tokens, built once from its [`ServerConfig`].
pub(crate) struct Verifier {
    /// The HS256 secrets' keys and the JWKS file's.
    local: Vec<Key>,
    /// The JWKS URL's keys, if one is configured.
    remote: Option<Arc<RemoteJwks>>,
    /// One validation (algorithm, issuer, audience) per accepted algorithm.
    validations: Vec<Validation>,
    issuer: Option<String>,
    audience: Vec<String>,
    leeway: TimeDelta,
}

impl Verifier {
    /// The verifier of `config`: reads the JWKS file (an error names it) and prepares the JWKS
    /// URL's client (fetched on first use).
    pub fn new(config: &ServerConfig) -> Result<Self, ConfigError> {
        ensure_crypto_provider();
        let mut local = keys::secret_keys(&config.jwt_secrets).map_err(ConfigError::Secret)?;
        if let Some(path) = &config.jwks_file {
            let bad = |reason| ConfigError::JwksFile {
                path: path.clone(),
                reason,
            };
            let document = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
            local.extend(keys::parse_jwks(&document).map_err(bad)?);
        }
        let remote = match &config.jwks_url {
            Some(url) => {
                let bad = |reason| ConfigError::JwksUrl {
                    url: url.clone(),
                    reason,
                };
                let parsed = jwks::parse_url(url).map_err(bad)?;
                let source =
                    RemoteJwks::new(parsed, config.jwks_refetch_interval, config.jwks_max_age)
                        .map_err(bad)?;
                Some(Arc::new(source))
            }
            None => None,
        };
        let mut algorithms: Vec<Algorithm> = local.iter().map(|k| k.algorithm).collect();
        if remote.is_some() {
            algorithms.extend(JWKS_FAMILIES.iter().flat_map(|f| f.algorithms()));
        }
        let mut seen = HashSet::new();
        algorithms.retain(|alg| seen.insert(*alg));
        let validations = algorithms
            .into_iter()
            .map(|alg| validation(alg, config))
            .collect();
        let from_provider = config.jwks_file.is_some() || config.jwks_url.is_some();
        if from_provider && config.audience.is_empty() {
            tracing::warn!(
                "tokens are verified with an identity provider's keys but no audience is configured: \
                 tokens it issued for any other application are accepted too; set the audience"
            );
        }
        if from_provider && config.issuer.is_none() {
            tracing::warn!(
                "tokens are verified with an identity provider's keys but no issuer is configured; set the issuer"
            );
        }
        Ok(Self {
            local,
            remote,
            validations,
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            leeway: TimeDelta::from_std(config.token_leeway).unwrap_or(TimeDelta::MAX),
        })
    }

    /// Checks `token` as of `now`: its form, algorithm and key, its signature, then its issuer,
    /// audience and validity period.
    pub async fn verify(&self, token: &str, now: DateTime<Utc>) -> Result<Verified, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Malformed(format!(
                "it is longer than {MAX_TOKEN_LEN} bytes"
            )));
        }
        let header = read_header(token)?;
        let validation = Algorithm::from_str(&header.alg)
            .ok()
            .and_then(|alg| self.validations.iter().find(|v| v.algorithms == [alg]))
            .ok_or_else(|| TokenError::Algorithm {
                alg: header.alg.chars().take(32).collect(),
                accepted: self.accepted(),
            })?;
        let alg = validation.algorithms[0];
        for key in self.candidates(header.kid.as_deref(), alg).await? {
            match jsonwebtoken::decode::<Map<String, Value>>(token, &key.decoding, validation) {
                Ok(data) => return self.check_period(data.claims, now),
                Err(e) if matches!(e.kind(), ErrorKind::InvalidSignature) => continue,
                Err(e) => return Err(self.refusal(e.into_kind())),
            }
        }
        Err(TokenError::Signature)
    }

    /// The keys to try for a token of `alg` naming `kid`: the keys with that id (looked up
    /// again after fetching the JWKS URL when none has it), or every key of `alg` when the
    /// token names none.
    async fn candidates(&self, kid: Option<&str>, alg: Algorithm) -> Result<Vec<Key>, TokenError> {
        let Some(kid) = kid else {
            let mut keys: Vec<Key> = self
                .local
                .iter()
                .filter(|k| k.algorithm == alg)
                .cloned()
                .collect();
            if let Some(remote) = &self.remote
                && JWKS_FAMILIES.contains(&alg.family())
            {
                keys.extend(
                    remote
                        .keys()
                        .await
                        .iter()
                        .filter(|k| k.algorithm == alg)
                        .cloned(),
                );
            }
            if keys.is_empty() {
                return Err(self.unavailable().unwrap_or(TokenError::UnknownKey {
                    kid: None,
                    alg: format!("{alg:?}"),
                }));
            }
            return Ok(keys);
        };
        let named = |keys: &[Key]| -> Vec<Key> {
            keys.iter()
                .filter(|k| k.kid.as_deref() == Some(kid))
                .cloned()
                .collect()
        };
        let mut keys = named(&self.local);
        if keys.is_empty()
            && let Some(remote) = &self.remote
        {
            keys = named(&remote.keys().await);
            if keys.is_empty() {
                keys = named(&remote.refetch().await);
            }
        }
        let shown: String = kid.chars().take(64).collect();
        if keys.is_empty() {
            return Err(self.unavailable().unwrap_or(TokenError::UnknownKey {
                kid: Some(shown),
                alg: format!("{alg:?}"),
            }));
        }
        if keys.iter().all(|k| k.algorithm != alg) {
            return Err(TokenError::KeyAlgorithm {
                alg: format!("{alg:?}"),
                kid: shown,
                allowed: list(keys.iter().map(|k| format!("{:?}", k.algorithm))),
            });
        }
        keys.retain(|k| k.algorithm == alg);
        Ok(keys)
    }

    /// A key was not found, and the identity provider's keys, which might hold it, could
    /// not be fetched.
    fn unavailable(&self) -> Option<TokenError> {
        self.remote
            .as_ref()
            .filter(|remote| remote.failing())
            .map(|_| TokenError::KeysUnavailable)
    }

    /// The accepted algorithms, for messages.
    fn accepted(&self) -> String {
        list(
            self.validations
                .iter()
                .map(|v| format!("{:?}", v.algorithms[0])),
        )
    }

    /// The refusal of a token whose signature may or may not have been checked (only
    /// `InvalidSignature` says it failed; the claims errors come after it passed).
    fn refusal(&self, kind: ErrorKind) -> TokenError {
        let issuer = || format!("{:?}", self.issuer.as_deref().unwrap_or_default());
        let audience = || list(self.audience.iter().map(|a| format!("{a:?}")));
        match kind {
            ErrorKind::InvalidSignature => TokenError::Signature,
            ErrorKind::InvalidToken => TokenError::Malformed(
                "its header asks for something errand does not support (\"b64\")".into(),
            ),
            ErrorKind::Base64(_) => {
                TokenError::Malformed("its claims or signature are not base64url".into())
            }
            ErrorKind::Json(_) | ErrorKind::Utf8(_) => TokenError::Malformed(
                "its header or claims are not the JSON objects a JWT holds".into(),
            ),
            ErrorKind::MissingRequiredClaim(c) if c == "iss" => TokenError::Issuer(format!(
                "it has no \"iss\" claim; this server requires {}",
                issuer()
            )),
            ErrorKind::InvalidIssuer => {
                TokenError::Issuer(format!("its \"iss\" claim is not {}", issuer()))
            }
            ErrorKind::InvalidClaimFormat(c) if c == "iss" => {
                TokenError::Issuer("its \"iss\" claim is not a string".into())
            }
            ErrorKind::MissingRequiredClaim(c) if c == "aud" => TokenError::Audience(format!(
                "it has no \"aud\" claim; this server requires one of {}",
                audience()
            )),
            ErrorKind::InvalidAudience => {
                TokenError::Audience(format!("its \"aud\" claim holds none of {}", audience()))
            }
            ErrorKind::InvalidClaimFormat(c) if c == "aud" => TokenError::Audience(
                "its \"aud\" claim is not a string or an array of strings".into(),
            ),
            ErrorKind::MissingRequiredClaim(c) | ErrorKind::InvalidClaimFormat(c) => {
                TokenError::Claims(format!("the {c:?} claim is missing or malformed"))
            }
            other => {
                tracing::warn!(error = ?other, "a configured key could not verify a token");
                TokenError::Signature
            }
        }
    }

    /// Checks `exp` (required) and `nbf` (when present) against `now`, with the leeway.
    fn check_period(
        &self,
        claims: Map<String, Value>,
        now: DateTime<Utc>,
    ) -> Result<Verified, TokenError> {
        let expires_at = match claims.get("exp") {
            Some(v) => numeric_date(v, "exp")?,
            None => {
                return Err(TokenError::Claims(
                    "the token has no \"exp\" claim; errand only accepts tokens that expire".into(),
                ));
            }
        };
        // A leeway too large to subtract or add accepts every time.
        if now
            .checked_sub_signed(self.leeway)
            .is_some_and(|earliest| earliest >= expires_at)
        {
            return Err(TokenError::Expired(expires_at));
        }
        if let Some(v) = claims.get("nbf") {
            let not_before = numeric_date(v, "nbf")?;
            if now
                .checked_add_signed(self.leeway)
                .is_some_and(|latest| latest < not_before)
            {
                return Err(TokenError::NotYetValid(not_before));
            }
        }
        Ok(Verified { claims, expires_at })
    }
}

/// The `jsonwebtoken` validation of tokens of `alg`: the signature, `iss` and `aud` when
/// configured. The validity period is checked by [`Verifier::check_period`], which reports the
/// times and takes the clock as an argument.
fn validation(alg: Algorithm, config: &ServerConfig) -> Validation {
    let mut validation = Validation::new(alg);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_nbf = false;
    if let Some(issuer) = &config.issuer {
        validation.set_issuer(&[issuer]);
        validation.required_spec_claims.insert("iss".into());
    }
    if config.audience.is_empty() {
        validation.validate_aud = false;
    } else {
        validation.set_audience(&config.audience);
        validation.required_spec_claims.insert("aud".into());
    }
    validation
}

/// `jsonwebtoken` panics without a crypto provider, which it picks by itself only when exactly
/// one of its backends is compiled in; another crate of the build may enable the second.
fn ensure_crypto_provider() {
    if CryptoProvider::try_get_default().is_none() {
        // Fails only when another thread installed one meanwhile, which is as good.
        let _ =
            CryptoProvider::install_default(&jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER);
    }
}

/// What errand reads from a token's header before choosing a key.
struct TokenHeader {
    alg: String,
    kid: Option<String>,
}

/// The header of `token`, after checking that the token has three segments.
fn read_header(token: &str) -> Result<TokenHeader, TokenError> {
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed(
            "expected three dot-separated segments (header.claims.signature)".into(),
        ));
    };
    let malformed = |why: &str| TokenError::Malformed(why.into());
    let bytes = B64URL
        .decode(header)
        .map_err(|_| malformed("the header is not base64url"))?;
    let Ok(Value::Object(header)) = serde_json::from_slice(&bytes) else {
        return Err(malformed("the header is not a JSON object"));
    };
    if header.contains_key("crit") {
        return Err(malformed(
            "the header lists critical extensions (\"crit\"), which errand does not support",
        ));
    }
    let alg = match header.get("alg") {
        Some(Value::String(alg)) => alg.clone(),
        _ => return Err(malformed("the header has no string \"alg\"")),
    };
    let kid = match header.get("kid") {
        None | Some(Value::Null) => None,
        Some(Value::String(kid)) => Some(kid.clone()),
        Some(_) => return Err(malformed("the header's \"kid\" is not a string")),
    };
    Ok(TokenHeader { alg, kid })
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

/// `items`, comma-separated.
fn list(items: impl Iterator<Item = String>) -> String {
    items.collect::<Vec<_>>().join(", ")
}
