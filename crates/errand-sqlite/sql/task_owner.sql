-- The owner and queue of a task, for the counters of a change that returned no row (an update
-- with RETURNING costs a quarter of the drain: see tally.rs).
-- ?1 id
SELECT tenant, user_id, queue FROM tasks WHERE id = ?1
