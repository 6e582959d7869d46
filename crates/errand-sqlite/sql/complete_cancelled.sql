-- Ends a running task as cancelled.
-- ?1 id, ?2 now, ?3 progress, ?4 steps, ?5 fence (a lost lease matches no row)
UPDATE tasks SET
    status = 'cancelled',
    progress = coalesce(?3, progress),
    steps = coalesce(?4, steps),
    completed_at = ?2,
    updated_at = ?2,
    next_attempt_at = NULL,
    expires_at = ?2 + ttl_us,
    due_at = NULL,
    lease_until = NULL,
    live_key = NULL
WHERE id = ?1 AND fence = ?5 AND status = 'running'
