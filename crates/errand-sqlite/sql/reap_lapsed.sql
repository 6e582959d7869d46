-- Running tasks whose lease lapsed (walks tasks_leased from its left edge).
-- ?1 now
SELECT seq, id, cancel_requested, attempt, max_attempts FROM tasks WHERE lease_until <= ?1
