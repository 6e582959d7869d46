-- Running records of one owner or everyone's, newest first. Walks tasks_leased, which holds
-- only running tasks (as many as workers hold leases); callers skip it when the counter is 0.
-- :owned 1 for one owner (:tenant, :user_id), 0 for everyone's;
-- :lower/:upper the id range (from created_after, created_before and the cursor), :status,
-- :name, :queue filters or NULL, :now, :limit.
SELECT id, name, queue, status, user_id, tenant, correlation_id, request_id, key,
       created_at, updated_at, run_at, started_at, completed_at, next_attempt_at, expires_at,
       attempt, max_attempts, timeout_ms, cancel_requested, progress, steps, error, result,
       history, trace_id, attempts
FROM tasks INDEXED BY tasks_leased
WHERE lease_until IS NOT NULL AND (:owned = 0 OR (tenant IS :tenant AND user_id IS :user_id))
  AND id >= :lower AND id < :upper
  AND (:status IS NULL OR status = :status)
  AND (:name IS NULL OR name = :name)
  AND (:queue IS NULL OR queue = :queue)
ORDER BY id DESC
LIMIT :limit
