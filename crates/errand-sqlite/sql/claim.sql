-- Leases one waiting task: the new fence and attempt (each one above the row's).
-- ?1 seq, ?2 now, ?3 lease_until, ?4 worker_id, ?5 fence, ?6 attempt
UPDATE tasks SET
    status = 'running',
    due_at = NULL,
    lease_until = ?3,
    fence = ?5,
    attempt = ?6,
    started_at = ?2,
    updated_at = ?2,
    next_attempt_at = NULL,
    worker_id = ?4
WHERE seq = ?1
