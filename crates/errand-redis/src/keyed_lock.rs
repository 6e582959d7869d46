//! [`KeyedLocks`]: one async lock per key, so work on one key waits only for work on the same
//! key. The store sets up watches under it: two watchers of one task share one subscription,
//! while watchers of different tasks set up at the same time.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::OwnedMutexGuard;

/// Async locks by key, created on first use and forgotten once nobody holds or waits for
/// them.
#[derive(Debug)]
pub(crate) struct KeyedLocks<K> {
    locks: Mutex<HashMap<K, Slot>>,
}

/// One key's lock and how many callers hold or wait for it.
#[derive(Debug)]
struct Slot {
    lock: Arc<tokio::sync::Mutex<()>>,
    callers: usize,
}

impl<K> Default for KeyedLocks<K> {
    fn default() -> Self {
        Self {
            locks: Mutex::new(HashMap::new()),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl<K: Eq + Hash + Clone> KeyedLocks<K> {
    /// Waits until no other caller holds `key`'s lock, then holds it until the guard drops.
    /// Cancel-safe: a caller dropped while waiting is no longer counted.
    pub(crate) async fn lock(&self, key: K) -> KeyedGuard<'_, K> {
        let mutex = {
            let mut locks = lock(&self.locks);
            let slot = locks.entry(key.clone()).or_insert_with(|| Slot {
                lock: Arc::new(tokio::sync::Mutex::new(())),
                callers: 0,
            });
            slot.callers += 1;
            slot.lock.clone()
        };
        // From here on, dropping the ticket (on cancellation, or with the guard) uncounts us.
        let ticket = Ticket { owner: self, key };
        let held = mutex.lock_owned().await;
        KeyedGuard {
            _held: held,
            _ticket: ticket,
        }
    }

    /// How many keys have a lock (held or waited for).
    #[cfg(test)]
    fn len(&self) -> usize {
        lock(&self.locks).len()
    }
}

/// Counts one caller of a key's lock until dropped; the last one removes the lock.
struct Ticket<'a, K: Eq + Hash> {
    owner: &'a KeyedLocks<K>,
    key: K,
}

impl<K: Eq + Hash> Drop for Ticket<'_, K> {
    fn drop(&mut self) {
        let mut locks = lock(&self.owner.locks);
        if let Some(slot) = locks.get_mut(&self.key) {
            slot.callers -= 1;
            if slot.callers == 0 {
                locks.remove(&self.key);
            }
        }
    }
}

/// Holds a key's lock; dropping it lets the next caller of the same key in.
pub(crate) struct KeyedGuard<'a, K: Eq + Hash> {
    // Fields drop in order: the lock is released before the caller is uncounted.
    _held: OwnedMutexGuard<()>,
    _ticket: Ticket<'a, K>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    #[tokio::test]
    async fn different_keys_do_not_wait_for_each_other() {
        let locks = KeyedLocks::default();
        let _a = locks.lock(1).await;
        let b = locks.lock(2).now_or_never();
        assert!(b.is_some(), "key 2 was free while key 1 was held");
    }

    #[tokio::test]
    async fn the_same_key_waits_and_is_forgotten_when_free() {
        let locks = KeyedLocks::default();
        let first = locks.lock(7).await;
        let mut second = Box::pin(locks.lock(7));
        assert!((&mut second).now_or_never().is_none(), "key 7 is held");
        drop(first);
        let second = second.await;
        assert_eq!(locks.len(), 1);
        drop(second);
        assert_eq!(locks.len(), 0, "a free key leaves nothing behind");
    }

    #[tokio::test]
    async fn a_caller_dropped_while_waiting_is_uncounted() {
        let locks = KeyedLocks::default();
        let first = locks.lock("k").await;
        let mut waiting = Box::pin(locks.lock("k"));
        assert!((&mut waiting).now_or_never().is_none());
        drop(waiting);
        drop(first);
        assert_eq!(locks.len(), 0);
    }
}
