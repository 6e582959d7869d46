-- Everyone's unexpired records, newest first, after a cursor (for admins).
-- ?1 cursor (ids below it), ?2 status or NULL, ?3 name or NULL, ?4 now, ?5 limit
SELECT id, name, queue, status, user_id, tenant, correlation_id, request_id, key,
       created_at, updated_at, run_at, started_at, completed_at, next_attempt_at, expires_at,
       attempt, max_attempts, timeout_ms, cancel_requested, progress, steps, error, result
FROM tasks
WHERE id < ?1
  AND (?2 IS NULL OR status = ?2)
  AND (?3 IS NULL OR name = ?3)
  AND (expires_at IS NULL OR expires_at > ?4)
ORDER BY id DESC
LIMIT ?5
