-- Leases one waiting task under a new fence and attempt, and returns what a worker needs to
-- run it.
-- ?1 seq, ?2 now, ?3 lease_until, ?4 worker_id
UPDATE tasks SET
    status = 'running',
    due_at = NULL,
    lease_until = ?3,
    fence = fence + 1,
    attempt = attempt + 1,
    started_at = ?2,
    updated_at = ?2,
    next_attempt_at = NULL,
    worker_id = ?4
WHERE seq = ?1
RETURNING fence, attempt, name, queue, args, context, user_id, tenant, correlation_id,
          max_attempts, timeout_ms
