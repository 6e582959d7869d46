//! [`StreamLimits`]: caps on the event streams open at once, per user and in all, so that no
//! caller (or flood of callers) can hold an unbounded number of connections and store watches.

use errand_core::Owner;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// How many event streams are open, per owner and in all, against their caps.
#[derive(Debug)]
pub(crate) struct StreamLimits {
    per_user: usize,
    total: usize,
    open: Mutex<Open>,
}

#[derive(Debug, Default)]
struct Open {
    total: usize,
    by_owner: HashMap<Owner, usize>,
}

/// Which cap a refused stream hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The caller has `per_user` streams open.
    User(usize),
    /// The server has `total` streams open.
    Total(usize),
}

impl StreamLimits {
    /// At most `per_user` streams per owner (user and tenant) and `total` in all.
    pub(crate) fn new(per_user: usize, total: usize) -> Arc<Self> {
        Arc::new(Self {
            per_user,
            total,
            open: Mutex::new(Open::default()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Open> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a slot for a stream of `owner`, or says which cap is reached. The slot is given
    /// back when the returned guard drops (the stream ends or its client goes away).
    pub(crate) fn open(self: &Arc<Self>, owner: &Owner) -> Result<StreamSlot, Refused> {
        let mut open = self.lock();
        if open.total >= self.total {
            return Err(Refused::Total(self.total));
        }
        let count = open.by_owner.get(owner).copied().unwrap_or(0);
        if count >= self.per_user {
            return Err(Refused::User(self.per_user));
        }
        open.total += 1;
        open.by_owner.insert(owner.clone(), count + 1);
        Ok(StreamSlot {
            limits: Arc::clone(self),
            owner: owner.clone(),
        })
    }
}

/// One open stream's slot; dropping it frees the slot.
#[derive(Debug)]
pub(crate) struct StreamSlot {
    limits: Arc<StreamLimits>,
    owner: Owner,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self.limits.lock();
        open.total = open.total.saturating_sub(1);
        if let Some(count) = open.by_owner.get_mut(&self.owner) {
            *count -= 1;
            if *count == 0 {
                open.by_owner.remove(&self.owner);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_hold_per_owner_and_in_all_and_slots_come_back() {
        let limits = StreamLimits::new(2, 3);
        let alice = Owner::new("alice", None);
        let bob = Owner::new("bob", None);
        let a1 = limits.open(&alice).expect("first");
        let _a2 = limits.open(&alice).expect("second");
        assert_eq!(limits.open(&alice).unwrap_err(), Refused::User(2));
        let _b1 = limits.open(&bob).expect("bob's own");
        assert_eq!(limits.open(&bob).unwrap_err(), Refused::Total(3));
        drop(a1);
        let _b2 = limits.open(&bob).expect("a slot came back");
        assert_eq!(
            limits
                .open(&Owner::new("alice", Some("acme".into())))
                .unwrap_err(),
            Refused::Total(3)
        );
        assert_eq!(limits.lock().by_owner.len(), 2);
    }
}
