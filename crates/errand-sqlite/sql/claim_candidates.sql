-- The oldest due tasks of one queue with what a worker needs to run them, for a claim from
-- that queue alone (walks tasks_ready from its left edge, reading each row: all are claimed).
-- ?1 queue, ?2 now, ?3 limit
SELECT seq, id, due_at, attempt, name, queue, args, context, user_id, tenant, correlation_id,
       max_attempts, timeout_ms, status
FROM tasks
WHERE queue = ?1 AND due_at <= ?2
ORDER BY due_at, id
LIMIT ?3
