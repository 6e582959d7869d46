-- Ends an attempt with a result; the record expires after its TTL and its key is freed.
-- ?1 id, ?2 now, ?3 result, ?4 progress, ?5 steps, ?6 fence (a lost lease matches no row)
UPDATE tasks SET
    status = 'success',
    result = ?3,
    error = NULL,
    progress = coalesce(?4, progress),
    steps = coalesce(?5, steps),
    completed_at = ?2,
    updated_at = ?2,
    next_attempt_at = NULL,
    expires_at = ?2 + ttl_us,
    due_at = NULL,
    lease_until = NULL,
    live_key = NULL
WHERE id = ?1 AND fence = ?6 AND status = 'running'
