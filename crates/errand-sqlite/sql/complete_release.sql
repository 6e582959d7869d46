-- Hands an unfinished attempt back (worker shutdown) without spending it: pending again, in
-- its original place in the queue. Changes nothing when the lease was lost or cancellation was
-- requested (that task ends cancelled: finish.sql).
-- ?1 id, ?2 now, ?3 progress, ?4 steps, ?5 lease_token
UPDATE tasks SET
    status = 'pending',
    attempt = max(attempt - 1, 0),
    started_at = NULL,
    due_at = created_at,
    lease_until = NULL,
    progress = coalesce(?3, progress),
    steps = coalesce(?4, steps),
    updated_at = ?2
WHERE id = ?1 AND lease_token = ?5 AND status = 'running' AND NOT cancel_requested
