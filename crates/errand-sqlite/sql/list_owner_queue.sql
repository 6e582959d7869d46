-- One owner's unexpired records of one queue, newest first (walks tasks_owner_queue).
-- :tenant, :user_id the owner;
-- :lower/:upper the id range (from created_after, created_before and the cursor), :status,
-- :name, :queue filters or NULL, :now, :limit.
SELECT id, name, queue, status, user_id, tenant, correlation_id, request_id, key,
       created_at, updated_at, run_at, started_at, completed_at, next_attempt_at, expires_at,
       attempt, max_attempts, timeout_ms, cancel_requested, progress, steps, error, result,
       history, trace_id, attempts
FROM tasks INDEXED BY tasks_owner_queue
WHERE tenant IS :tenant AND user_id IS :user_id AND queue = :queue
  AND id >= :lower AND id < :upper
  AND (:status IS NULL OR status = :status)
  AND (:name IS NULL OR name = :name)
  AND (:queue IS NULL OR queue = :queue)
  AND (expires_at IS NULL OR expires_at > :now)
ORDER BY id DESC
LIMIT :limit
