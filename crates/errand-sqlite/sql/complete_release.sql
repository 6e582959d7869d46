-- Hands an unfinished attempt back (worker shutdown) without spending it: pending again, in
-- its original place in the queue.
-- ?1 seq, ?2 now, ?3 progress, ?4 steps
UPDATE tasks SET
    status = 'pending',
    attempt = max(attempt - 1, 0),
    started_at = NULL,
    due_at = created_at,
    lease_until = NULL,
    progress = coalesce(?3, progress),
    steps = coalesce(?4, steps),
    updated_at = ?2
WHERE seq = ?1
