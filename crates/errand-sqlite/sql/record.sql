-- One task's record, expired or not, inside a write (for watchers and cancel/retry answers).
-- ?1 id
SELECT id, name, queue, status, user_id, tenant, correlation_id, request_id, key,
       created_at, updated_at, run_at, started_at, completed_at, next_attempt_at, expires_at,
       attempt, max_attempts, timeout_ms, cancel_requested, progress, steps, error, result,
       history, trace_id, attempts
FROM tasks
WHERE id = ?1
