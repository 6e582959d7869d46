-- Cancels a task that has not started: it ends at once.
-- ?1 seq, ?2 now
UPDATE tasks SET
    status = 'cancelled',
    completed_at = ?2,
    updated_at = ?2,
    next_attempt_at = NULL,
    expires_at = ?2 + ttl_us,
    due_at = NULL,
    lease_until = NULL,
    live_key = NULL
WHERE seq = ?1
