//! The context layer: authenticates each request's bearer token and turns it into the caller's
//! [`Context`], which every handler behind the layer reads with the [`Caller`] extractor and
//! which tasks submitted by the request carry.

use crate::config::ServerConfig;
use crate::error::ApiError;
use crate::observe::{RequestIds, UserSlot};
use crate::state::AppState;
use crate::token::{TokenError, Verifier};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::Response;
use chrono::{DateTime, Utc};
use errand_core::{Context, Owner, OwnerFilter, Secret};
use serde_json::{Map, Value};
use std::sync::Arc;

/// The longest user id or tenant errand accepts from a token.
const MAX_IDENTITY_LEN: usize = 512;

/// The authenticated caller of a request: its [`Context`] (user, tenant, roles, request and
/// correlation ids, traceparent, allow-listed headers, and the bearer token as the sealed-on-
/// submit credential) and whether it holds the admin role.
///
/// Use it as an extractor in routes merged with [`Server::routes`](crate::Server::routes):
///
/// ```
/// use errand_server::{ApiError, Caller, Json};
///
/// async fn whoami(caller: Caller) -> Result<Json<serde_json::Value>, ApiError> {
///     Ok(Json(serde_json::json!({ "user": caller.user_id(), "admin": caller.is_admin() })))
/// }
/// let app: axum::Router = axum::Router::new().route("/v1/whoami", axum::routing::get(whoami));
/// ```
///
/// Handlers behind the layer also run inside [`Context::scope`], so
/// [`Context::current`] returns the caller's context and
/// [`Client::submit`](errand_core::Client::submit) captures it by default.
#[derive(Debug, Clone)]
pub struct Caller {
    context: Context,
    user_id: Arc<str>,
    worker: Option<Arc<str>>,
    admin: bool,
    token_expires_at: DateTime<Utc>,
}

impl Caller {
    /// The caller's context.
    pub fn context(&self) -> &Context {
        &self.context
    }

    /// The caller's context, by value.
    pub fn into_context(self) -> Context {
        self.context
    }

    /// The caller's user id (a token without one is refused); empty for a worker token,
    /// which is no user.
    pub fn user_id(&self) -> &str {
        &self.user_id
    }

    /// The worker's name, when the token holds the [`WORKER_ROLE`]: such a caller runs tasks
    /// over the worker protocol and, on the user routes, is no user (it owns nothing it
    /// submits, and sees only tasks submitted without a user).
    pub fn worker(&self) -> Option<&str> {
        self.worker.as_deref()
    }

    /// The caller's tenant, if the token names one.
    pub fn tenant(&self) -> Option<&str> {
        self.context.tenant()
    }

    /// Whether the caller holds the configured admin role.
    pub fn is_admin(&self) -> bool {
        self.admin
    }

    /// When the caller's bearer token expires (its `exp` claim): past this instant the caller
    /// is no longer authenticated, so whatever serves it longer (an event stream) should end.
    /// The server's leeway for clock skew is not added.
    pub fn token_expires_at(&self) -> DateTime<Utc> {
        self.token_expires_at
    }

    /// The owner of what the caller submits: its user and tenant.
    pub fn owner(&self) -> Owner {
        match self.worker {
            Some(_) => Owner::default(),
            None => Owner::new(self.user_id.to_string(), self.tenant().map(str::to_string)),
        }
    }

    /// Whose records the caller may see: its own, or everyone's for an admin.
    pub fn owner_filter(&self) -> OwnerFilter {
        if self.admin {
            OwnerFilter::Any
        } else {
            OwnerFilter::Owner(self.owner())
        }
    }

    /// Whether the caller may see and act on something owned by `owner`.
    pub fn may_access(&self, owner: &Owner) -> bool {
        self.owner_filter().admits(owner)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Caller>().cloned().ok_or_else(|| {
            tracing::error!(
                path = parts.uri.path(),
                "a route uses the Caller extractor but is not behind errand's context layer; merge it with Server::routes"
            );
            ApiError::internal()
        })
    }
}

/// Why a request was not authenticated.
enum Refusal {
    Missing,
    Header(&'static str),
    Token(TokenError),
}

impl Refusal {
    fn code(&self) -> &'static str {
        match self {
            Refusal::Missing => "missing_token",
            Refusal::Header(_) => "malformed_authorization",
            Refusal::Token(e) => e.code(),
        }
    }

    fn into_error(self) -> ApiError {
        match self {
            Refusal::Missing => ApiError::unauthorized(
                "missing_token",
                "authentication required: send `Authorization: Bearer <token>`",
            ),
            Refusal::Header(why) => ApiError::unauthorized(
                "malformed_authorization",
                format!("the Authorization header must be `Bearer <token>`: {why}"),
            ),
            Refusal::Token(e) => e.into(),
        }
    }
}

impl From<TokenError> for Refusal {
    fn from(e: TokenError) -> Self {
        Refusal::Token(e)
    }
}

/// The role that makes a token a worker's: it may use the worker routes, and is no user.
pub const WORKER_ROLE: &str = "worker";

/// Authenticates the request and runs the rest of it as the caller, or answers 401.
pub(crate) async fn authenticate(
    State(state): State<Arc<AppState>>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let ids = request.extensions().get::<RequestIds>().cloned();
    let caller = match identify(&state.config, &state.verifier, request.headers(), ids).await {
        Ok(caller) => caller,
        Err(refusal) => {
            state.metrics.auth_failure(refusal.code());
            return Err(refusal.into_error());
        }
    };
    let who = match caller.worker() {
        Some(name) => format!("worker:{name}"),
        None => caller.user_id().to_string(),
    };
    if let Some(slot) = request.extensions().get::<UserSlot>() {
        slot.set(&who);
    }
    tracing::Span::current().record("user_id", who.as_str());
    let context = caller.context.clone();
    request.extensions_mut().insert(context.clone());
    request.extensions_mut().insert(caller);
    Ok(context.scope(next.run(request)).await)
}

/// The caller named by the request's bearer token.
async fn identify(
    config: &ServerConfig,
    verifier: &Verifier,
    headers: &HeaderMap,
    ids: Option<RequestIds>,
) -> Result<Caller, Refusal> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let value = match (values.next(), values.next()) {
        (None, _) => return Err(Refusal::Missing),
        (Some(value), None) => value,
        (Some(_), Some(_)) => return Err(Refusal::Header("it appears more than once")),
    };
    let value = value
        .to_str()
        .map_err(|_| Refusal::Header("it is not visible ASCII"))?
        .trim();
    let (scheme, token) = value
        .split_once(' ')
        .ok_or(Refusal::Header("it has no scheme and token"))?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(Refusal::Header("only the Bearer scheme is accepted"));
    }
    let token = token.trim();
    if token.is_empty() || token.contains(' ') {
        return Err(Refusal::Header("the token is empty or contains spaces"));
    }
    let verified = verifier.verify(token, Utc::now()).await?;
    let claims = &verified.claims;
    let user = identity_claim(claims, &config.user_claim)?.ok_or_else(|| {
        TokenError::Claims(format!(
            "the token has no {:?} claim naming the user",
            config.user_claim
        ))
    })?;
    let tenant = identity_claim(claims, &config.tenant_claim)?;
    let roles = roles_claim(claims, &config.roles_claim)?;
    let worker = roles.contains(&WORKER_ROLE);
    let admin = !worker && roles.iter().any(|r| *r == config.admin_role);

    let ids = ids.unwrap_or_else(|| {
        let request_id = uuid::Uuid::now_v7().to_string();
        RequestIds {
            correlation_id: request_id.clone(),
            request_id,
        }
    });
    let mut builder = Context::builder()
        .request_id(ids.request_id)
        .correlation_id(ids.correlation_id);
    if !worker {
        builder = builder
            .user_id(user)
            .credential(Secret::new(token), Some(verified.expires_at));
        if let Some(tenant) = tenant {
            builder = builder.tenant(tenant);
        }
    }
    for role in roles {
        builder = builder.role(role);
    }
    if let Some(tp) = headers.get("traceparent").and_then(|v| v.to_str().ok()) {
        builder = builder.traceparent(tp);
    }
    let captured = config.header_allow_list.capture(
        headers
            .iter()
            .filter_map(|(name, value)| Some((name.as_str(), value.to_str().ok()?))),
    );
    for (name, value) in captured {
        builder = builder.header(&name, value);
    }
    Ok(Caller {
        context: builder.build(),
        user_id: if worker { "".into() } else { user.into() },
        worker: worker.then(|| user.into()),
        admin,
        token_expires_at: verified.expires_at,
    })
}

/// The claim `name`: the top-level claim of that name, or, when there is none and the name
/// has dots, the value at that path through nested objects (`realm_access.roles`). A top-level
/// name wins, so namespaced claims such as `https://example.com/roles` are found as they are.
fn claim<'a>(claims: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    claims.get(name).or_else(|| {
        let mut path = name.split('.');
        let first = claims.get(path.next()?)?;
        path.try_fold(first, |value, key| value.as_object()?.get(key))
    })
}

/// A user or tenant claim: absent (or null), or a non-empty string of sane length.
fn identity_claim<'a>(
    claims: &'a Map<String, Value>,
    name: &str,
) -> Result<Option<&'a str>, TokenError> {
    match claim(claims, name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.is_empty() && s.len() <= MAX_IDENTITY_LEN => Ok(Some(s)),
        Some(_) => Err(TokenError::Claims(format!(
            "the {name:?} claim must be a non-empty string of at most {MAX_IDENTITY_LEN} bytes"
        ))),
    }
}

/// The roles claim: absent, one string, or an array of strings.
fn roles_claim<'a>(claims: &'a Map<String, Value>, name: &str) -> Result<Vec<&'a str>, TokenError> {
    let bad = || {
        TokenError::Claims(format!(
            "the {name:?} claim must be a string or an array of strings"
        ))
    };
    match claim(claims, name) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(role)) => Ok(vec![role.as_str()]),
        Some(Value::Array(items)) => items.iter().map(|v| v.as_str().ok_or_else(bad)).collect(),
        Some(_) => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use errand_core::HeaderAllowList;
    use serde_json::json;
    use std::time::Duration;

    fn config() -> ServerConfig {
        ServerConfig {
            jwt_secrets: vec![vec![9; 32]],
            header_allow_list: HeaderAllowList::new(["x-client", "authorization", "cookie"]),
            ..Default::default()
        }
    }

    fn headers(token: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {token}")).expect("header"),
        );
        h
    }

    async fn identify_with(
        config: &ServerConfig,
        headers: &HeaderMap,
        ids: Option<RequestIds>,
    ) -> Result<Caller, Refusal> {
        let verifier = Verifier::new(config).expect("verifier");
        identify(config, &verifier, headers, ids).await
    }

    #[tokio::test]
    async fn context_carries_identity_ids_headers_and_the_token() {
        let config = config();
        let token = config
            .mint_token("alice", Some("acme"), true, Duration::from_secs(60))
            .expect("mint");
        let mut h = headers(&token);
        h.insert("x-client", HeaderValue::from_static("web"));
        h.insert(header::COOKIE, HeaderValue::from_static("sid=1"));
        h.insert(
            "traceparent",
            HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        );
        let ids = RequestIds {
            request_id: "r1".into(),
            correlation_id: "c1".into(),
        };
        let caller = identify_with(&config, &h, Some(ids))
            .await
            .ok()
            .expect("caller");
        let ctx = caller.context();
        assert_eq!(caller.user_id(), "alice");
        assert_eq!(ctx.tenant(), Some("acme"));
        assert!(caller.is_admin());
        assert_eq!(caller.owner_filter(), OwnerFilter::Any);
        assert_eq!(ctx.request_id(), Some("r1"));
        assert_eq!(ctx.correlation_id(), Some("c1"));
        assert!(ctx.traceparent().is_some());
        assert_eq!(ctx.header("x-client"), Some("web"));
        assert_eq!(ctx.header("authorization"), None);
        assert_eq!(ctx.header("cookie"), None);
        assert_eq!(ctx.credential().expect("credential").expose(), token);
        let in_a_minute = Utc::now() + chrono::TimeDelta::seconds(60);
        assert!(
            (caller.token_expires_at() - in_a_minute)
                .num_seconds()
                .abs()
                <= 2
        );
    }

    #[tokio::test]
    async fn claims_errand_cannot_use_are_refused() {
        let config = ServerConfig {
            user_claim: "oid".into(),
            ..config()
        };
        // Minted with `sub`, read with `oid`: no user.
        let token = mint_token_sub(&config);
        let refusal = identify_with(&config, &headers(&token), None)
            .await
            .expect_err("refused");
        assert_eq!(refusal.code(), "invalid_claims");
    }

    fn mint_token_sub(config: &ServerConfig) -> String {
        crate::mint_token(
            &config.jwt_secrets[0],
            "bob",
            None,
            false,
            Duration::from_secs(60),
            "sub",
        )
        .expect("mint")
    }

    #[tokio::test]
    async fn authorization_header_forms() {
        let config = config();
        let none = identify_with(&config, &HeaderMap::new(), None)
            .await
            .expect_err("refused");
        assert_eq!(none.code(), "missing_token");
        for bad in ["Basic abc", "Bearer", "Bearer ", "Token x", "Bearer a b"] {
            let mut h = HeaderMap::new();
            h.insert(header::AUTHORIZATION, HeaderValue::from_static(bad));
            let refusal = identify_with(&config, &h, None).await.expect_err("refused");
            assert_eq!(refusal.code(), "malformed_authorization", "{bad}");
        }
        let token = mint_token_sub(&config);
        let mut twice = headers(&token);
        twice.append(header::AUTHORIZATION, HeaderValue::from_static("Bearer x"));
        let refusal = identify_with(&config, &twice, None)
            .await
            .expect_err("refused");
        assert_eq!(refusal.code(), "malformed_authorization");
        let mut lower = HeaderMap::new();
        lower.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("bearer {token}")).expect("header"),
        );
        assert!(identify_with(&config, &lower, None).await.is_ok());
    }

    #[test]
    fn roles_accept_a_string_or_an_array() {
        let mut claims = Map::new();
        assert!(roles_claim(&claims, "roles").expect("absent").is_empty());
        claims.insert("roles".into(), Value::from("admin"));
        assert_eq!(roles_claim(&claims, "roles").expect("string"), ["admin"]);
        claims.insert("roles".into(), json!(["a", "b"]));
        assert_eq!(roles_claim(&claims, "roles").expect("array"), ["a", "b"]);
        claims.insert("roles".into(), json!([1]));
        assert!(roles_claim(&claims, "roles").is_err());
    }

    #[test]
    fn claims_are_found_at_the_top_level_first_then_by_path() {
        let claims = json!({
            "realm_access": {"roles": ["admin", "user"]},
            "https://example.com/roles": ["auditor"],
            "org": {"id": "acme", "deep": {"er": "x"}},
            "a.b": "flat",
            "a": {"b": "nested"},
            "tid": 5,
        });
        let claims = claims.as_object().expect("object");
        assert_eq!(
            roles_claim(claims, "realm_access.roles").expect("Keycloak"),
            ["admin", "user"]
        );
        assert_eq!(
            roles_claim(claims, "https://example.com/roles").expect("Auth0"),
            ["auditor"]
        );
        assert_eq!(
            identity_claim(claims, "org.id").expect("path"),
            Some("acme")
        );
        assert_eq!(
            identity_claim(claims, "org.deep.er").expect("deeper"),
            Some("x")
        );
        assert_eq!(
            identity_claim(claims, "a.b").expect("flat"),
            Some("flat"),
            "a top-level name with dots wins over the path"
        );
        assert_eq!(identity_claim(claims, "org.missing").expect("absent"), None);
        assert_eq!(
            identity_claim(claims, "tid.x").expect("not an object"),
            None
        );
        assert_eq!(identity_claim(claims, "org.").expect("empty key"), None);
        assert!(
            identity_claim(claims, "org").is_err(),
            "an object is no user id"
        );
    }

    #[tokio::test]
    async fn keycloak_style_nested_roles_make_an_admin() {
        let config = ServerConfig {
            roles_claim: "realm_access.roles".into(),
            ..config()
        };
        let claims = json!({
            "sub": "kc-user",
            "realm_access": {"roles": ["offline_access", "admin"]},
            "exp": Utc::now().timestamp() + 60,
        });
        let key = jsonwebtoken::EncodingKey::from_secret(&config.jwt_secrets[0]).expect("key");
        let token =
            jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).expect("sign");
        let caller = identify_with(&config, &headers(&token), None)
            .await
            .ok()
            .expect("caller");
        assert!(caller.is_admin());
        assert_eq!(caller.context().roles(), ["offline_access", "admin"]);
    }
}
