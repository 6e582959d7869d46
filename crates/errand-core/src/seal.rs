//! Seal keys: the AEAD keys under which a task's whole context is sealed before it reaches a
//! store, and the ring that lets a deployment rotate them.
//!
//! A [`Secret`] is a plaintext credential (typically the caller's access token). A
//! [`SealKey`] is a 256-bit XChaCha20-Poly1305 key with a short public id derived from it; a
//! [`SealKeyRing`] is the list of keys one process holds: the first seals, any of them opens,
//! and a sealed document names the id of the key that sealed it. See
//! [`Context::seal`](crate::Context::seal) for what is sealed and what it is bound to.

use crate::xchacha::XChaCha;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use sha2::{Digest, Sha256};
use std::fmt;
use std::sync::Arc;
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

#[cfg(test)]
use crate::xchacha::NONCE_LEN;

/// A 256-bit key for sealing contexts, with its public key id.
///
/// The id is the first 16 hex digits of SHA-256 over a domain label and the key: it names the
/// key in sealed documents, logs and error messages without revealing anything about it.
/// Every process that submits or runs tasks of one deployment needs a ring that can open the
/// deployment's key; `errand serve` reads it from `ERRAND_SEAL_KEYS` or generates one into its
/// data directory.
///
/// ```
/// let key = errand_core::SealKey::generate();
/// assert_eq!(key.id().len(), 16);
/// let again = errand_core::SealKey::from_base64(&key.to_base64()).unwrap();
/// assert_eq!(again.id(), key.id());
/// ```
#[derive(Clone)]
pub struct SealKey {
    bytes: Zeroizing<[u8; 32]>,
    id: Arc<str>,
    cipher: Arc<XChaCha>,
}

impl SealKey {
    /// A fresh random key (from the operating system's generator, via `rand`'s thread RNG).
    pub fn generate() -> Self {
        Self::from_bytes(rand::random())
    }

    /// A key from its 32 raw bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        let digest = Sha256::new()
            .chain_update(b"errand.seal-key-id.v1\0")
            .chain_update(bytes)
            .finalize();
        let id: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        Self {
            bytes: Zeroizing::new(bytes),
            id: id.into(),
            cipher: Arc::new(XChaCha::new(bytes)),
        }
    }

    /// A key from its standard base64 form (44 characters), as written by [`SealKey::to_base64`].
    pub fn from_base64(text: &str) -> Result<Self, SealError> {
        let raw = Zeroizing::new(B64.decode(text.trim()).map_err(|_| SealError::BadKey)?);
        let bytes: [u8; 32] = raw.as_slice().try_into().map_err(|_| SealError::BadKey)?;
        Ok(Self::from_bytes(bytes))
    }

    /// The key in standard base64, for configuration files.
    pub fn to_base64(&self) -> String {
        B64.encode(self.bytes.as_slice())
    }

    /// The key's public id (16 hex digits).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Encrypts `plain` with XChaCha20-Poly1305 (see [`crate::xchacha`]), authenticating
    /// `aad` with it: the nonce, then the ciphertext and its tag.
    pub(crate) fn encrypt(&self, plain: &[u8], aad: &[u8]) -> Result<Vec<u8>, SealError> {
        self.cipher.encrypt(plain, aad).ok_or(SealError::Encrypt)
    }

    /// Opens what [`SealKey::encrypt`] made; `None` when any byte of it, or of `aad`, differs.
    pub(crate) fn decrypt(&self, sealed: &[u8], aad: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        self.cipher.decrypt(sealed, aad)
    }
}

impl fmt::Debug for SealKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SealKey({})", self.id)
    }
}

/// The seal keys of one process: the first seals, any of them opens.
///
/// Rotating a key never fails queued work: start every process with `new,old` (the new key
/// seals, tasks sealed under the old one still open), and drop `old` once no task sealed under
/// it remains. A ring of one key is what [`SealKey`] converts into.
///
/// ```
/// use errand_core::{SealKey, SealKeyRing};
/// let (old, new) = (SealKey::generate(), SealKey::generate());
/// let list = format!("{},{}", new.to_base64(), old.to_base64());
/// let ring = SealKeyRing::from_base64_list(&list).unwrap();
/// assert_eq!(ring.sealing().id(), new.id());
/// assert!(ring.get(old.id()).is_some());
/// assert_eq!(ring.ids(), [new.id(), old.id()]);
/// ```
#[derive(Clone)]
pub struct SealKeyRing {
    keys: Arc<[SealKey]>,
}

impl SealKeyRing {
    /// A ring of `keys`, the first of which seals. Fails when it is empty or holds one key
    /// twice.
    pub fn new(keys: impl IntoIterator<Item = SealKey>) -> Result<Self, SealError> {
        let keys: Vec<SealKey> = keys.into_iter().collect();
        if keys.is_empty() {
            return Err(SealError::EmptyRing);
        }
        for (i, key) in keys.iter().enumerate() {
            if keys[..i].iter().any(|k| k.id == key.id) {
                return Err(SealError::DuplicateKey(key.id.to_string()));
            }
        }
        Ok(Self { keys: keys.into() })
    }

    /// A ring from comma-separated base64 keys (`ERRAND_SEAL_KEYS`), the first of which seals.
    /// Spaces around keys are ignored.
    pub fn from_base64_list(list: &str) -> Result<Self, SealError> {
        let keys = list
            .split(',')
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .map(SealKey::from_base64)
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(keys)
    }

    /// The key that seals.
    pub fn sealing(&self) -> &SealKey {
        &self.keys[0]
    }

    /// The key with id `id`, if the ring holds it.
    pub fn get(&self, id: &str) -> Option<&SealKey> {
        self.keys.iter().find(|k| &*k.id == id)
    }

    /// The ids of the ring's keys, sealing key first.
    pub fn ids(&self) -> Vec<&str> {
        self.keys.iter().map(SealKey::id).collect()
    }

    /// Every key, sealing key first.
    pub fn keys(&self) -> &[SealKey] {
        &self.keys
    }
}

impl From<SealKey> for SealKeyRing {
    fn from(key: SealKey) -> Self {
        Self {
            keys: Arc::from([key]),
        }
    }
}

impl fmt::Debug for SealKeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SealKeyRing").field(&self.ids()).finish()
    }
}

/// Why a key, a ring or a seal could not be made.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum SealError {
    /// The key text is not base64 of exactly 32 bytes.
    #[error("a seal key must be 32 bytes in standard base64 (44 characters)")]
    BadKey,
    /// A ring needs at least one key.
    #[error("the seal key ring is empty: give at least one base64 key")]
    EmptyRing,
    /// A ring lists the same key twice.
    #[error("the seal key ring lists key {0} twice")]
    DuplicateKey(String),
    /// Encryption failed (never expected with a valid key).
    #[error("sealing the context failed")]
    Encrypt,
    /// The context could not be serialized (never expected).
    #[error("the context could not be serialized for sealing: {0}")]
    Serialize(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encrypt_binds_the_associated_data() {
        let key = SealKey::generate();
        let sealed = key.encrypt(b"hunter2", b"task-1").unwrap();
        assert_eq!(
            key.decrypt(&sealed, b"task-1").unwrap().as_slice(),
            b"hunter2"
        );
        assert!(key.decrypt(&sealed, b"task-2").is_none(), "moved");
        assert!(SealKey::generate().decrypt(&sealed, b"task-1").is_none());
        let mut flipped = sealed.clone();
        flipped[NONCE_LEN] ^= 1;
        assert!(key.decrypt(&flipped, b"task-1").is_none(), "altered");
        assert!(key.decrypt(&sealed[..10], b"task-1").is_none(), "cut");
    }

    #[test]
    fn key_ids_are_stable_and_distinct() {
        let key = SealKey::from_bytes([7; 32]);
        assert_eq!(key.id(), SealKey::from_bytes([7; 32]).id());
        assert_ne!(key.id(), SealKey::from_bytes([8; 32]).id());
        assert!(key.id().bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(format!("{key:?}"), format!("SealKey({})", key.id()));
        assert!(!format!("{key:?}").contains(&key.to_base64()));
    }

    #[test]
    fn rings_refuse_bad_lists() {
        assert_eq!(
            SealKeyRing::from_base64_list("").unwrap_err(),
            SealError::EmptyRing
        );
        assert_eq!(
            SealKeyRing::from_base64_list("short").unwrap_err(),
            SealError::BadKey
        );
        let key = SealKey::generate();
        let twice = format!("{0}, {0}", key.to_base64());
        assert_eq!(
            SealKeyRing::from_base64_list(&twice).unwrap_err(),
            SealError::DuplicateKey(key.id().to_string())
        );
        let one: SealKeyRing = key.clone().into();
        assert_eq!(one.ids(), [key.id()]);
    }
}
