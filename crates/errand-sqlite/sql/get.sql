-- One task's record and its arguments, unless it expired.
-- ?1 id, ?2 now
SELECT id, name, queue, status, user_id, tenant, correlation_id, request_id, key,
       created_at, updated_at, run_at, started_at, completed_at, next_attempt_at, expires_at,
       attempt, max_attempts, timeout_ms, cancel_requested, progress, steps, error, result,
       history, trace_id, attempts, args
FROM tasks
WHERE id = ?1 AND (expires_at IS NULL OR expires_at > ?2)
