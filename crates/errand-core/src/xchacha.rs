//! XChaCha20-Poly1305 (draft-irtf-cfrg-xchacha), built from HChaCha20 (the `chacha20` crate)
//! and `ring`'s ChaCha20-Poly1305 (vectorized assembly).
//!
//! A message's 24-byte nonce is a 16-byte prefix, from which HChaCha20 derives the subkey,
//! and an 8-byte counter, which becomes ChaCha20-Poly1305's 96-bit nonce after 4 zero bytes.
//! Each [`XChaCha`] draws a random prefix once and counts up from there, so nonces never repeat
//! (2^128 prefixes, 2^64 messages each) and the subkey is derived once per prefix rather than
//! once per message; subkeys of other processes' prefixes are kept for the next message
//! that names one. Every message is standard XChaCha20-Poly1305: any implementation opens it.

use chacha20::cipher::consts::U10;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};
use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use zeroize::Zeroizing;

/// The length of a message's nonce.
pub(crate) const NONCE_LEN: usize = 24;
/// The length of the Poly1305 tag after the ciphertext.
pub(crate) const TAG_LEN: usize = 16;
/// How many other prefixes' subkeys are kept.
const KEPT_SUBKEYS: usize = 64;

/// One key's XChaCha20-Poly1305.
pub(crate) struct XChaCha {
    key: Zeroizing<[u8; 32]>,
    prefix: [u8; 16],
    subkey: LessSafeKey,
    counter: AtomicU64,
    others: Mutex<VecDeque<([u8; 16], LessSafeKey)>>,
}

impl XChaCha {
    /// The cipher of `key`, with a fresh random nonce prefix.
    pub(crate) fn new(key: [u8; 32]) -> Self {
        let key = Zeroizing::new(key);
        let prefix: [u8; 16] = rand::random();
        let subkey = derive(&key, &prefix);
        Self {
            key,
            prefix,
            subkey,
            counter: AtomicU64::new(0),
            others: Mutex::new(VecDeque::new()),
        }
    }

    /// Encrypts `plain`, authenticating `aad` with it: the nonce, then the ciphertext and tag.
    /// Fails only once 2^64 messages used this prefix.
    pub(crate) fn encrypt(&self, plain: &[u8], aad: &[u8]) -> Option<Vec<u8>> {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        if n == u64::MAX {
            return None;
        }
        let count = n.to_le_bytes();
        let mut out = Vec::with_capacity(NONCE_LEN + plain.len() + TAG_LEN);
        out.extend_from_slice(&self.prefix);
        out.extend_from_slice(&count);
        out.extend_from_slice(plain);
        let tag = self
            .subkey
            .seal_in_place_separate_tag(short_nonce(&count), Aad::from(aad), &mut out[NONCE_LEN..])
            .ok()?;
        out.extend_from_slice(tag.as_ref());
        Some(out)
    }

    /// Opens what [`XChaCha::encrypt`] (or any XChaCha20-Poly1305) made; `None` when any byte
    /// of it, or of `aad`, differs.
    pub(crate) fn decrypt(&self, sealed: &[u8], aad: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        if sealed.len() < NONCE_LEN + TAG_LEN {
            return None;
        }
        let (prefix, rest) = sealed.split_at(16);
        let (count, body) = rest.split_at(8);
        let prefix: [u8; 16] = prefix.try_into().ok()?;
        let count: [u8; 8] = count.try_into().ok()?;
        let mut buffer = Zeroizing::new(body.to_vec());
        let aad = Aad::from(aad);
        let opened = if prefix == self.prefix {
            self.subkey
                .open_in_place(short_nonce(&count), aad, &mut buffer)
        } else {
            self.subkey_of(prefix)
                .open_in_place(short_nonce(&count), aad, &mut buffer)
        };
        let len = opened.ok()?.len();
        buffer.truncate(len);
        Some(buffer)
    }

    /// The subkey of another process's prefix, derived once and kept.
    fn subkey_of(&self, prefix: [u8; 16]) -> LessSafeKey {
        let mut others = self.others.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, key)) = others.iter().find(|(p, _)| *p == prefix) {
            return key.clone();
        }
        let key = derive(&self.key, &prefix);
        if others.len() == KEPT_SUBKEYS {
            others.pop_front();
        }
        others.push_back((prefix, key.clone()));
        key
    }
}

/// HChaCha20 of `key` and `prefix`, as a ChaCha20-Poly1305 key.
fn derive(key: &[u8; 32], prefix: &[u8; 16]) -> LessSafeKey {
    let mut subkey = Zeroizing::new([0u8; 32]);
    subkey.copy_from_slice(&chacha20::hchacha::<U10>(key.into(), prefix.into()));
    // A 32-byte key is always a valid ChaCha20-Poly1305 key.
    let unbound = UnboundKey::new(&CHACHA20_POLY1305, subkey.as_slice())
        .unwrap_or_else(|_| unreachable!("ChaCha20-Poly1305 takes 32-byte keys"));
    LessSafeKey::new(unbound)
}

/// ChaCha20-Poly1305's nonce for the counter part of an XChaCha nonce.
fn short_nonce(count: &[u8; 8]) -> Nonce {
    let mut short = [0u8; 12];
    short[4..].copy_from_slice(count);
    Nonce::assume_unique_for_key(short)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The construction is XChaCha20-Poly1305 exactly: RustCrypto's implementation opens what
    /// it seals, and it opens what RustCrypto seals (with another process's prefix).
    #[test]
    fn it_is_xchacha20_poly1305_byte_for_byte() {
        use chacha20poly1305::aead::{Aead, KeyInit, Payload};
        use chacha20poly1305::{XChaCha20Poly1305, XNonce};
        let ours = XChaCha::new([0x42; 32]);
        let reference = XChaCha20Poly1305::new((&[0x42u8; 32]).into());
        for len in [0usize, 1, 63, 64, 65, 300, 4096] {
            let plain: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let aad = b"bound to task 7";
            let sealed = ours.encrypt(&plain, aad).unwrap();
            let (nonce, body) = sealed.split_at(NONCE_LEN);
            let theirs = reference
                .encrypt(XNonce::from_slice(nonce), Payload { msg: &plain, aad })
                .unwrap();
            assert_eq!(body, theirs.as_slice(), "{len} bytes");
            let foreign: [u8; NONCE_LEN] = rand::random();
            let mut from_them = foreign.to_vec();
            from_them.extend_from_slice(
                &reference
                    .encrypt(XNonce::from_slice(&foreign), Payload { msg: &plain, aad })
                    .unwrap(),
            );
            assert_eq!(
                ours.decrypt(&from_them, aad).unwrap().as_slice(),
                plain.as_slice()
            );
            assert_eq!(
                ours.decrypt(&from_them, aad).unwrap().as_slice(),
                plain.as_slice(),
                "kept subkey"
            );
        }
    }

    #[test]
    fn nonces_never_repeat_and_other_prefixes_are_kept_boundedly() {
        let a = XChaCha::new([7; 32]);
        let first = a.encrypt(b"x", b"").unwrap();
        let second = a.encrypt(b"x", b"").unwrap();
        assert_ne!(first[..NONCE_LEN], second[..NONCE_LEN]);
        assert_eq!(first[..16], second[..16], "one prefix per cipher");
        let senders: Vec<XChaCha> = (0..KEPT_SUBKEYS + 5)
            .map(|_| XChaCha::new([7; 32]))
            .collect();
        for s in &senders {
            let m = s.encrypt(b"hello", b"aad").unwrap();
            assert_eq!(a.decrypt(&m, b"aad").unwrap().as_slice(), b"hello");
            assert!(a.decrypt(&m, b"other").is_none());
        }
        assert_eq!(a.others.lock().unwrap().len(), KEPT_SUBKEYS);
    }
}
