-- A failed attempt that will be tried again: waits until next_attempt_at. Changes nothing when
-- the lease was lost or cancellation was requested (that task ends cancelled: finish.sql).
-- ?1 id, ?2 now, ?3 error, ?4 next_attempt_at, ?5 progress, ?6 steps, ?7 lease_token
UPDATE tasks SET
    status = 'retrying',
    error = ?3,
    next_attempt_at = ?4,
    due_at = ?4,
    lease_until = NULL,
    progress = coalesce(?5, progress),
    steps = coalesce(?6, steps),
    updated_at = ?2
WHERE id = ?1 AND lease_token = ?7 AND status = 'running' AND NOT cancel_requested
RETURNING tenant, user_id, queue
