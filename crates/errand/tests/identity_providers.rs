//! `errand serve` trusting an identity provider: RS256 tokens checked against a JWKS file,
//! an issuer and audiences, with tenant and roles at the provider's claim names, all set
//! through `ERRAND_*` variables and flags; HS256 secrets rotated through
//! `ERRAND_JWT_SECRETS`; `errand token` minting with the signing secret's key id.

mod common;

use common::{Serve, run, tempdir};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::path::PathBuf;

const ISSUER: &str = "https://idp.test/realms/errand";
const NEW_SECRET: &str = "the-new-secret-of-at-least-32-bytes";
const OLD_SECRET: &str = "the-old-secret-of-at-least-32-bytes";

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../errand-server/tests/fixtures")
        .join(name)
}

/// An RS256 token of the test identity provider (key `test-rsa-a`) with these claims.
fn idp_token(claims: &Value) -> String {
    let pem = std::fs::read(fixture("test-only-rsa-a.key.pem")).expect("test key");
    let key = EncodingKey::from_rsa_pem(&pem).expect("RSA key");
    let header = Header {
        kid: Some("test-rsa-a".into()),
        ..Header::new(Algorithm::RS256)
    };
    jsonwebtoken::encode(&header, claims, &key).expect("sign")
}

fn claims(user: &str, audience: &str, extra: Value) -> Value {
    let mut claims = json!({
        "sub": user,
        "iss": ISSUER,
        "aud": audience,
        "exp": chrono::Utc::now().timestamp() + 600,
    });
    for (k, v) in extra.as_object().expect("object") {
        claims[k] = v.clone();
    }
    claims
}

/// The environment of every process here: the identity provider's issuer and audiences, and
/// its tenant and roles claims.
fn env(secrets: &str) -> Vec<(&'static str, String)> {
    vec![
        ("ERRAND_JWT_SECRETS", secrets.to_string()),
        ("ERRAND_ISSUER", ISSUER.to_string()),
        ("ERRAND_AUDIENCE", "api://errand,errand-backend".to_string()),
        ("ERRAND_TENANT_CLAIM", "tid".to_string()),
    ]
}

/// `errand token --user USER` with `secrets` (and the shared environment).
async fn errand_token(dir: &std::path::Path, secrets: &str, user: &str) -> String {
    let env = env(secrets);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let out = run(dir, &["token", "--user", user], &env).await;
    out.expect_code(0, "errand token");
    out.last_line().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_trusts_the_identity_provider_and_rotated_secrets() {
    let dir = tempdir();
    let jwks = fixture("test-idp.jwks.json").to_string_lossy().into_owned();
    let mut builder = Serve::builder(dir.path()).args(&[
        "--jwks-file",
        &jwks,
        "--roles-claim",
        "realm_access.roles",
        "--admin-role",
        "errand-admin",
    ]);
    for (name, value) in env(&format!("{NEW_SECRET},{OLD_SECRET}")) {
        builder = builder.env(name, &value);
    }
    let server = builder.start();

    // The provider's user, in the provider's tenant claim.
    let alice = server.client(&idp_token(&claims(
        "alice",
        "errand-backend",
        json!({"tid": "acme"}),
    )));
    let id = alice.persist("s", &[("user", "hi")]).await;
    assert_eq!(
        alice.wait_done(&id).await["owner"],
        json!({"user_id": "alice", "tenant": "acme"})
    );
    // An admin by a nested roles claim sees her task.
    let admin = server.client(&idp_token(&claims(
        "root",
        "api://errand",
        json!({"realm_access": {"roles": ["errand-admin"]}}),
    )));
    let (status, page) = admin.get("/v1/tasks").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["items"][0]["id"], id.as_str(), "{page}");
    // A token the provider issued for another application is refused.
    let elsewhere = server.client(&idp_token(&claims("alice", "api://other", json!({}))));
    let (status, body) = elsewhere.get("/v1/tasks").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["code"], "invalid_audience", "{body}");

    // `errand token` signs with the first secret and names it; the old secret's tokens still
    // pass while it is listed.
    let minted = errand_token(dir.path(), &format!("{NEW_SECRET},{OLD_SECRET}"), "bob").await;
    let header = jsonwebtoken::decode_header(&minted).expect("header");
    assert_eq!(header.alg, Algorithm::HS256);
    assert_eq!(
        header.kid,
        Some(errand_server::hs256_key_id(NEW_SECRET.as_bytes()))
    );
    let old = errand_token(dir.path(), OLD_SECRET, "bob").await;
    for token in [&minted, &old] {
        let (status, body) = server.client(token).get("/v1/tasks").await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    assert!(
        server.stderr().contains(&format!(
            "signing_key_id={}",
            errand_server::hs256_key_id(NEW_SECRET.as_bytes())
        )),
        "the signing key id is logged: {}",
        server.stderr()
    );
    drop(server);

    // Once the old secret is dropped from the list, its tokens are refused.
    let mut builder = Serve::builder(dir.path()).args(&["--jwks-file", &jwks]);
    for (name, value) in env(NEW_SECRET) {
        builder = builder.env(name, &value);
    }
    let rotated = builder.start();
    let (status, body) = rotated.client(&old).get("/v1/tasks").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["code"], "unknown_key", "{body}");
    let (status, _) = rotated.client(&minted).get("/v1/tasks").await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jwks_file_errand_cannot_use_stops_serve_with_its_name() {
    let dir = tempdir();
    let data = dir.path().to_string_lossy().into_owned();
    let missing = dir.path().join("no-such-jwks.json");
    let not_a_jwks = dir.path().join("not-a-jwks.json");
    std::fs::write(
        &not_a_jwks,
        r#"{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}"#,
    )
    .expect("write");
    for file in [&missing, &not_a_jwks] {
        let file = file.to_string_lossy().into_owned();
        let out = run(
            dir.path(),
            &[
                "--data-dir",
                &data,
                "serve",
                "--addr",
                "127.0.0.1:0",
                "--jwks-file",
                &file,
            ],
            &[],
        )
        .await;
        assert_ne!(out.status.code(), Some(0), "{}", out.stderr);
        assert!(
            out.stderr.contains(&file) && out.stderr.contains("JWKS"),
            "{}",
            out.stderr
        );
    }
    let out = run(
        dir.path(),
        &["serve", "--jwks-url", "ftp://idp.test/keys"],
        &[],
    )
    .await;
    assert_ne!(out.status.code(), Some(0));
    assert!(out.stderr.contains("jwks_url"), "{}", out.stderr);
    let out = run(
        dir.path(),
        &["token", "--user", "u"],
        &[("ERRAND_JWT_SECRETS", "x"), ("ERRAND_JWT_SECRET", "y")],
    )
    .await;
    assert_ne!(out.status.code(), Some(0));
    assert!(out.stderr.contains("set only one"), "{}", out.stderr);
}
