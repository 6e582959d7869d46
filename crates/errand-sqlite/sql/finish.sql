-- Ends a task for good (success, failed or cancelled): a completion, the cancel of a waiting
-- task, or the reaper. Sets its times, schedules its expiry after its TTL, takes it off the
-- ready and leased indexes and frees its key. A success stores its result and clears the
-- error; any other end stores the error given, or keeps the one recorded.
-- ?1 id, ?2 now, ?3 status, ?4 result (success only), ?5 error (NULL: unchanged),
-- ?6 progress (NULL: unchanged), ?7 steps (NULL: unchanged),
-- ?8 lease_token: a completion's lease, which matches no row once lost; NULL for a cancel or
--    the reaper, which read the row in the same transaction
UPDATE tasks SET
    status = ?3,
    result = coalesce(?4, result),
    error = CASE ?3 WHEN 'success' THEN NULL ELSE coalesce(?5, error) END,
    progress = coalesce(?6, progress),
    steps = coalesce(?7, steps),
    completed_at = ?2,
    updated_at = ?2,
    next_attempt_at = NULL,
    expires_at = ?2 + ttl_us,
    due_at = NULL,
    lease_until = NULL,
    live_key = NULL
WHERE id = ?1 AND (?8 IS NULL OR (lease_token = ?8 AND status = 'running'))
