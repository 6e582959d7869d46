//! Sealing credentials with an AEAD, so that stores, logs and events only ever see ciphertext.
//!
//! A [`Secret`] is the plaintext credential (typically the caller's access token). Before a
//! [`Context`](crate::Context) leaves the process it is sealed under a [`SealKey`] with
//! XChaCha20-Poly1305: a random 192-bit nonce per credential, the expiry bound in as associated
//! data so it cannot be moved. Only a process holding the same key can open it again, and the
//! [`Worker`](crate::Worker) does that just before it runs the task.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use zeroize::Zeroizing;

/// A plaintext credential. It cannot be printed: `Debug` shows `Secret(***)` and there is no
/// `Display`; call [`Secret::expose`] where the value is really needed.
///
/// ```
/// let s = errand_core::Secret::new("tok-123");
/// assert_eq!(format!("{s:?}"), "Secret(***)");
/// assert_eq!(s.expose(), "tok-123");
/// ```
#[derive(Clone)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// Wraps a credential. The memory is zeroed when the last copy is dropped.
    pub fn new(value: impl Into<String>) -> Self {
        Self(Zeroizing::new(value.into()))
    }

    /// The plaintext value.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// A 256-bit key for sealing credentials. Every process that submits or runs tasks with
/// credentials needs the same key; `errand serve` reads it from configuration or generates one
/// into its data directory.
#[derive(Clone)]
pub struct SealKey(Zeroizing<[u8; 32]>);

impl SealKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        let key = XChaCha20Poly1305::generate_key(&mut OsRng);
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(&key);
        Self(Zeroizing::new(bytes))
    }

    /// A key from its 32 raw bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// A key from its standard base64 form (44 characters), as written by [`SealKey::to_base64`].
    pub fn from_base64(text: &str) -> Result<Self, SealError> {
        let raw = Zeroizing::new(B64.decode(text.trim()).map_err(|_| SealError::BadKey)?);
        let bytes: [u8; 32] = raw.as_slice().try_into().map_err(|_| SealError::BadKey)?;
        Ok(Self::from_bytes(bytes))
    }

    /// The key in standard base64, for configuration files.
    pub fn to_base64(&self) -> String {
        B64.encode(self.0.as_slice())
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(self.0.as_slice().into())
    }

    /// Seals `secret`, binding `expires_at` to the ciphertext.
    pub fn seal(
        &self,
        secret: &Secret,
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<SealedCredential, SealError> {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let aad = associated_data(expires_at);
        let ciphertext = self
            .cipher()
            .encrypt(
                &nonce,
                Payload {
                    msg: secret.expose().as_bytes(),
                    aad: &aad,
                },
            )
            .map_err(|_| SealError::Encrypt)?;
        Ok(SealedCredential {
            v: 1,
            nonce: B64.encode(nonce),
            ciphertext: B64.encode(ciphertext),
            expires_at,
        })
    }

    /// Opens a sealed credential. Fails when the key is not the one it was sealed with, or
    /// when any byte of it (expiry included) was changed.
    pub fn open(&self, sealed: &SealedCredential) -> Result<Secret, SealError> {
        if sealed.v != 1 {
            return Err(SealError::Version(sealed.v));
        }
        let nonce = B64
            .decode(&sealed.nonce)
            .map_err(|_| SealError::Unopenable)?;
        if nonce.len() != 24 {
            return Err(SealError::Unopenable);
        }
        let ciphertext = B64
            .decode(&sealed.ciphertext)
            .map_err(|_| SealError::Unopenable)?;
        let aad = associated_data(sealed.expires_at);
        let plain = self
            .cipher()
            .decrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| SealError::Unopenable)?;
        let plain = Zeroizing::new(plain);
        let text = std::str::from_utf8(&plain).map_err(|_| SealError::Unopenable)?;
        Ok(Secret::new(text))
    }
}

impl fmt::Debug for SealKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SealKey(***)")
    }
}

fn associated_data(expires_at: Option<DateTime<Utc>>) -> Vec<u8> {
    let mut aad = b"errand.credential.v1|".to_vec();
    if let Some(at) = expires_at {
        aad.extend_from_slice(at.timestamp_millis().to_string().as_bytes());
    }
    aad
}

/// A credential sealed under a [`SealKey`]: what stores hold. Its `Debug` shows only the expiry.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedCredential {
    v: u8,
    nonce: String,
    ciphertext: String,
    /// When the credential stops being handed to tasks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
}

impl fmt::Debug for SealedCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealedCredential")
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// Why sealing or opening a credential failed.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum SealError {
    /// The key text is not base64 of exactly 32 bytes.
    #[error("seal key must be 32 bytes in standard base64 (44 characters)")]
    BadKey,
    /// Encryption failed (never expected with a valid key).
    #[error("sealing the credential failed")]
    Encrypt,
    /// Wrong key, or the sealed data was tampered with.
    #[error(
        "the sealed credential could not be opened: wrong seal key, or the data was tampered with"
    )]
    Unopenable,
    /// Sealed by a newer errand.
    #[error("the sealed credential has unknown format version {0}")]
    Version(u8),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let key = SealKey::generate();
        let sealed = key.seal(&Secret::new("hunter2"), None).unwrap();
        assert_eq!(key.open(&sealed).unwrap().expose(), "hunter2");
        let json = serde_json::to_string(&sealed).unwrap();
        assert!(!json.contains("hunter2"));
        assert!(!format!("{sealed:?}").contains(&sealed.ciphertext));
    }

    #[test]
    fn wrong_key_and_tampering_fail() {
        let key = SealKey::generate();
        let at = Utc::now();
        let sealed = key.seal(&Secret::new("hunter2"), Some(at)).unwrap();
        assert_eq!(
            SealKey::generate().open(&sealed).unwrap_err(),
            SealError::Unopenable
        );
        let mut moved = sealed.clone();
        moved.expires_at = Some(at + chrono::Duration::hours(1));
        assert_eq!(key.open(&moved).unwrap_err(), SealError::Unopenable);
        let mut flipped = sealed.clone();
        let mut bytes = B64.decode(&flipped.ciphertext).unwrap();
        bytes[0] ^= 1;
        flipped.ciphertext = B64.encode(bytes);
        assert_eq!(key.open(&flipped).unwrap_err(), SealError::Unopenable);
    }

    #[test]
    fn key_text_round_trip_and_rejects_garbage() {
        let key = SealKey::generate();
        let again = SealKey::from_base64(&key.to_base64()).unwrap();
        let sealed = key.seal(&Secret::new("x"), None).unwrap();
        assert_eq!(again.open(&sealed).unwrap().expose(), "x");
        assert_eq!(
            SealKey::from_base64("short").unwrap_err(),
            SealError::BadKey
        );
        assert_eq!(format!("{key:?}"), "SealKey(***)");
    }
}
