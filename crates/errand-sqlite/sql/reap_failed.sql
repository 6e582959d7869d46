-- A lapsed lease with no attempts left: failed.
-- ?1 seq, ?2 now, ?3 error
UPDATE tasks SET
    status = 'failed',
    error = ?3,
    completed_at = ?2,
    updated_at = ?2,
    next_attempt_at = NULL,
    expires_at = ?2 + ttl_us,
    due_at = NULL,
    lease_until = NULL,
    live_key = NULL
WHERE seq = ?1
