-- One owner's unexpired records, newest first, after a cursor (walks tasks_owner backwards).
-- ?1 tenant, ?2 user_id, ?3 cursor (ids below it), ?4 status or NULL, ?5 name or NULL, ?6 now,
-- ?7 limit
SELECT id, name, queue, status, user_id, tenant, correlation_id, request_id, key,
       created_at, updated_at, run_at, started_at, completed_at, next_attempt_at, expires_at,
       attempt, max_attempts, timeout_ms, cancel_requested, progress, steps, error, result
FROM tasks
WHERE tenant IS ?1 AND user_id IS ?2 AND id < ?3
  AND (?4 IS NULL OR status = ?4)
  AND (?5 IS NULL OR name = ?5)
  AND (expires_at IS NULL OR expires_at > ?6)
ORDER BY id DESC
LIMIT ?7
