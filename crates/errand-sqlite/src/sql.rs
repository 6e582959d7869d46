//! The SQL of every operation, one file per operation under `sql/` (named for it), compiled
//! into the binary.

macro_rules! queries {
    ($($(#[$doc:meta])* $name:ident = $file:literal;)*) => {
        $(
            $(#[$doc])*
            pub(crate) const $name: &str = include_str!(concat!("../sql/", $file));
        )*
    };
}

queries! {
    /// The live task holding an owner-scoped idempotency key.
    ENQUEUE_FIND_KEY = "enqueue_find_key.sql";
    /// Stores one new task.
    ENQUEUE = "enqueue.sql";
    /// The oldest due tasks of one queue, with their rows.
    CLAIM_CANDIDATES = "claim_candidates.sql";
    /// The order and storage keys of the oldest due tasks of one queue.
    CLAIM_ORDER = "claim_order.sql";
    /// The row of a task picked by its keys.
    CLAIM_ROW = "claim_row.sql";
    /// Leases one waiting task.
    CLAIM = "claim.sql";
    /// When the earliest waiting task of a queue falls due.
    NEXT_DUE = "next_due.sql";
    /// Renews a held lease.
    HEARTBEAT = "heartbeat.sql";
    /// Merges progress and steps of a running task.
    REPORT = "report.sql";
    /// The owner and queue of a task.
    TASK_OWNER = "task_owner.sql";
    /// A task's current attempt and its attempt log.
    ATTEMPT_LOG_GET = "attempt_log_get.sql";
    /// Replaces a task's attempt log.
    ATTEMPT_LOG_SET = "attempt_log_set.sql";
    /// Ends a task for good: success, failed or cancelled.
    FINISH = "finish.sql";
    /// Schedules the next attempt of a failed one.
    COMPLETE_RETRY = "complete_retry.sql";
    /// Hands an unfinished attempt back without spending it.
    COMPLETE_RELEASE = "complete_release.sql";
    /// One unexpired record by id.
    GET = "get.sql";
    /// One record by storage key.
    RECORD = "record.sql";
    /// One owner's records, newest first.
    LIST_OWNER = "list_owner.sql";
    /// Everyone's records, newest first.
    LIST_ANY = "list_any.sql";
    /// One owner's records in one final state.
    LIST_OWNER_DONE = "list_owner_done.sql";
    /// Everyone's records in one final state.
    LIST_ANY_DONE = "list_any_done.sql";
    /// One owner's records of one task name.
    LIST_OWNER_NAME = "list_owner_name.sql";
    /// Everyone's records of one task name.
    LIST_ANY_NAME = "list_any_name.sql";
    /// One owner's records of one queue.
    LIST_OWNER_QUEUE = "list_owner_queue.sql";
    /// Everyone's records of one queue.
    LIST_ANY_QUEUE = "list_any_queue.sql";
    /// Waiting records in one state.
    LIST_WAITING = "list_waiting.sql";
    /// Running records.
    LIST_RUNNING = "list_running.sql";
    /// Records whose id, correlation id or request id is the search.
    LIST_SEARCH = "list_search.sql";
    /// Adds to a counter of tasks per state.
    COUNT_ADD = "count_add.sql";
    /// One owner's (or everyone's) counters.
    COUNTS = "counts.sql";
    /// Every queue's counters.
    QUEUES = "queues.sql";
    /// The task to cancel.
    CANCEL_LOOKUP = "cancel_lookup.sql";
    /// Requests cancellation of a running task.
    CANCEL_RUNNING = "cancel_running.sql";
    /// The task to retry by hand.
    RETRY_LOOKUP = "retry_lookup.sql";
    /// Requeues a failed or cancelled task.
    RETRY = "retry.sql";
    /// Replaces a task's action history.
    HISTORY_SET = "history_set.sql";
    /// Running tasks whose lease lapsed.
    REAP_LAPSED = "reap_lapsed.sql";
    /// Requeues a lapsed task with attempts left.
    REAP_REQUEUE = "reap_requeue.sql";
    /// Deletes a chunk of expired records.
    PURGE_EXPIRED = "purge_expired.sql";
    /// One deployment fact.
    META_GET = "meta_get.sql";
    /// Records a deployment fact where none is.
    META_INSERT = "meta_insert.sql";
    /// Replaces a deployment fact holding an expected value.
    META_SWAP = "meta_swap.sql";
    /// Counts waiting and running tasks.
    DEPTH = "depth.sql";
    /// Reads one page of the task table.
    PING = "ping.sql";
}
