//! [`Context`]: who the work is for and why, captured once at submission and restored for
//! every execution.
//!
//! A context is immutable and cheap to clone (an `Arc` inside). Submitting or spawning work
//! copies the context *at that moment*; nothing the caller does afterwards can reach the task.
//! Inside a running task or request, [`Context::current`] returns it (a tokio task-local).

use crate::seal::Secret;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::future::Future;
use std::sync::Arc;

tokio::task_local! {
    static CURRENT: Option<Context>;
}

/// Header names that are never copied into a context, whatever an allow-list says.
pub const NEVER_COPIED_HEADERS: &[&str] = &[
    "authorization",
    "cookie",
    "set-cookie",
    "proxy-authorization",
];

/// Who and why: the identity and correlation data that follow a piece of work.
///
/// ```
/// use errand_core::Context;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let ctx = Context::builder().user_id("alice").tenant("acme").request_id("req-1").build();
/// let seen = ctx.clone().scope(async { Context::current().and_then(|c| c.user_id().map(String::from)) }).await;
/// assert_eq!(seen.as_deref(), Some("alice"));
/// assert!(Context::current().is_none());
/// # }
/// ```
#[derive(Clone)]
pub struct Context {
    pub(crate) inner: Arc<Inner>,
}

/// The context's fields. Serialized only as the plaintext of a sealed document (see
/// [`Context::seal`]), with short field names: every stored task carries one.
#[derive(Clone, Default, Serialize, Deserialize)]
pub(crate) struct Inner {
    #[serde(rename = "u", default, skip_serializing_if = "Option::is_none")]
    user_id: Option<String>,
    #[serde(rename = "t", default, skip_serializing_if = "Option::is_none")]
    tenant: Option<String>,
    #[serde(rename = "ro", default, skip_serializing_if = "Vec::is_empty")]
    roles: Vec<String>,
    #[serde(rename = "rq", default, skip_serializing_if = "Option::is_none")]
    request_id: Option<String>,
    #[serde(rename = "co", default, skip_serializing_if = "Option::is_none")]
    correlation_id: Option<String>,
    #[serde(rename = "tp", default, skip_serializing_if = "Option::is_none")]
    traceparent: Option<String>,
    #[serde(rename = "h", default, skip_serializing_if = "BTreeMap::is_empty")]
    headers: BTreeMap<String, String>,
    #[serde(rename = "cr", default, skip_serializing_if = "Option::is_none")]
    credential: Option<Credential>,
    #[serde(rename = "x", default, skip_serializing_if = "BTreeMap::is_empty")]
    extra: BTreeMap<String, serde_json::Value>,
}

/// The credential a context carries.
#[derive(Clone)]
pub(crate) enum Credential {
    /// Plaintext, in the submitting process or inside the running task.
    Open {
        secret: Secret,
        expires_at: Option<DateTime<Utc>>,
    },
    /// Opened by a worker after its expiry: the secret was discarded.
    Expired { expired_at: DateTime<Utc> },
}

/// The credential inside a sealed document's plaintext (never serialized anywhere else: the
/// only serialization of a context is [`Context::seal`], which encrypts it whole).
#[derive(Serialize)]
struct CredentialOut<'a> {
    #[serde(rename = "s", skip_serializing_if = "Option::is_none")]
    secret: Option<&'a str>,
    #[serde(rename = "x", skip_serializing_if = "Option::is_none")]
    expires_at: Option<DateTime<Utc>>,
}

#[derive(Deserialize)]
struct CredentialIn {
    #[serde(rename = "s", default)]
    secret: Option<String>,
    #[serde(rename = "x", default)]
    expires_at: Option<DateTime<Utc>>,
}

impl Serialize for Credential {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Credential::Open { secret, expires_at } => CredentialOut {
                secret: Some(secret.expose()),
                expires_at: *expires_at,
            },
            Credential::Expired { expired_at } => CredentialOut {
                secret: None,
                expires_at: Some(*expired_at),
            },
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Credential {
    /// An expired credential comes back [`Credential::Expired`], its secret discarded.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let doc = CredentialIn::deserialize(deserializer)?;
        // Wrapped at once, so a discarded secret is zeroed too.
        let secret = doc.secret.map(Secret::new);
        Ok(match (secret, doc.expires_at) {
            (Some(secret), expires_at) if expires_at.is_none_or(|at| at > Utc::now()) => {
                Credential::Open { secret, expires_at }
            }
            (_, expires_at) => Credential::Expired {
                expired_at: expires_at.unwrap_or(DateTime::<Utc>::MIN_UTC),
            },
        })
    }
}

/// Why [`Context::credential`] has nothing to hand out.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum CredentialError {
    /// The context carries no credential.
    #[error("the context carries no credential")]
    Missing,
    /// The credential expired; it is not handed to tasks.
    #[error("the credential expired at {0}")]
    Expired(DateTime<Utc>),
}

impl Context {
    /// Starts building a context.
    pub fn builder() -> ContextBuilder {
        ContextBuilder::default()
    }

    /// The context of the running task or request, if there is one.
    pub fn current() -> Option<Context> {
        CURRENT.try_with(|c| c.clone()).ok().flatten()
    }

    /// Runs `fut` with this context as [`Context::current`].
    pub async fn scope<F: Future>(self, fut: F) -> F::Output {
        CURRENT.scope(Some(self), fut).await
    }

    /// Runs `fut` with `ctx` (or explicitly no context) as [`Context::current`]; an outer
    /// context never shows through.
    pub async fn scope_opt<F: Future>(ctx: Option<Context>, fut: F) -> F::Output {
        CURRENT.scope(ctx, fut).await
    }

    /// Runs the closure with this context as [`Context::current`], for synchronous code.
    pub fn sync_scope<R>(self, f: impl FnOnce() -> R) -> R {
        CURRENT.sync_scope(Some(self), f)
    }

    /// A builder pre-filled with this context's values, to derive a new context.
    pub fn to_builder(&self) -> ContextBuilder {
        ContextBuilder {
            inner: (*self.inner).clone(),
        }
    }

    /// The user the work is for.
    pub fn user_id(&self) -> Option<&str> {
        self.inner.user_id.as_deref()
    }
    /// The user's tenant.
    pub fn tenant(&self) -> Option<&str> {
        self.inner.tenant.as_deref()
    }
    /// The user's roles.
    pub fn roles(&self) -> &[String] {
        &self.inner.roles
    }
    /// Whether the user has `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.inner.roles.iter().any(|r| r == role)
    }
    /// The id of the request that submitted the work.
    pub fn request_id(&self) -> Option<&str> {
        self.inner.request_id.as_deref()
    }
    /// The id correlating this work with everything else done for the same cause.
    pub fn correlation_id(&self) -> Option<&str> {
        self.inner.correlation_id.as_deref()
    }
    /// The W3C `traceparent` of the submitting request.
    pub fn traceparent(&self) -> Option<&str> {
        self.inner.traceparent.as_deref()
    }
    /// The trace id of the `traceparent` (its 32 lowercase hex digits).
    pub fn trace_id(&self) -> Option<&str> {
        self.traceparent()?.split('-').nth(1)
    }
    /// Allow-listed request headers (lower-case names).
    pub fn headers(&self) -> &BTreeMap<String, String> {
        &self.inner.headers
    }
    /// One allow-listed header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.inner
            .headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
    /// Free-form extra fields.
    pub fn extra(&self) -> &BTreeMap<String, serde_json::Value> {
        &self.inner.extra
    }

    /// The credential, if the context has one that is open and not expired.
    ///
    /// Inside a running task the worker has already opened it; an expired credential is never
    /// handed out.
    pub fn credential(&self) -> Result<&Secret, CredentialError> {
        match &self.inner.credential {
            None => Err(CredentialError::Missing),
            Some(Credential::Expired { expired_at }) => Err(CredentialError::Expired(*expired_at)),
            Some(Credential::Open { secret, expires_at }) => match expires_at {
                Some(at) if *at <= Utc::now() => Err(CredentialError::Expired(*at)),
                _ => Ok(secret),
            },
        }
    }

    /// When the credential stops being handed out: `None` without a credential, or for one
    /// that never expires.
    pub fn credential_expires_at(&self) -> Option<DateTime<Utc>> {
        match &self.inner.credential {
            Some(Credential::Open { expires_at, .. }) => *expires_at,
            Some(Credential::Expired { expired_at }) => Some(*expired_at),
            None => None,
        }
    }

    /// Whether the context carries a credential (in any state).
    pub fn has_credential(&self) -> bool {
        self.inner.credential.is_some()
    }

    /// The identity fields, without anything secret: for listings and logs.
    pub fn summary(&self) -> ContextSummary {
        ContextSummary {
            user_id: self.inner.user_id.clone(),
            tenant: self.inner.tenant.clone(),
            request_id: self.inner.request_id.clone(),
            correlation_id: self.inner.correlation_id.clone(),
        }
    }
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.inner;
        let credential = i.credential.as_ref().map(|c| match c {
            Credential::Open { .. } => "<redacted>",
            Credential::Expired { .. } => "<expired>",
        });
        f.debug_struct("Context")
            .field("user_id", &i.user_id)
            .field("tenant", &i.tenant)
            .field("roles", &i.roles)
            .field("request_id", &i.request_id)
            .field("correlation_id", &i.correlation_id)
            .field("traceparent", &i.traceparent)
            .field("headers", &i.headers)
            .field("credential", &credential)
            .field("extra", &i.extra)
            .finish()
    }
}

/// The identity fields of a context, safe to show anywhere.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContextSummary {
    /// See [`Context::user_id`].
    pub user_id: Option<String>,
    /// See [`Context::tenant`].
    pub tenant: Option<String>,
    /// See [`Context::request_id`].
    pub request_id: Option<String>,
    /// See [`Context::correlation_id`].
    pub correlation_id: Option<String>,
}

/// Builds a [`Context`]. Denied headers and malformed `traceparent` values are dropped.
#[derive(Default)]
pub struct ContextBuilder {
    inner: Inner,
}

impl ContextBuilder {
    /// Sets the user.
    pub fn user_id(mut self, v: impl Into<String>) -> Self {
        self.inner.user_id = Some(v.into());
        self
    }
    /// Sets the tenant.
    pub fn tenant(mut self, v: impl Into<String>) -> Self {
        self.inner.tenant = Some(v.into());
        self
    }
    /// Adds a role.
    pub fn role(mut self, v: impl Into<String>) -> Self {
        let v = v.into();
        if !self.inner.roles.contains(&v) {
            self.inner.roles.push(v);
        }
        self
    }
    /// Sets the request id.
    pub fn request_id(mut self, v: impl Into<String>) -> Self {
        self.inner.request_id = Some(v.into());
        self
    }
    /// Sets the correlation id.
    pub fn correlation_id(mut self, v: impl Into<String>) -> Self {
        self.inner.correlation_id = Some(v.into());
        self
    }
    /// Sets the W3C `traceparent`; a value not of the form `vv-<32 hex>-<16 hex>-<2 hex>` is
    /// ignored.
    pub fn traceparent(mut self, v: impl Into<String>) -> Self {
        let v = v.into();
        if is_valid_traceparent(&v) {
            self.inner.traceparent = Some(v.to_ascii_lowercase());
        }
        self
    }
    /// Adds a header. [`NEVER_COPIED_HEADERS`] are silently refused.
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        let name = name.to_ascii_lowercase();
        if !NEVER_COPIED_HEADERS.contains(&name.as_str()) {
            self.inner.headers.insert(name, value.into());
        }
        self
    }
    /// Attaches a credential; it will be sealed before it is stored, and not handed to the task
    /// after `expires_at`.
    pub fn credential(mut self, secret: Secret, expires_at: Option<DateTime<Utc>>) -> Self {
        self.inner.credential = Some(Credential::Open { secret, expires_at });
        self
    }
    /// Removes the credential.
    pub fn without_credential(mut self) -> Self {
        self.inner.credential = None;
        self
    }
    /// Sets a free-form extra field.
    pub fn extra(mut self, key: impl Into<String>, value: serde_json::Value) -> Self {
        self.inner.extra.insert(key.into(), value);
        self
    }
    /// Finishes the context.
    pub fn build(self) -> Context {
        Context {
            inner: Arc::new(self.inner),
        }
    }
}

fn is_valid_traceparent(v: &str) -> bool {
    let parts: Vec<&str> = v.split('-').collect();
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    parts.len() == 4
        && hex(parts[0], 2)
        && !parts[0].eq_ignore_ascii_case("ff")
        && hex(parts[1], 32)
        && parts[1].bytes().any(|b| b != b'0')
        && hex(parts[2], 16)
        && parts[2].bytes().any(|b| b != b'0')
        && hex(parts[3], 2)
}

/// Which request headers are copied into a context. Header names compare case-insensitively;
/// [`NEVER_COPIED_HEADERS`] are refused even when listed.
///
/// ```
/// let allow = errand_core::HeaderAllowList::new(["X-Client", "Authorization"]);
/// let got = allow.capture([("x-client", "web"), ("authorization", "Bearer t"), ("x-other", "1")]);
/// assert_eq!(got.len(), 1);
/// assert_eq!(got["x-client"], "web");
/// ```
#[derive(Debug, Clone, Default)]
pub struct HeaderAllowList {
    names: BTreeSet<String>,
}

impl HeaderAllowList {
    /// An allow-list of the given names.
    pub fn new<I, S>(names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let names = names
            .into_iter()
            .map(|n| n.as_ref().trim().to_ascii_lowercase())
            .filter(|n| !n.is_empty() && !NEVER_COPIED_HEADERS.contains(&n.as_str()))
            .collect();
        Self { names }
    }

    /// Whether `name` would be copied.
    pub fn allows(&self, name: &str) -> bool {
        self.names.contains(&name.to_ascii_lowercase())
    }

    /// The allowed headers among `headers`, with lower-case names.
    pub fn capture<'a, I>(&self, headers: I) -> BTreeMap<String, String>
    where
        I: IntoIterator<Item = (&'a str, &'a str)>,
    {
        headers
            .into_iter()
            .filter(|(n, _)| self.allows(n))
            .map(|(n, v)| (n.to_ascii_lowercase(), v.to_string()))
            .collect()
    }
}

/// A context with every field set, for tests.
#[cfg(test)]
pub(crate) fn full_context(secret: &str, expires_at: Option<DateTime<Utc>>) -> Context {
    Context::builder()
        .user_id("u1")
        .tenant("t1")
        .role("admin")
        .request_id("r1")
        .correlation_id("c1")
        .traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        .header("X-Client", "web")
        .header("Authorization", "Bearer nope")
        .header("Cookie", "sid=1")
        .credential(Secret::new(secret), expires_at)
        .extra("plan", serde_json::json!("pro"))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::full_context as full;

    #[test]
    fn secret_never_in_debug() {
        let ctx = full("s3cret-token", None);
        assert!(!format!("{ctx:?}").contains("s3cret-token"));
        assert_eq!(ctx.credential().unwrap().expose(), "s3cret-token");
    }

    #[test]
    fn an_expiring_credential_is_not_handed_out_after_its_expiry() {
        let past = Utc::now() - chrono::Duration::seconds(1);
        let live = full("tok", Some(past));
        assert!(matches!(
            live.credential(),
            Err(CredentialError::Expired(_))
        ));
    }

    #[test]
    fn traceparent_validation() {
        assert!(is_valid_traceparent(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        ));
        assert!(!is_valid_traceparent(
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01"
        ));
        assert!(!is_valid_traceparent("garbage"));
        let ctx = Context::builder().traceparent("nope").build();
        assert_eq!(ctx.traceparent(), None);
    }

    #[test]
    fn allow_list_never_copies_credentials() {
        let allow = HeaderAllowList::new(["authorization", "COOKIE", "set-cookie", "x-a"]);
        assert!(!allow.allows("Authorization"));
        assert!(!allow.allows("cookie"));
        assert!(!allow.allows("Set-Cookie"));
        assert!(allow.allows("X-A"));
    }

    #[tokio::test]
    async fn scope_nests_and_none_hides_outer() {
        let a = Context::builder().user_id("a").build();
        let b = Context::builder().user_id("b").build();
        a.scope(async {
            assert_eq!(Context::current().unwrap().user_id(), Some("a"));
            b.scope(async {
                assert_eq!(Context::current().unwrap().user_id(), Some("b"));
            })
            .await;
            Context::scope_opt(None, async { assert!(Context::current().is_none()) }).await;
            assert_eq!(Context::current().unwrap().user_id(), Some("a"));
        })
        .await;
    }
}
