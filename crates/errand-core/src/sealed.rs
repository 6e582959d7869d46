//! [`SealedContext`]: a task's whole context, encrypted and authenticated, bound to its task.
//!
//! A store is not trusted with identity. Before a context reaches one, [`Context::seal`]
//! serializes all of it (user, tenant, roles, request and correlation ids, traceparent,
//! headers, extra fields and the credential) and encrypts it with XChaCha20-Poly1305 under the
//! ring's sealing key. The task's id, name and arguments are bound in as associated data, so:
//! - a context altered in the store does not open;
//! - a context copied onto another task (a victim's credential pasted into an attacker's task)
//!   does not open;
//! - a task whose name or arguments were altered does not open either, so nobody runs other
//!   work under the submitter's identity.
//!
//! The stored form is one line of text, `ctx2.<key id>.<base64url(nonce ‖ ciphertext)>`, which
//! names the key that sealed it so that any ring holding that key opens it.

use crate::context::{Context, Inner};
use crate::id::TaskId;
use crate::seal::{SealError, SealKeyRing};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use std::fmt;
use std::sync::Arc;
use zeroize::Zeroizing;

/// The prefix of the sealed form this build writes and reads.
const PREFIX: &str = "ctx2";

/// What a sealed context belongs to: it opens only for the same task id, name and arguments
/// (the arguments' exact JSON text, as stored).
#[derive(Debug, Clone, Copy)]
pub struct SealBinding<'a> {
    /// The task's id.
    pub task_id: TaskId,
    /// The task's registered name.
    pub name: &'a str,
    /// The task's arguments, as the exact JSON text stored with it.
    pub args: &'a str,
}

impl<'a> SealBinding<'a> {
    /// A binding to the task `task_id` named `name` with arguments `args`.
    pub fn new(task_id: TaskId, name: &'a str, args: &'a str) -> Self {
        Self {
            task_id,
            name,
            args,
        }
    }

    /// The associated data of a document sealed under key `key_id`.
    fn associated_data(&self, key_id: &str) -> Vec<u8> {
        let mut aad = Vec::with_capacity(64 + self.name.len() + self.args.len());
        aad.extend_from_slice(b"errand.context.v2\0");
        aad.extend_from_slice(key_id.as_bytes());
        aad.push(0);
        aad.extend_from_slice(self.task_id.as_uuid().as_bytes());
        aad.extend_from_slice(&(self.name.len() as u64).to_le_bytes());
        aad.extend_from_slice(self.name.as_bytes());
        aad.extend_from_slice(self.args.as_bytes());
        aad
    }
}

/// A context sealed for one task: what a store keeps. Only [`SealedContext::open`], with a
/// ring holding its key and the same binding, turns it back into a [`Context`]. Its `Debug`
/// shows only its key id and size.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedContext(Arc<str>);

impl Context {
    /// Seals this context for the task `to` under `ring`'s sealing key. This is the only form in
    /// which a context reaches a store; seal it after the task's id, name and arguments are
    /// final (changing them afterwards makes the context fail to open).
    ///
    /// ```
    /// use errand_core::{Context, SealBinding, SealKey, SealKeyRing, Secret, TaskId};
    /// let ring = SealKeyRing::from(SealKey::generate());
    /// let id = TaskId::new();
    /// let ctx = Context::builder().user_id("alice").credential(Secret::new("tok"), None).build();
    /// let sealed = ctx.seal(&ring, SealBinding::new(id, "send", "{}")).unwrap();
    /// assert!(!sealed.as_str().contains("alice") && !sealed.as_str().contains("tok"));
    /// let back = sealed.open(&ring, SealBinding::new(id, "send", "{}")).unwrap();
    /// assert_eq!(back.user_id(), Some("alice"));
    /// // Moved onto another task, it does not open.
    /// assert!(sealed.open(&ring, SealBinding::new(TaskId::new(), "send", "{}")).is_err());
    /// ```
    pub fn seal(
        &self,
        ring: &SealKeyRing,
        to: SealBinding<'_>,
    ) -> Result<SealedContext, SealError> {
        let key = ring.sealing();
        let plain = Zeroizing::new(
            serde_json::to_vec(&*self.inner).map_err(|e| SealError::Serialize(e.to_string()))?,
        );
        let sealed = key.encrypt(&plain, &to.associated_data(key.id()))?;
        let mut text =
            String::with_capacity(PREFIX.len() + key.id().len() + 2 + sealed.len() * 4 / 3 + 4);
        text.push_str(PREFIX);
        text.push('.');
        text.push_str(key.id());
        text.push('.');
        B64URL.encode_string(&sealed, &mut text);
        Ok(SealedContext(text.into()))
    }
}

impl SealedContext {
    /// Wraps the text read back from a store (not checked until [`SealedContext::open`]).
    pub fn from_stored(text: impl Into<Arc<str>>) -> Self {
        Self(text.into())
    }

    /// The text to store.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id of the key that sealed it, if the text has errand's sealed form.
    pub fn key_id(&self) -> Option<&str> {
        self.parts().map(|(kid, _)| kid)
    }

    fn parts(&self) -> Option<(&str, &str)> {
        let mut parts = self.0.splitn(3, '.');
        match (parts.next(), parts.next(), parts.next()) {
            (Some(PREFIX), Some(kid), Some(body)) if !kid.is_empty() => Some((kid, body)),
            _ => None,
        }
    }

    /// Opens the context for the task `to`. Fails, and never yields a context, when the ring
    /// does not hold the sealing key, or when anything was altered: the document, or the task's
    /// id, name or arguments it is bound to. An expired credential is discarded, not opened.
    pub fn open(&self, ring: &SealKeyRing, to: SealBinding<'_>) -> Result<Context, UnsealError> {
        let Some((kid, body)) = self.parts() else {
            return Err(if self.0.starts_with('{') {
                UnsealError::Legacy
            } else {
                UnsealError::Malformed
            });
        };
        let key = ring.get(kid).ok_or_else(|| UnsealError::UnknownKey {
            key_id: kid.chars().take(32).collect(),
            ring: ring.ids().into_iter().map(String::from).collect(),
        })?;
        let sealed = B64URL.decode(body).map_err(|_| UnsealError::Malformed)?;
        let plain = key
            .decrypt(&sealed, &to.associated_data(kid))
            .ok_or(UnsealError::Integrity)?;
        let inner: Inner = serde_json::from_slice(&plain).map_err(|_| UnsealError::Malformed)?;
        Ok(Context {
            inner: Arc::new(inner),
        })
    }
}

impl fmt::Debug for SealedContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SealedContext({}, {} bytes)",
            self.key_id().unwrap_or("?"),
            self.0.len()
        )
    }
}

/// The error kind recorded on a task whose stored context was altered, moved or unreadable.
pub const CONTEXT_INTEGRITY: &str = "context_integrity";
/// The error kind recorded on a task sealed under a key the worker's ring does not hold.
pub const SEAL_KEY_UNKNOWN: &str = "seal_key_unknown";

/// Why a sealed context did not open. The task must not run: not anonymously, not as anyone.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum UnsealError {
    /// The document was altered in the store, or belongs to another task (or the task's name or
    /// arguments were altered).
    #[error(
        "the task's sealed context failed its integrity check: it was altered in the store, or copied from another task, or the task's name or arguments were changed"
    )]
    Integrity,
    /// The document names a key this process's ring does not hold.
    #[error(
        "the task's context was sealed under key {key_id}, which this process's seal keys ({}) do not include; add that key to ERRAND_SEAL_KEYS",
        ring.join(", ")
    )]
    UnknownKey {
        /// The key id the document names.
        key_id: String,
        /// The ids of the ring that tried.
        ring: Vec<String>,
    },
    /// A document from an errand that sealed only the credential: its identity fields were
    /// never authenticated, so it cannot be trusted.
    #[error(
        "the task's context was stored by an older errand without integrity protection; it cannot be trusted (drain queues before upgrading, or submit the task again)"
    )]
    Legacy,
    /// Not a sealed context at all.
    #[error("the task's stored context is not a sealed context document")]
    Malformed,
}

impl UnsealError {
    /// The error kind recorded on the task: [`SEAL_KEY_UNKNOWN`] or [`CONTEXT_INTEGRITY`].
    pub fn kind(&self) -> &'static str {
        match self {
            UnsealError::UnknownKey { .. } => SEAL_KEY_UNKNOWN,
            _ => CONTEXT_INTEGRITY,
        }
    }

    /// Whether another attempt could succeed: a worker holding the key may open it, while an
    /// altered document never opens.
    pub fn is_retryable(&self) -> bool {
        matches!(self, UnsealError::UnknownKey { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::{CredentialError, full_context as full};
    use crate::seal::SealKey;
    use chrono::Utc;

    fn ring() -> SealKeyRing {
        SealKey::generate().into()
    }

    #[test]
    fn round_trip_keeps_every_field_and_hides_all_of_them() {
        let ring = ring();
        let id = TaskId::new();
        let to = SealBinding::new(id, "send", r#"{"n":1}"#);
        let ctx = full("s3cret-token", None);
        let sealed = ctx.seal(&ring, to).unwrap();
        // (Only values long enough not to turn up by chance in base64.)
        for plain in ["s3cret-token", "00f067aa0ba902b7", "x-client"] {
            assert!(!sealed.as_str().contains(plain), "{plain} in {sealed:?}");
        }
        assert_eq!(sealed.key_id(), Some(ring.sealing().id()));
        let back = sealed.open(&ring, to).unwrap();
        assert_eq!(back.summary(), ctx.summary());
        assert_eq!(back.roles(), ["admin"]);
        assert_eq!(back.header("x-client"), Some("web"));
        assert_eq!(
            back.traceparent(),
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        );
        assert_eq!(back.extra()["plan"], "pro");
        assert_eq!(back.credential().unwrap().expose(), "s3cret-token");
        assert!(!format!("{sealed:?}").contains(sealed.as_str()));
    }

    #[test]
    fn it_opens_only_for_its_own_task_name_and_args() {
        let ring = ring();
        let id = TaskId::new();
        let sealed = full("tok", None)
            .seal(&ring, SealBinding::new(id, "send", "{}"))
            .unwrap();
        for other in [
            SealBinding::new(TaskId::new(), "send", "{}"),
            SealBinding::new(id, "delete", "{}"),
            SealBinding::new(id, "send", r#"{"all":true}"#),
        ] {
            assert_eq!(
                sealed.open(&ring, other).unwrap_err(),
                UnsealError::Integrity
            );
        }
    }

    #[test]
    fn altered_documents_never_open() {
        let ring = ring();
        let to = SealBinding::new(TaskId::new(), "send", "{}");
        let sealed = full("tok", None).seal(&ring, to).unwrap();
        let text = sealed.as_str();
        // Flip one character of the body (keeping it base64url).
        let last = text.len() - 5;
        let flipped_char = if &text[last..=last] == "A" { "B" } else { "A" };
        let flipped = format!("{}{}{}", &text[..last], flipped_char, &text[last + 1..]);
        assert_eq!(
            SealedContext::from_stored(flipped)
                .open(&ring, to)
                .unwrap_err(),
            UnsealError::Integrity
        );
        assert_eq!(
            SealedContext::from_stored(r#"{"user_id":"mallory"}"#)
                .open(&ring, to)
                .unwrap_err(),
            UnsealError::Legacy
        );
        for junk in ["", "ctx2", "ctx2..x", "ctx9.abc.def", "ctx2.00.%%%"] {
            let err = SealedContext::from_stored(junk)
                .open(&ring, to)
                .unwrap_err();
            assert!(
                matches!(err, UnsealError::Malformed | UnsealError::UnknownKey { .. }),
                "{junk}: {err:?}"
            );
            assert_eq!(
                err.kind(),
                if matches!(err, UnsealError::Malformed) {
                    CONTEXT_INTEGRITY
                } else {
                    SEAL_KEY_UNKNOWN
                }
            );
        }
        assert!(!UnsealError::Integrity.is_retryable());
    }

    #[test]
    fn rotation_opens_old_documents_and_unknown_keys_are_named() {
        let old = SealKey::generate();
        let new = SealKey::generate();
        let to = SealBinding::new(TaskId::new(), "send", "{}");
        let under_old = full("tok", None).seal(&old.clone().into(), to).unwrap();
        let rotated = SealKeyRing::new([new.clone(), old.clone()]).unwrap();
        assert_eq!(rotated.sealing().id(), new.id());
        assert_eq!(under_old.open(&rotated, to).unwrap().user_id(), Some("u1"));
        let under_new = full("tok", None).seal(&rotated, to).unwrap();
        assert_eq!(under_new.key_id(), Some(new.id()));
        let err = under_new.open(&old.clone().into(), to).unwrap_err();
        assert_eq!(
            err,
            UnsealError::UnknownKey {
                key_id: new.id().into(),
                ring: vec![old.id().into()]
            }
        );
        assert!(err.to_string().contains(new.id()) && err.to_string().contains(old.id()));
        assert_eq!(err.kind(), SEAL_KEY_UNKNOWN);
        assert!(err.is_retryable());
    }

    #[test]
    fn an_expired_credential_is_discarded_not_opened() {
        let ring = ring();
        let to = SealBinding::new(TaskId::new(), "send", "{}");
        let past = Utc::now() - chrono::Duration::seconds(1);
        let back = full("tok-expired", Some(past))
            .seal(&ring, to)
            .unwrap()
            .open(&ring, to)
            .unwrap();
        assert_eq!(
            back.credential().unwrap_err(),
            CredentialError::Expired(past)
        );
        assert!(back.has_credential());
        let soon = Utc::now() + chrono::Duration::hours(1);
        let back = full("tok", Some(soon))
            .seal(&ring, to)
            .unwrap()
            .open(&ring, to)
            .unwrap();
        assert_eq!(back.credential().unwrap().expose(), "tok");
    }
}
