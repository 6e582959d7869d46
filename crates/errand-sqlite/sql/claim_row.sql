-- What a worker needs to run a task picked by claim_order.sql (the columns of
-- claim_candidates.sql).
-- ?1 seq
SELECT seq, id, due_at, attempt, name, queue, args, context, user_id, tenant, correlation_id,
       max_attempts, timeout_ms, status
FROM tasks
WHERE seq = ?1
