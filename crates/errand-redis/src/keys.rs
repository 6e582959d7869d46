//! Key and channel names. See the crate docs for the layout; every per-queue key starts with
//! the queue's hash tag `{prefix:queue}`, which is what the scripts receive as `KEYS[1]`.

use errand_core::{NewTask, Owner, StoreError, TaskId, TaskState};

/// Names keys and channels under one prefix.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    prefix: String,
    queues: String,
    /// The one cancellation channel on one Redis; `None` on a cluster, where each queue has
    /// its own.
    cancel: Option<String>,
}

impl Keys {
    /// Names under `prefix` (already checked by [`check_prefix`]); with `sharded` (a
    /// cluster), every channel carries its queue's hash tag.
    pub(crate) fn new(prefix: &str, sharded: bool) -> Self {
        Self {
            prefix: prefix.to_string(),
            queues: format!("{{{prefix}}}:queues"),
            cancel: (!sharded).then(|| format!("{prefix}:cancel")),
        }
    }

    /// The hash of deployment facts (the ids of the keys in use).
    pub(crate) fn meta(&self) -> String {
        format!("{{{}}}:meta", self.prefix)
    }

    /// The set of queue names ever used.
    pub(crate) fn queues(&self) -> &str {
        &self.queues
    }

    /// The channel announcing running tasks of `queue` whose cancellation was requested:
    /// `prefix:cancel` for every queue on one Redis, `{prefix:queue}:cancel` on a cluster.
    pub(crate) fn cancel_channel(&self, queue: &str) -> String {
        match &self.cancel {
            Some(channel) => channel.clone(),
            None => format!("{}:cancel", self.base(queue)),
        }
    }

    /// The hash tag and base of `queue`'s keys: `{prefix:queue}`.
    pub(crate) fn base(&self, queue: &str) -> String {
        format!("{{{}:{}}}", self.prefix, queue)
    }

    /// A task's record.
    pub(crate) fn task(&self, queue: &str, id: TaskId) -> String {
        format!("{}:t:{id}", self.base(queue))
    }

    /// Ids of tasks due now, oldest first (a list).
    pub(crate) fn ready(&self, queue: &str) -> String {
        format!("{}:ready", self.base(queue))
    }

    /// Ids of tasks due later (delayed, retrying), by due time (a sorted set).
    pub(crate) fn schedule(&self, queue: &str) -> String {
        format!("{}:schedule", self.base(queue))
    }

    /// Ids whose ready-list entry is dead (their task was cancelled while waiting).
    pub(crate) fn skip(&self, queue: &str) -> String {
        format!("{}:skip", self.base(queue))
    }

    /// Running tasks by lease expiry.
    pub(crate) fn leases(&self, queue: &str) -> String {
        format!("{}:leases", self.base(queue))
    }

    /// Every task id of the queue, for admin listings.
    pub(crate) fn ids(&self, queue: &str) -> String {
        format!("{}:ids", self.base(queue))
    }

    /// One owner's task ids in the queue.
    pub(crate) fn owner_index(&self, queue: &str, owner: &Owner) -> String {
        format!("{}:o:{}", self.base(queue), owner_hash(owner))
    }

    /// One owner's finished tasks in final `state` (a sorted set, score 0, read by id).
    pub(crate) fn owner_done(&self, queue: &str, owner: &Owner, state: TaskState) -> String {
        format!("{}:s:{state}", self.owner_index(queue, owner))
    }

    /// Everyone's finished tasks in final `state`.
    pub(crate) fn done(&self, queue: &str, state: TaskState) -> String {
        format!("{}:s:{state}", self.base(queue))
    }

    /// One owner's tasks of task name `name`.
    pub(crate) fn owner_name(&self, queue: &str, owner: &Owner, name: &str) -> String {
        format!("{}:n:{}", self.owner_index(queue, owner), value_hash(name))
    }

    /// Everyone's tasks of task name `name`.
    pub(crate) fn name(&self, queue: &str, name: &str) -> String {
        format!("{}:n:{}", self.base(queue), value_hash(name))
    }

    /// The tasks whose correlation id is `id`.
    pub(crate) fn correlation(&self, queue: &str, id: &str) -> String {
        format!("{}:c:{}", self.base(queue), value_hash(id))
    }

    /// The tasks whose request id is `id`.
    pub(crate) fn request(&self, queue: &str, id: &str) -> String {
        format!("{}:r:{}", self.base(queue), value_hash(id))
    }

    /// The queue's counters (a hash): `<state>` and `<owner hash>:<state>` → tasks.
    pub(crate) fn counts(&self, queue: &str) -> String {
        format!("{}:counts", self.base(queue))
    }

    /// An idempotency key's pointer to its live task.
    pub(crate) fn idempotency(&self, queue: &str, scoped_key: &str) -> String {
        format!("{}:k:{scoped_key}", self.base(queue))
    }

    /// The channel that wakes the queue's idle workers.
    pub(crate) fn work_channel(&self, queue: &str) -> String {
        format!("{}:work", self.base(queue))
    }

    /// The channel carrying a watched task's records.
    pub(crate) fn event_channel(&self, queue: &str, id: TaskId) -> String {
        format!("{}:ev:{id}", self.base(queue))
    }

    /// The SCAN pattern matching every per-queue key under this prefix, `{prefix:*`. With
    /// [`Keys::queues`], that is every key of the prefix and nothing else: a prefix never
    /// holds `:`, so no other prefix's keys start the same way.
    pub(crate) fn pattern(&self) -> String {
        let mut escaped = String::with_capacity(self.prefix.len());
        for c in self.prefix.chars() {
            if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                escaped.push('\\');
            }
            escaped.push(c);
        }
        format!("{{{escaped}:*")
    }
}

/// Checks that a key prefix keeps the key layout unambiguous: non-empty, without `{` or `}`
/// (the hash tag) nor `:` (which ends the prefix inside a queue's tag `{prefix:queue}`).
pub(crate) fn check_prefix(prefix: &str) -> bool {
    !prefix.is_empty() && !prefix.contains(['{', '}', ':'])
}

/// Checks that a queue name keeps the key layout unambiguous.
pub(crate) fn check_queue(queue: &str) -> Result<(), StoreError> {
    if queue.is_empty() || queue.contains(['{', '}']) {
        return Err(StoreError::Invalid(format!(
            "queue name {:?} cannot be stored in Redis: it must be non-empty and must not contain '{{' or '}}'",
            queue.chars().take(64).collect::<String>()
        )));
    }
    Ok(())
}

/// FNV-1a, 64 bits, of the parts `feed` gives it.
fn fnv(parts: impl FnOnce(&mut dyn FnMut(&[u8]))) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    parts(&mut |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    });
    format!("{h:016x}")
}

/// A short stable name for a task name, correlation or request id in index key names (16 hex
/// digits). Two values sharing a hash only share an index: listings check each record.
pub(crate) fn value_hash(value: &str) -> String {
    fnv(|feed| feed(value.as_bytes()))
}

/// The index tags of a task as its record's header holds them:
/// `<owner hash>.<name hash>.<correlation hash>.<request hash>`, the last two empty without
/// such an id (see `lua/common.lua`, `tags_of`).
pub(crate) fn index_tags(task: &NewTask) -> String {
    let hash = |v: &Option<String>| v.as_deref().map(value_hash).unwrap_or_default();
    format!(
        "{}.{}.{}.{}",
        owner_hash(&task.owner),
        value_hash(&task.name),
        hash(&task.correlation_id),
        hash(&task.request_id)
    )
}

/// A short stable name for an owner, used in index key names (FNV-1a, 64 bits). Two owners
/// sharing a hash only share an index: listings still check each record's owner. Counters
/// are kept per owner hash, so two owners sharing one (a 64-bit collision) would share
/// counts.
pub(crate) fn owner_hash(owner: &Owner) -> String {
    fnv(|feed| owner_parts(owner, feed))
}

fn owner_parts(owner: &Owner, feed: &mut dyn FnMut(&[u8])) {
    for part in [&owner.tenant, &owner.user_id] {
        match part {
            Some(s) => {
                feed(b"+");
                feed(s.as_bytes());
            }
            None => feed(b"-"),
        }
        feed(b"\x1f");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bases_round_trip_and_share_the_hash_tag() {
        let keys = Keys::new("errand", true);
        let base = keys.base("emails");
        assert_eq!(base, "{errand:emails}");
        let id = TaskId::new();
        for key in [
            keys.task("emails", id),
            keys.ready("emails"),
            keys.schedule("emails"),
            keys.skip("emails"),
            keys.leases("emails"),
            keys.ids("emails"),
            keys.owner_index("emails", &Owner::default()),
            keys.owner_done("emails", &Owner::default(), TaskState::Failed),
            keys.done("emails", TaskState::Success),
            keys.owner_name("emails", &Owner::default(), "send"),
            keys.name("emails", "send"),
            keys.correlation("emails", "c"),
            keys.request("emails", "r"),
            keys.counts("emails"),
            keys.idempotency("emails", "k"),
            keys.cancel_channel("emails"),
            keys.work_channel("emails"),
            keys.event_channel("emails", id),
        ] {
            assert!(key.starts_with(&base), "{key} carries the queue's tag");
        }
    }

    #[test]
    fn pattern_escapes_glob_characters_and_matches_queue_keys_only() {
        assert_eq!(Keys::new("errand", false).pattern(), "{errand:*");
        assert_eq!(Keys::new("a*b", false).pattern(), "{a\\*b:*");
        assert_eq!(Keys::new("errand", false).queues(), "{errand}:queues");
        assert_eq!(
            Keys::new("errand", false).cancel_channel("q"),
            "errand:cancel"
        );
    }

    #[test]
    fn prefixes_that_could_share_keys_are_refused() {
        // Prefix `a` with queue `b:c` and prefix `a:b` with queue `c` would both be `{a:b:c}`.
        assert_eq!(Keys::new("a", false).base("b:c"), "{a:b:c}");
        assert!(!check_prefix("a:b"));
        assert!(!check_prefix("a{b") && !check_prefix("a}") && !check_prefix(""));
        assert!(check_prefix("a") && check_prefix("billing-eu_1.x"));
    }

    #[test]
    fn owner_hash_tells_missing_from_empty() {
        let none = Owner::default();
        let empty = Owner {
            user_id: Some(String::new()),
            tenant: None,
        };
        let swapped = Owner {
            user_id: None,
            tenant: Some(String::new()),
        };
        assert_ne!(owner_hash(&none), owner_hash(&empty));
        assert_ne!(owner_hash(&empty), owner_hash(&swapped));
        assert_eq!(owner_hash(&empty).len(), 16);
    }

    #[test]
    fn braces_in_queue_names_are_refused() {
        assert!(check_queue("a{b").is_err());
        assert!(check_queue("").is_err());
        assert!(check_queue("emails").is_ok());
    }
}
