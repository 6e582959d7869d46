-- A failed attempt that will be tried again: waits until next_attempt_at.
-- ?1 seq, ?2 now, ?3 error, ?4 next_attempt_at, ?5 progress, ?6 steps
UPDATE tasks SET
    status = 'retrying',
    error = ?3,
    next_attempt_at = ?4,
    due_at = ?4,
    lease_until = NULL,
    progress = coalesce(?5, progress),
    steps = coalesce(?6, steps),
    updated_at = ?2
WHERE seq = ?1
