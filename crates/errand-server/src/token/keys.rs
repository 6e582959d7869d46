//! The keys a token can be verified with: HS256 secrets, and the signing keys of a JWKS
//! (RFC 7517), each bound to the one algorithm it may verify.

use super::hs256_key_id;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyOperations, PublicKeyUse};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};
use serde_json::Value;

/// The algorithm families of JWKS keys: RSA keys verify RS256 (or the RSA algorithm their
/// `alg` names), EC keys the ES algorithm of their curve.
pub(crate) const JWKS_FAMILIES: [AlgorithmFamily; 2] = [AlgorithmFamily::Rsa, AlgorithmFamily::Ec];

/// A verification key: its id, the one algorithm it verifies, and the key itself.
#[derive(Clone)]
pub(crate) struct Key {
    /// The key id tokens name it by (`kid`); a JWKS key may have none.
    pub kid: Option<String>,
    /// The only algorithm tokens verified with this key may use.
    pub algorithm: Algorithm,
    /// The key, for `jsonwebtoken`.
    pub decoding: DecodingKey,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

/// The HS256 keys of `secrets`, each with its derived key id.
pub(crate) fn secret_keys(secrets: &[Vec<u8>]) -> Result<Vec<Key>, String> {
    secrets
        .iter()
        .enumerate()
        .map(|(i, secret)| {
            let decoding = DecodingKey::from_secret(secret)
                .map_err(|e| format!("jwt_secrets[{i}] cannot key HMAC-SHA256: {e}"))?;
            Ok(Key {
                kid: Some(hs256_key_id(secret)),
                algorithm: Algorithm::HS256,
                decoding,
            })
        })
        .collect()
}

/// The signing keys of a JWKS document (`{"keys": [...]}`) that errand can use. Keys of other
/// types, for encryption, or whose `alg` does not fit their type are skipped (and logged at
/// debug level); a document without one usable key is an error.
pub(crate) fn parse_jwks(document: &[u8]) -> Result<Vec<Key>, String> {
    let value: Value = serde_json::from_slice(document)
        .map_err(|e| format!("it is not JSON ({e}); a JWKS is {{\"keys\": [...]}}"))?;
    let Some(entries) = value.get("keys").and_then(Value::as_array) else {
        return Err("it has no \"keys\" array; a JWKS is {\"keys\": [...]}".into());
    };
    let mut keys = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        match signing_key(entry) {
            Ok(key) => keys.push(key),
            Err(why) => {
                let kid = entry.get("kid").and_then(|kid| kid.as_str());
                tracing::debug!(index = i, kid, why, "skipping a JWKS key");
            }
        }
    }
    if keys.is_empty() {
        return Err(format!(
            "none of its {} keys is a signing key errand can use (RSA, or EC on P-256 or P-384)",
            entries.len()
        ));
    }
    Ok(keys)
}

/// One JWKS entry as a verification key, or why it is not one.
fn signing_key(entry: &Value) -> Result<Key, String> {
    let jwk: Jwk = serde_json::from_value(entry.clone())
        .map_err(|e| format!("not a JWK errand can read: {e}"))?;
    let common = &jwk.common;
    match &common.public_key_use {
        None | Some(PublicKeyUse::Signature) => {}
        Some(other) => return Err(format!("its use is {other:?}, not signatures")),
    }
    if let Some(ops) = &common.key_operations
        && !ops.iter().any(|op| matches!(op, KeyOperations::Verify))
    {
        return Err("its key_ops do not include \"verify\"".into());
    }
    let named = match common.key_algorithm {
        None => None,
        Some(alg) => Some(
            Algorithm::try_from(alg)
                .map_err(|_| format!("its alg {alg:?} is not a signature algorithm"))?,
        ),
    };
    let algorithm = match (&jwk.algorithm, named) {
        (AlgorithmParameters::RSA(_), None) => Algorithm::RS256,
        (AlgorithmParameters::RSA(_), Some(alg)) if alg.family() == AlgorithmFamily::Rsa => alg,
        (AlgorithmParameters::EllipticCurve(ec), alg) => {
            let fits = match ec.curve {
                EllipticCurve::P256 => Algorithm::ES256,
                EllipticCurve::P384 => Algorithm::ES384,
                ref curve => return Err(format!("its curve {curve:?} is not supported")),
            };
            match alg {
                Some(alg) if alg != fits => {
                    return Err(format!("its alg {alg:?} does not fit its curve"));
                }
                _ => fits,
            }
        }
        (AlgorithmParameters::RSA(_), Some(alg)) => {
            return Err(format!("its alg {alg:?} is not an RSA signature algorithm"));
        }
        _ => return Err("its key type is not RSA or EC".into()),
    };
    check_size(&jwk.algorithm, algorithm)?;
    let decoding = DecodingKey::from_jwk(&jwk).map_err(|e| format!("unusable key: {e}"))?;
    Ok(Key {
        kid: common.key_id.clone(),
        algorithm,
        decoding,
    })
}

/// The shortest RSA modulus errand accepts, in bits (NIST SP 800-131A).
const MIN_RSA_BITS: usize = 2048;

/// Refuses RSA keys shorter than [`MIN_RSA_BITS`] and EC coordinates of the wrong size for
/// their curve, so a bad key is skipped when it is read rather than failing every token.
fn check_size(params: &AlgorithmParameters, algorithm: Algorithm) -> Result<(), String> {
    let decode = |b64: &str, what: &str| {
        B64URL
            .decode(b64)
            .map_err(|_| format!("its {what} is not base64url"))
    };
    match params {
        AlgorithmParameters::RSA(rsa) => {
            let n = decode(&rsa.n, "modulus")?;
            let significant = n.iter().skip_while(|b| **b == 0).count();
            if significant * 8 < MIN_RSA_BITS {
                return Err(format!(
                    "its modulus has fewer than {MIN_RSA_BITS} bits ({} bytes)",
                    significant
                ));
            }
            decode(&rsa.e, "exponent").map(drop)
        }
        AlgorithmParameters::EllipticCurve(ec) => {
            let size = if algorithm == Algorithm::ES384 {
                48
            } else {
                32
            };
            for (b64, what) in [(&ec.x, "x coordinate"), (&ec.y, "y coordinate")] {
                if decode(b64, what)?.len() != size {
                    return Err(format!("its {what} is not {size} bytes"));
                }
            }
            Ok(())
        }
        _ => Err("its key type is not RSA or EC".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const RSA_A: &str = include_str!("../../tests/fixtures/test-rsa-a.jwk.json");
    const RSA_B: &str = include_str!("../../tests/fixtures/test-rsa-b.jwk.json");
    const EC: &str = include_str!("../../tests/fixtures/test-ec-p256.jwk.json");

    fn jwk(text: &str) -> Value {
        serde_json::from_str(text).expect("fixture JWK")
    }

    fn with(mut key: Value, field: &str, value: Value) -> Value {
        key[field] = value;
        key
    }

    fn parse(keys: Vec<Value>) -> Result<Vec<Key>, String> {
        parse_jwks(json!({ "keys": keys }).to_string().as_bytes())
    }

    #[test]
    fn each_key_type_verifies_only_its_algorithm() {
        let keys = parse(vec![jwk(RSA_A), jwk(RSA_B), jwk(EC)]).expect("usable");
        let found: Vec<(Option<&str>, Algorithm)> = keys
            .iter()
            .map(|k| (k.kid.as_deref(), k.algorithm))
            .collect();
        assert_eq!(
            found,
            [
                (Some("test-rsa-a"), Algorithm::RS256),
                (Some("test-rsa-b"), Algorithm::RS256),
                (Some("test-ec-p256"), Algorithm::ES256),
            ]
        );
        let ps = parse(vec![with(jwk(RSA_B), "alg", json!("PS256"))]).expect("usable");
        assert_eq!(ps[0].algorithm, Algorithm::PS256);
        let coordinate = B64URL.encode([7u8; 48]);
        let p384 = with(
            with(with(jwk(EC), "crv", json!("P-384")), "x", json!(coordinate)),
            "y",
            json!(coordinate),
        );
        let p384 = parse(vec![p384]).expect("usable");
        assert_eq!(p384[0].algorithm, Algorithm::ES384);
    }

    #[test]
    fn keys_not_for_signatures_are_skipped() {
        let skipped = [
            with(jwk(RSA_B), "use", json!("enc")),
            with(jwk(RSA_B), "alg", json!("RSA-OAEP")),
            with(jwk(RSA_B), "alg", json!("HS256")),
            with(jwk(RSA_B), "alg", json!("ES256")),
            with(jwk(RSA_B), "key_ops", json!(["encrypt"])),
            with(jwk(EC), "alg", json!("ES384")),
            with(jwk(EC), "crv", json!("P-521")),
            with(jwk(EC), "crv", json!("P-384")),
            with(jwk(EC), "x", json!("AAAA")),
            with(jwk(RSA_B), "n", json!(B64URL.encode([0xffu8; 128]))),
            with(jwk(RSA_B), "n", json!("not base64!")),
            json!({"kty": "oct", "kid": "shared", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA"}),
            json!({"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}),
            json!({"kty": "RSA"}),
            json!("not an object"),
        ];
        for key in &skipped {
            assert!(parse(vec![key.clone()]).is_err(), "{key} is not usable");
        }
        let mut mixed = skipped.to_vec();
        mixed.push(jwk(RSA_A));
        let keys = parse(mixed).expect("the one usable key");
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].kid.as_deref(), Some("test-rsa-a"));
        let verify_only = parse(vec![with(jwk(EC), "key_ops", json!(["verify"]))]);
        assert!(verify_only.is_ok());
    }

    #[test]
    fn documents_that_are_not_a_jwks_are_refused_with_a_reason() {
        for (doc, says) in [
            ("not json", "not JSON"),
            ("[]", "\"keys\""),
            (r#"{"keys": {}}"#, "\"keys\""),
            (r#"{"keys": []}"#, "none of its 0 keys"),
        ] {
            let why = parse_jwks(doc.as_bytes()).expect_err(doc);
            assert!(why.contains(says), "{doc}: {why}");
        }
    }

    #[test]
    fn secrets_get_their_key_ids() {
        let keys = secret_keys(&[vec![1; 32], vec![2; 40]]).expect("keys");
        assert_eq!(
            keys[0].kid.as_deref(),
            Some(hs256_key_id(&[1; 32]).as_str())
        );
        assert_eq!(
            keys[1].kid.as_deref(),
            Some(hs256_key_id(&[2; 40]).as_str())
        );
        assert!(keys.iter().all(|k| k.algorithm == Algorithm::HS256));
    }
}
