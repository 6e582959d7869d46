//! Every acceptance and every refusal of [`Verifier`], with HS256 secrets, a JWKS file of the
//! test identity provider (RS256 and ES256 keys), issuer and audience rules.

use super::*;
use crate::ServerConfig;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use chrono::TimeDelta;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::Duration;

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
const OLD_SECRET: &[u8] = b"an-older-secret-still-in-the-list";
const RSA_A: &[u8] = include_bytes!("../../tests/fixtures/test-only-rsa-a.key.pem");
const RSA_B: &[u8] = include_bytes!("../../tests/fixtures/test-only-rsa-b.key.pem");
const EC: &[u8] = include_bytes!("../../tests/fixtures/test-only-ec-p256.key.pem");
const RSA_A_PUBLIC_PEM: &[u8] = include_bytes!("../../tests/fixtures/test-only-rsa-a.pub.pem");
const RSA_A_PUBLIC_DER: &[u8] = include_bytes!("../../tests/fixtures/test-only-rsa-a.pub.der");
const ISSUER: &str = "https://idp.example/realms/test";

fn jwks_file() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/test-idp.jwks.json")
}

/// Two secrets (the first signs) and the test identity provider's JWKS file.
fn config() -> ServerConfig {
    ServerConfig {
        jwt_secrets: vec![SECRET.to_vec(), OLD_SECRET.to_vec()],
        jwks_file: Some(jwks_file()),
        ..Default::default()
    }
}

fn verifier(config: &ServerConfig) -> Verifier {
    Verifier::new(config).expect("verifier")
}

async fn check(config: &ServerConfig, token: &str) -> Result<verify::Verified, TokenError> {
    verifier(config).verify(token, Utc::now()).await
}

async fn refusal(config: &ServerConfig, token: &str) -> TokenError {
    check(config, token).await.expect_err("refused")
}

fn later(secs: i64) -> i64 {
    Utc::now().timestamp() + secs
}

fn claims() -> Value {
    json!({"sub": "alice", "exp": later(60)})
}

fn rsa(pem: &[u8]) -> EncodingKey {
    EncodingKey::from_rsa_pem(pem).expect("test RSA key")
}

fn ec() -> EncodingKey {
    EncodingKey::from_ec_pem(EC).expect("test EC key")
}

fn hmac(secret: &[u8]) -> EncodingKey {
    EncodingKey::from_secret(secret).expect("HMAC key")
}

/// A token with exactly this header and these claims, signed with `key` under `alg`.
fn sign(header: &Value, claims: &Value, key: &EncodingKey, alg: Algorithm) -> String {
    let input = format!(
        "{}.{}",
        B64URL.encode(header.to_string()),
        B64URL.encode(claims.to_string())
    );
    let signature = jsonwebtoken::crypto::sign(input.as_bytes(), key, alg).expect("sign");
    format!("{input}.{signature}")
}

fn hs256(kid: Option<&str>, claims: &Value, secret: &[u8]) -> String {
    let header = match kid {
        Some(kid) => json!({"alg": "HS256", "kid": kid}),
        None => json!({"alg": "HS256"}),
    };
    sign(&header, claims, &hmac(secret), Algorithm::HS256)
}

fn rs256(kid: &str, claims: &Value) -> String {
    sign(
        &json!({"alg": "RS256", "kid": kid}),
        claims,
        &rsa(RSA_A),
        Algorithm::RS256,
    )
}

fn unsigned(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}.",
        B64URL.encode(header.to_string()),
        B64URL.encode(claims.to_string())
    )
}

#[tokio::test]
async fn minted_tokens_verify_with_their_claims_and_expiry() {
    let config = config();
    let token = config
        .mint_token("alice", Some("acme"), true, Duration::from_secs(60))
        .expect("mint");
    let v = check(&config, &token).await.expect("verified");
    assert_eq!(v.claims["sub"], "alice");
    assert_eq!(v.claims["tenant"], "acme");
    assert_eq!(v.claims["roles"], json!(["admin"]));
    assert!(v.claims["iat"].is_i64());
    let in_a_minute = Utc::now() + TimeDelta::seconds(60);
    assert!((v.expires_at - in_a_minute).num_seconds().abs() <= 1);
}

#[tokio::test]
async fn hs256_secrets_are_picked_by_kid_or_each_tried_without_one() {
    let config = config();
    let old_kid = hs256_key_id(OLD_SECRET);
    for token in [
        hs256(Some(&old_kid), &claims(), OLD_SECRET),
        hs256(None, &claims(), OLD_SECRET),
        hs256(None, &claims(), SECRET),
    ] {
        check(&config, &token).await.expect("verified");
    }
    // The kid picks the key: the right secret under another secret's kid is refused.
    let crossed = hs256(Some(&hs256_key_id(SECRET)), &claims(), OLD_SECRET);
    assert_eq!(refusal(&config, &crossed).await, TokenError::Signature);
    // Once the old secret is dropped, its tokens are refused.
    let rotated = ServerConfig {
        jwt_secrets: vec![SECRET.to_vec()],
        ..config.clone()
    };
    let old = hs256(Some(&old_kid), &claims(), OLD_SECRET);
    let e = refusal(&rotated, &old).await;
    assert_eq!(e.code(), "unknown_key");
    let old_without_kid = hs256(None, &claims(), OLD_SECRET);
    assert_eq!(
        refusal(&rotated, &old_without_kid).await,
        TokenError::Signature
    );
}

#[tokio::test]
async fn jwks_keys_verify_rs256_and_es256() {
    let config = config();
    let v = check(&config, &rs256("test-rsa-a", &claims()))
        .await
        .expect("RS256");
    assert_eq!(v.claims["sub"], "alice");
    let es = sign(
        &json!({"alg": "ES256", "kid": "test-ec-p256"}),
        &claims(),
        &ec(),
        Algorithm::ES256,
    );
    check(&config, &es).await.expect("ES256");
    let no_kid = sign(
        &json!({"alg": "RS256"}),
        &claims(),
        &rsa(RSA_A),
        Algorithm::RS256,
    );
    check(&config, &no_kid)
        .await
        .expect("RS256 without kid: every RS256 key is tried");
    let identity_provider_only = ServerConfig {
        jwt_secrets: Vec::new(),
        ..config
    };
    check(&identity_provider_only, &rs256("test-rsa-a", &claims()))
        .await
        .expect("no secret needed");
}

#[tokio::test]
async fn algorithm_confusion_is_refused() {
    let config = config();
    for public_key in [RSA_A_PUBLIC_PEM, RSA_A_PUBLIC_DER] {
        // HS256 "signed" with the RSA public key as the HMAC secret, naming the RSA key.
        let named = hs256(Some("test-rsa-a"), &claims(), public_key);
        assert_eq!(refusal(&config, &named).await.code(), "algorithm_mismatch");
        // Without kid it is tried against the HS256 secrets only.
        let unnamed = hs256(None, &claims(), public_key);
        assert_eq!(refusal(&config, &unnamed).await, TokenError::Signature);
        // A server with no HS256 secret accepts no HS256 token at all.
        let identity_provider_only = ServerConfig {
            jwt_secrets: Vec::new(),
            ..config.clone()
        };
        for token in [named, unnamed] {
            assert_eq!(
                refusal(&identity_provider_only, &token).await.code(),
                "unsupported_algorithm"
            );
        }
    }
    // An algorithm the named key does not allow.
    let es_on_rsa = sign(
        &json!({"alg": "ES256", "kid": "test-rsa-a"}),
        &claims(),
        &ec(),
        Algorithm::ES256,
    );
    let e = refusal(&config, &es_on_rsa).await;
    assert_eq!(e.code(), "algorithm_mismatch");
    assert!(e.to_string().contains("RS256"), "{e}");
    let rs_on_hmac = sign(
        &json!({"alg": "RS256", "kid": hs256_key_id(SECRET)}),
        &claims(),
        &rsa(RSA_A),
        Algorithm::RS256,
    );
    assert_eq!(
        refusal(&config, &rs_on_hmac).await.code(),
        "algorithm_mismatch"
    );
}

#[tokio::test]
async fn unsupported_algorithms_are_refused_by_name() {
    let config = config();
    for alg in ["none", "NONE", "None", "nOnE"] {
        let token = unsigned(&json!({"alg": alg}), &claims());
        let e = refusal(&config, &token).await;
        assert_eq!(
            e,
            TokenError::Algorithm {
                alg: alg.into(),
                accepted: "HS256, RS256, ES256".into()
            }
        );
    }
    let hs512 = sign(
        &json!({"alg": "HS512"}),
        &claims(),
        &hmac(SECRET),
        Algorithm::HS512,
    );
    assert_eq!(
        refusal(&config, &hs512).await.code(),
        "unsupported_algorithm"
    );
    let secrets_only = ServerConfig {
        jwks_file: None,
        ..config
    };
    let e = refusal(&secrets_only, &rs256("test-rsa-a", &claims())).await;
    assert!(e.to_string().contains("accepts only HS256"), "{e}");
}

#[tokio::test]
async fn keys_no_one_has_are_unknown() {
    let config = config();
    let e = refusal(&config, &rs256("rotated-away", &claims())).await;
    assert_eq!(
        e,
        TokenError::UnknownKey {
            kid: Some("rotated-away".into()),
            alg: "RS256".into()
        }
    );
    let ignored_encryption_key = rs256("test-rsa-b-enc", &claims());
    assert_eq!(
        refusal(&config, &ignored_encryption_key).await.code(),
        "unknown_key"
    );
    // A JWKS URL that cannot be fetched has no keys to try for a token without kid, and
    // cannot tell whether the provider has one: unavailable, not unknown.
    let unreachable = ServerConfig {
        jwks_url: Some("http://127.0.0.1:1/jwks".into()),
        jwks_file: None,
        ..config
    };
    let es = sign(&json!({"alg": "ES256"}), &claims(), &ec(), Algorithm::ES256);
    let e = refusal(&unreachable, &es).await;
    assert_eq!(e, TokenError::KeysUnavailable);
}

#[tokio::test]
async fn bad_signatures_are_refused() {
    let config = config();
    let other_secret = hs256(None, &claims(), b"another-secret-another-secret-xx");
    assert_eq!(refusal(&config, &other_secret).await, TokenError::Signature);
    // Key B's signature under key A's id.
    let wrong_key = sign(
        &json!({"alg": "RS256", "kid": "test-rsa-a"}),
        &claims(),
        &rsa(RSA_B),
        Algorithm::RS256,
    );
    assert_eq!(refusal(&config, &wrong_key).await, TokenError::Signature);
    // Claims altered after signing.
    for token in [
        config
            .mint_token("alice", None, false, Duration::from_secs(60))
            .expect("mint"),
        rs256("test-rsa-a", &claims()),
    ] {
        let parts: Vec<&str> = token.split('.').collect();
        let forged = B64URL.encode(json!({"sub": "mallory", "exp": later(60)}).to_string());
        let tampered = format!("{}.{forged}.{}", parts[0], parts[2]);
        assert_eq!(refusal(&config, &tampered).await, TokenError::Signature);
    }
}

#[tokio::test]
async fn malformed_tokens_are_refused_before_any_key_is_tried() {
    let config = config();
    let long = format!("{}.e30.e30", "a".repeat(8 * 1024));
    let crit = hs256_with_header(json!({"alg": "HS256", "crit": ["exp"]}));
    let b64_false = hs256_with_header(json!({"alg": "HS256", "b64": false}));
    let numeric_kid = hs256_with_header(json!({"alg": "HS256", "kid": 7}));
    let bad_typ = hs256_with_header(json!({"alg": "HS256", "typ": 7}));
    let array_claims = sign(
        &json!({"alg": "HS256"}),
        &json!([1]),
        &hmac(SECRET),
        Algorithm::HS256,
    );
    let good = hs256(None, &claims(), SECRET);
    let bad_signature_encoding = format!("{}!", &good[..good.len() - 1]);
    for junk in [
        "",
        "a.b",
        "a.b.c.d",
        "!!!.e30.e30",
        "W10.e30.e30",
        "e30.e30.e30",
        long.as_str(),
        crit.as_str(),
        b64_false.as_str(),
        numeric_kid.as_str(),
        bad_typ.as_str(),
        array_claims.as_str(),
        bad_signature_encoding.as_str(),
    ] {
        let e = refusal(&config, junk).await;
        assert_eq!(e.code(), "malformed_token", "{junk:.80}: {e}");
    }
}

fn hs256_with_header(header: Value) -> String {
    sign(&header, &claims(), &hmac(SECRET), Algorithm::HS256)
}

#[tokio::test]
async fn the_validity_period_is_checked_with_leeway() {
    let config = config();
    let token = |claims: Value| hs256(None, &claims, SECRET);
    let expired = token(json!({"sub": "u", "exp": later(-120)}));
    assert!(matches!(
        refusal(&config, &expired).await,
        TokenError::Expired(_)
    ));
    let early = token(json!({"sub": "u", "exp": later(600), "nbf": later(300)}));
    assert!(matches!(
        refusal(&config, &early).await,
        TokenError::NotYetValid(_)
    ));
    for claims in [
        json!({"sub": "u"}),
        json!({"sub": "u", "exp": "tomorrow"}),
        json!({"sub": "u", "exp": later(60), "nbf": "now"}),
        json!({"sub": "u", "exp": 1e300}),
    ] {
        let e = refusal(&config, &token(claims.clone())).await;
        assert_eq!(e.code(), "invalid_claims", "{claims}: {e}");
    }
    let skewed = token(json!({"sub": "u", "exp": later(-10), "nbf": later(10)}));
    check(&config, &skewed).await.expect("within the leeway");
    let strict = ServerConfig {
        token_leeway: Duration::ZERO,
        ..config
    };
    assert!(matches!(
        refusal(&strict, &skewed).await,
        TokenError::Expired(_)
    ));
    let fractional = token(json!({"sub": "u", "exp": later(60) as f64 + 0.5}));
    check(&strict, &fractional).await.expect("fractional exp");
    let forever = ServerConfig {
        token_leeway: Duration::MAX,
        ..strict
    };
    check(&forever, &expired)
        .await
        .expect("a leeway beyond the calendar accepts any time");
}

#[tokio::test]
async fn issuer_and_audience_are_required_once_configured() {
    let config = ServerConfig {
        issuer: Some(ISSUER.into()),
        audience: vec!["api://errand".into(), "errand-backend".into()],
        ..config()
    };
    let with = |extra: Value| {
        let mut claims = claims();
        for (k, v) in extra.as_object().expect("object") {
            claims[k] = v.clone();
        }
        rs256("test-rsa-a", &claims)
    };
    for accepted in [
        json!({"iss": ISSUER, "aud": "api://errand"}),
        json!({"iss": ISSUER, "aud": ["other", "errand-backend"]}),
    ] {
        check(&config, &with(accepted.clone()))
            .await
            .unwrap_or_else(|e| panic!("{accepted}: {e}"));
    }
    for (claims, code) in [
        (json!({"aud": "api://errand"}), "invalid_issuer"),
        (
            json!({"iss": "https://evil.example", "aud": "api://errand"}),
            "invalid_issuer",
        ),
        (json!({"iss": 7, "aud": "api://errand"}), "invalid_issuer"),
        (json!({"iss": ISSUER}), "invalid_audience"),
        (
            json!({"iss": ISSUER, "aud": "api://other"}),
            "invalid_audience",
        ),
        (
            json!({"iss": ISSUER, "aud": ["a", "b"]}),
            "invalid_audience",
        ),
        (json!({"iss": ISSUER, "aud": 7}), "invalid_audience"),
    ] {
        let e = refusal(&config, &with(claims.clone())).await;
        assert_eq!(e.code(), code, "{claims}: {e}");
    }
    // The server's own tokens carry the issuer and the first audience.
    let minted = config
        .mint_token("alice", None, false, Duration::from_secs(60))
        .expect("mint");
    let v = check(&config, &minted).await.expect("own token");
    assert_eq!(v.claims["iss"], ISSUER);
    assert_eq!(v.claims["aud"], "api://errand");
}

#[tokio::test]
async fn without_an_audience_configured_any_audience_is_accepted() {
    let token = rs256(
        "test-rsa-a",
        &json!({"sub": "u", "exp": later(60), "aud": "whatever", "iss": "anyone"}),
    );
    check(&config(), &token).await.expect("accepted");
}

/// A file `name` holding `contents` in a directory of this test process.
fn temp_file(name: &str, contents: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("errand-token-tests-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("write");
    path
}

#[tokio::test]
async fn a_jwks_key_naming_its_algorithm_verifies_that_one_only() {
    let jwk = |text: &str| serde_json::from_str::<Value>(text).expect("JWK");
    let mut pss = jwk(include_str!("../../tests/fixtures/test-rsa-b.jwk.json"));
    pss["alg"] = json!("PS256");
    let rs = jwk(include_str!("../../tests/fixtures/test-rsa-a.jwk.json"));
    let document = json!({"keys": [pss, rs]}).to_string();
    let config = ServerConfig {
        jwks_file: Some(temp_file("pss.jwks.json", &document)),
        ..Default::default()
    };
    let header = |alg: &str| json!({"alg": alg, "kid": "test-rsa-b"});
    let ps256 = sign(&header("PS256"), &claims(), &rsa(RSA_B), Algorithm::PS256);
    check(&config, &ps256).await.expect("PS256");
    let rs256 = sign(&header("RS256"), &claims(), &rsa(RSA_B), Algorithm::RS256);
    let e = refusal(&config, &rs256).await;
    assert_eq!(e.code(), "algorithm_mismatch", "{e}");
    assert!(e.to_string().contains("PS256"), "{e}");
}

#[test]
fn jwks_files_that_cannot_be_used_are_named_in_the_error() {
    let not_json = temp_file("not-json.json", "{");
    let missing = not_json.with_file_name("missing.json");
    for (path, says) in [(&not_json, "not JSON"), (&missing, "No such file")] {
        let config = ServerConfig {
            jwks_file: Some(path.clone()),
            ..config()
        };
        let Err(e) = Verifier::new(&config) else {
            panic!("{} is not usable", path.display());
        };
        let message = e.to_string();
        assert!(
            message.contains(&path.display().to_string()) && message.contains(says),
            "{message}"
        );
    }
}
