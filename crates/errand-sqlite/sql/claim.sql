-- Leases one waiting task: a new lease token, and the attempt raised by one.
-- ?1 seq, ?2 now, ?3 lease_until, ?4 worker_id, ?5 lease_token, ?6 attempt
UPDATE tasks SET
    status = 'running',
    due_at = NULL,
    lease_until = ?3,
    lease_token = ?5,
    attempt = ?6,
    started_at = ?2,
    updated_at = ?2,
    next_attempt_at = NULL,
    worker_id = ?4
WHERE seq = ?1
