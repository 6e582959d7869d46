//! Tokens from identity providers, through the real router on 127.0.0.1: RS256 and ES256 keys
//! from a JWKS file and from a JWKS URL served by a small identity provider inside the test
//! (caching, refetch after a key rotation, the refetch rate limit, background refresh),
//! issuer and audience rules, algorithm confusion, and HS256 secret rotation.

mod common;

use axum::extract::State;
use axum::http::StatusCode as AxumStatus;
use common::{DEADLINE, Harness, Options, SECRET, assert_error};
use errand_server::ServerConfig;
use jsonwebtoken::{Algorithm, EncodingKey};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const RSA_A: &[u8] = include_bytes!("fixtures/test-only-rsa-a.key.pem");
const RSA_B: &[u8] = include_bytes!("fixtures/test-only-rsa-b.key.pem");
const EC: &[u8] = include_bytes!("fixtures/test-only-ec-p256.key.pem");
const RSA_A_PUBLIC_PEM: &[u8] = include_bytes!("fixtures/test-only-rsa-a.pub.pem");
const JWK_RSA_A: &str = include_str!("fixtures/test-rsa-a.jwk.json");
const JWK_RSA_B: &str = include_str!("fixtures/test-rsa-b.jwk.json");
const ISSUER: &str = "https://idp.test/realms/errand";
const AUDIENCE: &str = "api://errand";

/// A token with exactly this header and these claims, signed with `key` under `alg`.
fn sign(header: &Value, claims: &Value, key: &EncodingKey, alg: Algorithm) -> String {
    use base64::Engine as _;
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let input = format!("{}.{}", b64(header), b64(claims));
    let signature = jsonwebtoken::crypto::sign(input.as_bytes(), key, alg).expect("sign");
    format!("{input}.{signature}")
}

/// Claims an identity provider would issue for `user`, for errand, valid for an hour.
fn claims(user: &str) -> Value {
    json!({
        "sub": user,
        "iss": ISSUER,
        "aud": AUDIENCE,
        "exp": chrono::Utc::now().timestamp() + 3600,
    })
}

fn rsa(pem: &[u8]) -> EncodingKey {
    EncodingKey::from_rsa_pem(pem).expect("test RSA key")
}

/// An RS256 token of `user` signed with key A under key id `kid`.
fn rs256(kid: &str, user: &str) -> String {
    let key = if kid == "test-rsa-b" { RSA_B } else { RSA_A };
    sign(
        &json!({"alg": "RS256", "typ": "JWT", "kid": kid}),
        &claims(user),
        &rsa(key),
        Algorithm::RS256,
    )
}

fn config() -> ServerConfig {
    ServerConfig {
        issuer: Some(ISSUER.into()),
        audience: vec![AUDIENCE.into()],
        ..common::config()
    }
}

fn jwks_file() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/test-idp.jwks.json")
}

async fn start(config: ServerConfig) -> Harness {
    Harness::with(Options {
        config,
        ..Options::default()
    })
    .await
}

/// Asserts `token` lists tasks (200).
async fn accepted(h: &Harness, token: &str, what: &str) {
    let (status, json) = h.get(token, "/v1/tasks").await;
    assert_eq!(status, StatusCode::OK, "{what}: {json}");
}

/// Asserts `token` is a 401 with `code`.
async fn refused(h: &Harness, token: &str, code: &str, what: &str) {
    let (status, json) = h.get(token, "/v1/tasks").await;
    assert_eq!(json["error"]["code"], code, "{what}: {json}");
    assert_error(status, &json, StatusCode::UNAUTHORIZED, code);
}

#[tokio::test]
async fn a_jwks_file_verifies_rs256_and_es256_tokens() {
    let h = start(ServerConfig {
        jwks_file: Some(jwks_file()),
        ..config()
    })
    .await;
    accepted(&h, &rs256("test-rsa-a", "alice"), "RS256").await;
    let es256 = sign(
        &json!({"alg": "ES256", "kid": "test-ec-p256"}),
        &claims("bob"),
        &EncodingKey::from_ec_pem(EC).expect("test EC key"),
        Algorithm::ES256,
    );
    accepted(&h, &es256, "ES256").await;
    // The identity is the token's: alice's task is hers, bob sees none of it.
    let alice = rs256("test-rsa-a", "alice");
    let id = h
        .submit_ok(&alice, json!({"name": "hold", "args": {}}))
        .await;
    let (status, record) = h.get(&alice, &format!("/v1/tasks/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(record["owner"]["user_id"], "alice", "{record}");
    let (status, _) = h.get(&es256, &format!("/v1/tasks/{id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // errand's own HS256 tokens still work beside the identity provider's.
    accepted(&h, &h.token("carol", None, false), "HS256").await;
    h.stop().await;
}

#[tokio::test]
async fn tokens_that_must_not_pass_each_have_their_own_401() {
    let h = start(ServerConfig {
        jwks_file: Some(jwks_file()),
        ..config()
    })
    .await;
    let hmac_with_public_key = |header: Value| {
        let key = EncodingKey::from_secret(RSA_A_PUBLIC_PEM).expect("HMAC key");
        sign(&header, &claims("mallory"), &key, Algorithm::HS256)
    };
    let with_claims = |claims: Value| {
        sign(
            &json!({"alg": "RS256", "kid": "test-rsa-a"}),
            &claims,
            &rsa(RSA_A),
            Algorithm::RS256,
        )
    };
    let mut wrong_aud = claims("mallory");
    wrong_aud["aud"] = json!("api://another-app");
    let mut wrong_iss = claims("mallory");
    wrong_iss["iss"] = json!("https://evil.test/");
    let mut no_aud = claims("mallory");
    no_aud.as_object_mut().expect("object").remove("aud");
    use base64::Engine as _;
    let b64 = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let cases = [
        (
            "HS256 signed with the RSA public key, naming the RSA key",
            hmac_with_public_key(json!({"alg": "HS256", "kid": "test-rsa-a"})),
            "algorithm_mismatch",
        ),
        (
            "HS256 signed with the RSA public key, no kid",
            hmac_with_public_key(json!({"alg": "HS256"})),
            "invalid_signature",
        ),
        (
            "alg none",
            format!(
                "{}.{}.",
                b64(json!({"alg": "none"})),
                b64(claims("mallory"))
            ),
            "unsupported_algorithm",
        ),
        (
            "alg None naming a key",
            format!(
                "{}.{}.",
                b64(json!({"alg": "None", "kid": "test-rsa-a"})),
                b64(claims("mallory"))
            ),
            "unsupported_algorithm",
        ),
        ("wrong aud", with_claims(wrong_aud), "invalid_audience"),
        ("wrong iss", with_claims(wrong_iss), "invalid_issuer"),
        ("no aud", with_claims(no_aud), "invalid_audience"),
        (
            "unknown kid",
            rs256("a-key-nobody-has", "mallory"),
            "unknown_key",
        ),
        (
            "key B's signature under key A's id",
            sign(
                &json!({"alg": "RS256", "kid": "test-rsa-a"}),
                &claims("mallory"),
                &rsa(RSA_B),
                Algorithm::RS256,
            ),
            "invalid_signature",
        ),
    ];
    for (what, token, code) in &cases {
        refused(&h, token, code, what).await;
    }
    let (_, metrics) = h.send(h.http.get(h.url("/metrics"))).await;
    let metrics = metrics.as_str().expect("text").to_string();
    for code in ["algorithm_mismatch", "unknown_key", "invalid_audience"] {
        assert!(
            metrics.contains(&format!("errand_auth_failures_total{{reason=\"{code}\"}}")),
            "{code} is counted"
        );
    }
    h.stop().await;
}

#[tokio::test]
async fn an_hs256_secret_is_rotated_by_listing_the_new_one_first() {
    const OLD: &[u8] = b"the-previous-secret-of-32-bytes-or-more";
    let both = ServerConfig {
        jwt_secrets: vec![SECRET.to_vec(), OLD.to_vec()],
        ..common::config()
    };
    let before_rotation = ServerConfig {
        jwt_secrets: vec![OLD.to_vec()],
        ..common::config()
    };
    let old_token = before_rotation
        .mint_token("alice", None, false, Duration::from_secs(3600))
        .expect("mint");
    let h = start(both.clone()).await;
    accepted(&h, &old_token, "signed by the old secret, still listed").await;
    let new_token = h.token("alice", None, false);
    accepted(&h, &new_token, "signed by the new secret").await;
    let header = jsonwebtoken::decode_header(&new_token).expect("header");
    assert_eq!(header.kid, both.signing_key_id(), "the first secret signs");
    assert_eq!(
        header.kid.as_deref(),
        Some(errand_server::hs256_key_id(SECRET).as_str())
    );
    h.stop().await;

    let after = start(common::config()).await;
    refused(
        &after,
        &old_token,
        "unknown_key",
        "the old secret was dropped",
    )
    .await;
    accepted(&after, &new_token, "the new secret stays").await;
    after.stop().await;
}

/// An identity provider serving its JWKS at `/jwks`, counting the requests.
struct IdentityProvider {
    url: String,
    hits: Arc<AtomicUsize>,
    answer: Arc<Mutex<(AxumStatus, String)>>,
}

type Answer = Arc<Mutex<(AxumStatus, String)>>;

impl IdentityProvider {
    async fn start(keys: &[&str]) -> Self {
        let hits = Arc::new(AtomicUsize::new(0));
        let answer: Answer = Arc::new(Mutex::new((AxumStatus::OK, String::new())));
        let app = axum::Router::new()
            .route(
                "/jwks",
                axum::routing::get(
                    |State((hits, answer)): State<(Arc<AtomicUsize>, Answer)>| async move {
                        hits.fetch_add(1, Ordering::SeqCst);
                        answer.lock().expect("answer").clone()
                    },
                ),
            )
            .with_state((Arc::clone(&hits), Arc::clone(&answer)));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/jwks", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        let idp = Self { url, hits, answer };
        idp.publish(keys);
        idp
    }

    /// Serves these JWKs from now on.
    fn publish(&self, keys: &[&str]) {
        let keys: Vec<Value> = keys
            .iter()
            .map(|k| serde_json::from_str(k).expect("JWK"))
            .collect();
        *self.answer.lock().expect("answer") =
            (AxumStatus::OK, json!({ "keys": keys }).to_string());
    }

    /// Answers 500 from now on.
    fn fail(&self) {
        *self.answer.lock().expect("answer") = (AxumStatus::INTERNAL_SERVER_ERROR, "down".into());
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// Waits until the JWKS was requested `n` times.
    async fn wait_for_hits(&self, n: usize) {
        let started = tokio::time::Instant::now();
        while self.hits() < n {
            assert!(
                started.elapsed() < DEADLINE,
                "the JWKS was never fetched again"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// A server trusting this provider's keys only.
    fn config(&self, refetch_interval: Duration, max_age: Duration) -> ServerConfig {
        ServerConfig {
            jwt_secrets: Vec::new(),
            jwks_url: Some(self.url.clone()),
            jwks_refetch_interval: refetch_interval,
            jwks_max_age: max_age,
            ..config()
        }
    }
}

const HOUR: Duration = Duration::from_secs(3600);

#[tokio::test]
async fn jwks_url_keys_are_fetched_once_and_cached() {
    let idp = IdentityProvider::start(&[JWK_RSA_A]).await;
    let h = start(idp.config(HOUR, HOUR)).await;
    assert_eq!(idp.hits(), 0, "nothing is fetched before a token needs it");
    for user in ["alice", "bob", "carol"] {
        accepted(&h, &rs256("test-rsa-a", user), user).await;
    }
    assert_eq!(idp.hits(), 1, "one fetch serves every token");
    h.stop().await;
}

#[tokio::test]
async fn a_flood_of_unknown_kids_costs_the_identity_provider_no_more_than_the_rate_limit() {
    let idp = IdentityProvider::start(&[JWK_RSA_A]).await;
    let h = start(idp.config(HOUR, HOUR)).await;
    accepted(&h, &rs256("test-rsa-a", "alice"), "first token").await;
    for i in 0..25 {
        refused(
            &h,
            &rs256(&format!("bogus-{i}"), "mallory"),
            "unknown_key",
            "bogus",
        )
        .await;
    }
    assert_eq!(
        idp.hits(),
        1,
        "the last fetch was less than the refetch interval ago: no refetch"
    );
    // Even a real new key waits for the interval.
    idp.publish(&[JWK_RSA_A, JWK_RSA_B]);
    refused(
        &h,
        &rs256("test-rsa-b", "alice"),
        "unknown_key",
        "rate-limited",
    )
    .await;
    assert_eq!(idp.hits(), 1);
    h.stop().await;
}

#[tokio::test]
async fn an_unknown_kid_refetches_the_keys_after_the_provider_rotates() {
    let interval = Duration::from_millis(300);
    let idp = IdentityProvider::start(&[JWK_RSA_A]).await;
    let h = start(idp.config(interval, HOUR)).await;
    accepted(&h, &rs256("test-rsa-a", "alice"), "key A").await;
    assert_eq!(idp.hits(), 1);
    idp.publish(&[JWK_RSA_B]);
    // The refetch interval has to pass since the first fetch.
    tokio::time::sleep(interval + Duration::from_millis(50)).await;
    accepted(
        &h,
        &rs256("test-rsa-b", "alice"),
        "key B, after the rotation",
    )
    .await;
    assert_eq!(idp.hits(), 2, "exactly one refetch");
    accepted(&h, &rs256("test-rsa-b", "bob"), "key B, cached").await;
    refused(
        &h,
        &rs256("test-rsa-a", "alice"),
        "unknown_key",
        "key A is gone",
    )
    .await;
    h.stop().await;
}

#[tokio::test]
async fn old_keys_are_refreshed_in_the_background_and_kept_when_a_fetch_fails() {
    // With the refetch interval as long as the maximum age, each stale period starts at most
    // one background refresh.
    let max_age = Duration::from_millis(200);
    let idp = IdentityProvider::start(&[JWK_RSA_A]).await;
    let h = start(idp.config(max_age, max_age)).await;
    let token_a = rs256("test-rsa-a", "alice");
    accepted(&h, &token_a, "first fetch").await;

    idp.fail();
    tokio::time::sleep(max_age + Duration::from_millis(50)).await;
    accepted(&h, &token_a, "old keys serve while they are refreshed").await;
    idp.wait_for_hits(2).await;
    accepted(&h, &token_a, "a failed fetch keeps the cached keys").await;

    idp.publish(&[JWK_RSA_B]);
    tokio::time::sleep(max_age + Duration::from_millis(50)).await;
    accepted(&h, &token_a, "old keys serve while they are refreshed").await;
    idp.wait_for_hits(3).await;
    let token_b = rs256("test-rsa-b", "alice");
    let started = tokio::time::Instant::now();
    loop {
        let (status, json) = h.get(&token_b, "/v1/tasks").await;
        if status == StatusCode::OK {
            break;
        }
        assert!(started.elapsed() < DEADLINE, "key B never arrived: {json}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    refused(&h, &token_a, "unknown_key", "key A was rotated away").await;
    h.stop().await;
}

/// Asserts `token` is a 503 `identity_provider_unavailable`, with a Retry-After.
async fn unverifiable(h: &Harness, token: &str, what: &str) {
    let response = h
        .http
        .get(h.url("/v1/tasks"))
        .bearer_auth(token)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE, "{what}");
    assert!(
        response
            .headers()
            .contains_key(reqwest::header::RETRY_AFTER),
        "{what}: a 503 says when to try again"
    );
    let json: Value = response.json().await.expect("JSON body");
    assert_eq!(
        json["error"]["code"], "identity_provider_unavailable",
        "{what}: {json}"
    );
}

#[tokio::test]
async fn a_token_that_only_unreachable_keys_could_verify_is_a_503_not_a_401() {
    let interval = Duration::from_millis(300);
    let idp = IdentityProvider::start(&[JWK_RSA_A]).await;
    idp.fail();
    let h = start(idp.config(interval, HOUR)).await;
    let token_a = rs256("test-rsa-a", "alice");
    unverifiable(&h, &token_a, "the provider is down before any fetch").await;

    idp.publish(&[JWK_RSA_A]);
    tokio::time::sleep(interval + Duration::from_millis(50)).await;
    accepted(&h, &token_a, "the provider is back").await;

    idp.fail();
    tokio::time::sleep(interval + Duration::from_millis(50)).await;
    let token_b = rs256("test-rsa-b", "alice");
    unverifiable(&h, &token_b, "a key the cache lacks, the provider down").await;
    accepted(&h, &token_a, "cached keys still serve while it is down").await;

    idp.publish(&[JWK_RSA_A]);
    tokio::time::sleep(interval + Duration::from_millis(50)).await;
    refused(
        &h,
        &token_b,
        "unknown_key",
        "the provider answers and has no such key",
    )
    .await;
    h.stop().await;
}
