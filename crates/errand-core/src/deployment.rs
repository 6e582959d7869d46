//! One deployment, one key: every process sharing a store must be able to open what the others
//! seal, and accept the tokens the others mint.
//!
//! Each key set (the seal keys, the token secrets) is recorded in the store by the id of the
//! key it signs or seals with. [`check_keys`] runs when a process starts:
//! - nothing recorded: this process's signing key id is recorded;
//! - the recorded id is one of this process's keys: the process may start, and when it signs
//!   with a different key of its set (it is rotating forward), its own id is recorded instead;
//! - the recorded id is none of this process's keys: the process must refuse to start, because
//!   it could not open what the others seal (or the others would refuse its tokens).
//!
//! Rotating a key is therefore two steps: give every process `old` as its second key, then
//! make `new` the first key everywhere (the record follows the processes that start with it);
//! drop `old` once no task sealed under it remains.

use crate::store::{Store, StoreError};

/// Which key set a record is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// The seal keys of task contexts.
    Seal,
    /// The secrets of the bearer tokens processes mint (HS256).
    Token,
}

impl KeyKind {
    /// The name the record is kept under.
    pub fn meta_name(self) -> &'static str {
        match self {
            KeyKind::Seal => "seal_key_id",
            KeyKind::Token => "token_key_id",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            KeyKind::Seal => "seal key",
            KeyKind::Token => "token secret",
        }
    }
}

/// A process's keys of one kind, by id: the one it signs or seals with, and all it accepts
/// (the signing one included).
#[derive(Debug, Clone, Copy)]
pub struct KeySet<'a> {
    /// What the keys are for.
    pub kind: KeyKind,
    /// The id of the key this process signs or seals with.
    pub signing: &'a str,
    /// The ids of every key this process opens or accepts.
    pub accepted: &'a [&'a str],
}

/// What [`check_keys`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyCheck {
    /// Nothing was recorded; this process's signing key id now is.
    Recorded,
    /// The recorded id is this process's signing key.
    Matches,
    /// The recorded id is one of this process's other keys; its signing key id is recorded now.
    Rotated {
        /// The id that was recorded before.
        previous: String,
    },
}

/// The process must not start, or the check could not be made.
#[derive(Debug, thiserror::Error)]
pub enum DeploymentError {
    /// The store records a key this process does not hold.
    #[error(
        "this deployment's store records {what} {recorded} as the one its processes use, but this process holds only {}: it could not open what the others seal, or they would refuse what it signs; give it the deployment's keys (with {recorded} among them) or point it at its own store",
        ours.join(", ")
    )]
    Mismatch {
        /// `seal key` or `token secret`.
        what: &'static str,
        /// The id recorded in the store.
        recorded: String,
        /// The ids this process holds, signing key first.
        ours: Vec<String>,
    },
    /// The store could not be read or written.
    #[error("the deployment's keys could not be checked: {0}")]
    Store(#[from] StoreError),
}

/// How many times a lost race to update the record is retried.
const SWAP_ATTEMPTS: usize = 8;

/// Checks `keys` against the deployment's record in `store`, and records or advances it (see
/// the [module docs](self)).
///
/// ```
/// use errand_core::deployment::{check_keys, KeyCheck, KeyKind, KeySet};
/// use errand_core::MemoryStore;
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let store = MemoryStore::new();
/// let first = KeySet { kind: KeyKind::Seal, signing: "k1", accepted: &["k1"] };
/// assert_eq!(check_keys(&store, first).await.unwrap(), KeyCheck::Recorded);
/// let stranger = KeySet { kind: KeyKind::Seal, signing: "k9", accepted: &["k9"] };
/// assert!(check_keys(&store, stranger).await.is_err());
/// # }
/// ```
pub async fn check_keys(store: &dyn Store, keys: KeySet<'_>) -> Result<KeyCheck, DeploymentError> {
    let name = keys.kind.meta_name();
    let mut last = None;
    for _ in 0..SWAP_ATTEMPTS {
        let recorded = store.get_meta(name).await?;
        let outcome = match recorded.as_deref() {
            None => KeyCheck::Recorded,
            Some(id) if id == keys.signing => return Ok(KeyCheck::Matches),
            Some(id) if keys.accepted.contains(&id) => KeyCheck::Rotated {
                previous: id.to_string(),
            },
            Some(id) => {
                return Err(DeploymentError::Mismatch {
                    what: keys.kind.describe(),
                    recorded: id.chars().take(64).collect(),
                    ours: std::iter::once(keys.signing)
                        .chain(keys.accepted.iter().copied().filter(|k| *k != keys.signing))
                        .map(String::from)
                        .collect(),
                });
            }
        };
        if store
            .swap_meta(name, recorded.as_deref(), keys.signing)
            .await?
        {
            return Ok(outcome);
        }
        last = recorded;
    }
    Err(DeploymentError::Store(StoreError::Backend(format!(
        "the {} record kept changing while this process tried to update it (last seen: {})",
        keys.kind.describe(),
        last.as_deref().unwrap_or("nothing")
    ))))
}
